#!/usr/bin/env bash
# Translate a folder, then retry only the images that failed, up to ATTEMPTS runs in all
# (default 3, RETRY_DELAY seconds apart, default 5), and list the images that still failed:
# for inputs that can fail for a while, such as files still being copied in or a flaky network
# drive.
#
#   MODEL=day2night ATTEMPTS=3 examples/recipes/translate_retry_failed.sh photos/ out/
#
# Each run uses --json; lines with "status": "error" name the failed inputs and their outputs,
# and a retry translates just those, to the same output names. An input that gives no output
# (one that matched nothing) is not retried. A run that exits 1 without any line (nothing was
# translated: e.g. the model could not be loaded) is run again whole; any other exit status
# (2 usage error, 130 interrupted, ...) stops the script with that status.
# Further arguments are img2img translate options, given to every run (--ext jpg, --overwrite):
# an existing output is an error, as in img2img translate, that no retry fixes; to run the
# script again on the same OUT_DIR, pass --overwrite.
# Exit status: 0 everything written in the end, 1 some image still failed.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 IN_DIR OUT_DIR [TRANSLATE_OPTION...]" >&2
    exit 2
fi
command -v jq >/dev/null || { echo "$0: needs jq (apt-get install jq)" >&2; exit 127; }
in_dir=$1 out_dir=$2
shift 2
options=("$@")
attempts=${ATTEMPTS:-3}
delay=${RETRY_DELAY:-5}
model=${MODEL:-photo2sketch}

lines=$(mktemp)  # the JSON lines of the latest attempt
trap 'rm -f "$lines"' EXIT

# img2img translate ARGS... --json: appends its lines to $lines and sets $status.
translate() {
    status=0
    img2img translate "$@" --model "$model" --json --quiet "${options[@]}" >>"$lines" || status=$?
}

# Retries the failed inputs in $lines, one img2img call per output folder: a file INPUT keeps
# its base name under --out-dir, which is the name the folder run gave it. Sets $status.
retry_failed() {
    local failed=() group=() group_dir='' worst=0 i input output
    # input, output pairs (NUL-separated), sorted so that each output folder comes in one piece
    mapfile -t -d '' failed < <(jq -sj 'map(select(.status == "error" and .output != null))
        | sort_by(.output) | .[] | .input, "\u0000", .output, "\u0000"' "$lines")
    jq -c 'select(.status == "error" and .output == null)' "$lines" >"$lines.keep"
    [[ -s $lines.keep ]] && worst=1  # reported again, not retried
    mv "$lines.keep" "$lines"
    echo "attempt $attempt: retrying $((${#failed[@]} / 2)) failed image(s)" >&2
    for ((i = 0; i <= ${#failed[@]}; i += 2)); do
        input=${failed[i]:-} output=${failed[i + 1]:-}
        if ((${#group[@]})) && [[ -z $output || ${output%/*} != "$group_dir" ]]; then
            translate "${group[@]}" --out-dir "$group_dir"
            case $status in 0) ;; 1) worst=1 ;; *) return ;; esac
            group=()
        fi
        group_dir=${output%/*}
        [[ -z $input ]] || group+=("$input")
    done
    status=$worst
}

attempt=1
translate "$in_dir" --out-dir "$out_dir"
while :; do
    case $status in
        0) echo "all images written" >&2; exit 0 ;;
        1) ;;
        *) exit "$status" ;;
    esac
    if ((attempt >= attempts)) || { [[ -s $lines ]] && ! jq -e 'select(.output != null)' "$lines" >/dev/null; }; then
        break  # out of attempts, or only failures that a retry cannot fix
    fi
    attempt=$((attempt + 1))
    sleep "$delay"
    if [[ -s $lines ]]; then
        retry_failed
    else
        echo "attempt $attempt: nothing was translated; running again" >&2
        translate "$in_dir" --out-dir "$out_dir"
    fi
done

echo "still failing after $attempt attempt(s):" >&2
if [[ -s $lines ]]; then
    jq -r 'select(.status == "error") | "  \(.error)"' "$lines" >&2
else
    echo "  the whole run (nothing was translated; see the errors above)" >&2
fi
exit 1
