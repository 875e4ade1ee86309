#!/usr/bin/env bash
# Translate a folder with --json and turn the JSON lines into a table with jq: a TSV on stdout
# (status, input, output, size, seconds, error), one row per image as it finishes, and a summary
# line on stderr (count ok / errors, total seconds). Further arguments are img2img translate
# options (--ext jpg, --overwrite, ...).
#
#   MODEL=day2night examples/recipes/translate_json_jq.sh photos/ out/ > report.tsv
#
# Exit status: img2img's (0 all written, 1 some image failed, 2 usage error).
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 IN_DIR OUT_DIR [TRANSLATE_OPTION...]" >&2
    exit 2
fi
command -v jq >/dev/null || { echo "$0: needs jq (apt-get install jq)" >&2; exit 127; }
in_dir=$1 out_dir=$2
shift 2

lines=$(mktemp)
trap 'rm -f "$lines"' EXIT

printf 'status\tinput\toutput\tsize\tseconds\terror\n'
status=0
# img2img's own error lines still go to stderr; failed images are rows in the table too.
img2img translate "$in_dir" --model "${MODEL:-photo2sketch}" --out-dir "$out_dir" --json --quiet "$@" |
    tee "$lines" |
    jq -r --unbuffered '[.status, .input, .output // "",
        (if .status == "ok" then "\(.width)x\(.height)" else "" end),
        (.seconds // "" | tostring), .error // ""] | @tsv' || status=$?

jq -rs '"\(map(select(.status == "ok")) | length) ok, "
    + "\(map(select(.status == "error")) | length) errors, "
    + "\(map(.seconds // 0) | add // 0 | . * 100 | round / 100) s translating"' "$lines" >&2
exit "$status"
