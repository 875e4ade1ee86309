#!/usr/bin/env bash
# Download an image, translate it and shrink it to half size, as one pipe and no temporary files:
#   curl URL | img2img translate - | ImageMagick -resize 50% OUT_FILE
#
#   MODEL=day2night examples/recipes/translate_pipe.sh https://example.com/street.jpg night.jpg
#
# img2img reads one image on stdin (INPUT -) and writes PNG to stdout. ImageMagick 7 is called as
# `magick`, ImageMagick 6 (Debian/Ubuntu's imagemagick package) as `convert`.
# Exit status: non-zero if any step failed (each prints its own message on stderr).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 URL OUT_FILE" >&2
    exit 2
fi
if command -v magick >/dev/null; then
    imagemagick=(magick)
elif [[ $(convert -version 2>/dev/null) == "Version: ImageMagick"* ]]; then
    imagemagick=(convert)
else
    echo "$0: needs ImageMagick (magick or convert; apt-get install imagemagick)" >&2
    exit 127
fi

curl -fsSL "$1" | img2img translate - --model "${MODEL:-photo2sketch}" | "${imagemagick[@]}" png:- -resize 50% "$2"
