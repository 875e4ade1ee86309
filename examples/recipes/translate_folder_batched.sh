#!/usr/bin/env bash
# Translate every image under IN_DIR into OUT_DIR in one img2img process, BATCH_SIZE images of
# equal (padded) size per forward pass; names relative to IN_DIR are kept.
#
#   MODEL=day2night BATCH_SIZE=8 examples/recipes/translate_folder_batched.sh photos/ out/
#
# The single-process alternative to translate_folder_parallel.sh: the model is loaded once and
# torch uses every CPU core (or the GPU) itself. Batching pays off when many images share a size.
# Further arguments are img2img translate options (--ext jpg, --overwrite, --device cuda, ...).
# Exit status: 0 all written, 1 some image failed (one line each on stderr), 2 usage error.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 IN_DIR OUT_DIR [TRANSLATE_OPTION...]" >&2
    exit 2
fi
in_dir=$1 out_dir=$2
shift 2
exec img2img translate "$in_dir" --model "${MODEL:-photo2sketch}" --out-dir "$out_dir" --batch-size "${BATCH_SIZE:-8}" "$@"
