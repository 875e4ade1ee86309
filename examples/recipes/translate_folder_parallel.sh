#!/usr/bin/env bash
# Translate every image under IN_DIR into OUT_DIR with JOBS img2img processes at once
# (find -print0 | xargs -0 -P), keeping names relative to IN_DIR: IN_DIR/sub/a.jpg -> OUT_DIR/sub/a.jpg.
#
#   MODEL=day2night examples/recipes/translate_folder_parallel.sh photos/ out/ [JOBS]
#
# JOBS defaults to the number of CPUs; each process gets CPUs/JOBS torch threads (set
# OMP_NUM_THREADS to choose) and up to CHUNK files (default 64), so the model is loaded once per
# chunk, not once per image. A file INPUT keeps only its base name under --out-dir, so each chunk
# calls img2img once per folder with that folder's --out-dir. Hidden files and folders are
# skipped, and so is OUT_DIR when it lies inside IN_DIR. Existing outputs are errors, as in
# img2img translate. Exit status: 0 all written, 1 some image failed (see stderr).
# One process with --batch-size is simpler and best on a GPU: translate_folder_batched.sh.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 IN_DIR OUT_DIR [JOBS]" >&2
    exit 2
fi
in_dir=$1 out_dir=$2
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
jobs=${3:-$cpus}
chunk=${CHUNK:-64}
MODEL=${MODEL:-photo2sketch}

# The processes run inside IN_DIR (so that find gives names relative to it): make the other
# paths absolute first. MODEL may be a model name rather than a file.
in_dir=$(cd "$in_dir" && pwd -P)
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd -P)
if [[ -e $MODEL ]]; then
    MODEL="$(cd "$(dirname "$MODEL")" && pwd -P)/$(basename "$MODEL")"
fi
prune_out=/nonexistent
if [[ $out_dir == "$in_dir"/* ]]; then
    prune_out="./${out_dir#"$in_dir"/}"
fi
export MODEL OUT_DIR=$out_dir
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$((cpus / jobs > 0 ? cpus / jobs : 1))}

# One xargs chunk of ./relative/paths, grouped by folder: one img2img call per folder.
translate_chunk() {
    local status=0 dir=${1%/*} file files=()
    for file in "$@" ""; do  # the empty name flushes the last folder
        if [[ -z $file || ${file%/*} != "$dir" ]]; then
            local sub=${dir#.}
            img2img translate "${files[@]}" --model "$MODEL" --out-dir "$OUT_DIR${sub}" --quiet || status=1
            dir=${file%/*} files=()
        fi
        files+=("$file")
    done
    return "$status"
}
export -f translate_chunk

# Image files, NUL-separated, one folder after another (so that a chunk spans few folders).
list_images() {
    find . \( -name '.?*' -o -path "$prune_out" \) -prune -o -type d -print0 | sort -z |
        while IFS= read -r -d '' dir; do
            find "$dir" -mindepth 1 -maxdepth 1 -type f ! -name '.*' \( -iname '*.jpg' -o -iname '*.jpeg' \
                -o -iname '*.png' -o -iname '*.webp' -o -iname '*.bmp' -o -iname '*.tif' -o -iname '*.tiff' \) \
                -print0 | sort -z
        done
}

cd "$in_dir"
status=0
list_images | xargs -0 -r -P "$jobs" -n "$chunk" bash -c 'translate_chunk "$@"' translate_chunk || status=$?
case $status in
    0) ;;
    123) exit 1 ;;  # xargs: some call exited 1-125, i.e. some image failed
    *) exit "$status" ;;
esac
