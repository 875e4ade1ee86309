#!/usr/bin/env bash
# Rebuild the models shipped in weights/ from nothing, offline:
#   bash examples/train_shipped_models.sh [WORK_DIR]
# builds the example datasets from photographs that ship with scikit-image and scikit-learn
# (pip install scikit-image scikit-learn), trains each model with `img2img train`, and copies
# the exported weights into weights/. CPU times on a 2-core machine are in examples/README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-runs/shipped}
mkdir -p "$work"

python "$here/build_datasets.py" "$work/data"

# pix2pix: photo -> pencil sketch (RGB in, grayscale out), U-Net 128 with ngf 16.
img2img train pix2pix --data "$work/data/photo2sketch" --out "$work/photo2sketch" --overwrite \
    --netg unet_128 --ngf 16 --ndf 32 --output-nc 1 --load-size 143 --crop-size 128 \
    --n-epochs 6 --n-epochs-decay 6 --seed 0 --print-freq 400
cp "$work/photo2sketch/weights/pix2pix_AtoB.safetensors" "$here/../weights/photo2sketch.safetensors"

# CycleGAN: day -> night and back (unpaired crops), ResNet 6 blocks with ngf 32; exports both
# directions: photo2night (G_A) and night2photo (G_B).
img2img train cyclegan --data "$work/data/day2night" --out "$work/photo2night" --overwrite \
    --netg resnet_6blocks --ngf 32 --ndf 32 --load-size 143 --crop-size 128 \
    --n-epochs 10 --n-epochs-decay 10 --seed 0 --print-freq 100
cp "$work/photo2night/weights/cyclegan_AtoB.safetensors" "$here/../weights/photo2night.safetensors"
cp "$work/photo2night/weights/cyclegan_BtoA.safetensors" "$here/../weights/night2photo.safetensors"
