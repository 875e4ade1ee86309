"""Build the example datasets offline, from photographs that ship inside Python packages.

    python examples/build_datasets.py data/
    python examples/build_datasets.py --night examples/inputs/coffee.png examples/inputs/coffee_night.png

writes, in the reference implementation's layouts:
  data/photo2sketch/{train,val}/NNNN.png    aligned pairs, photo | pencil sketch side by side
  data/day2night/{trainA,trainB,testA,testB} unpaired day and night crops

The photographs are scikit-image's and scikit-learn's sample images (see examples/README.md
for their licences). The photographs kept for `examples/inputs/` are never used for training.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

CROP = 128
# Seen in training; the example inputs (coffee, flower) stay out of every dataset so they show
# generalisation.
TRAIN_PHOTOS = (
    "skimage:astronaut.png",
    "skimage:chelsea.png",
    "skimage:rocket.jpg",
    "skimage:motorcycle_left.png",
    "sklearn:china.jpg",
)
VAL_PHOTOS = ("skimage:motorcycle_right.png",)
# day2night leaves out the Middlebury motorcycles (no licence stated) and holds out the cat.
DAY2NIGHT_TRAIN_PHOTOS = ("skimage:astronaut.png", "skimage:rocket.jpg", "sklearn:china.jpg")
DAY2NIGHT_TEST_PHOTOS = ("skimage:chelsea.png",)
EXAMPLE_PHOTOS = ("skimage:coffee.png", "sklearn:flower.jpg")


def load_photo(name: str) -> Image.Image:
    """Open a sample photograph from the package that ships it ("skimage:coffee.png")."""
    package, file_name = name.split(":")
    if package == "skimage":
        import skimage

        folder = Path(skimage.__file__).parent / "data"
    else:
        import sklearn.datasets

        folder = Path(sklearn.datasets.__file__).parent / "images"
    return Image.open(folder / file_name).convert("RGB")


def pencil_sketch(photo: Image.Image) -> Image.Image:
    """A colour-dodge pencil sketch: gray / (1 - blurred inverted gray), the classic recipe."""
    gray = np.asarray(ImageOps.grayscale(photo), dtype=np.float32) / 255
    blurred_inverse = (
        np.asarray(ImageOps.invert(ImageOps.grayscale(photo)).filter(ImageFilter.GaussianBlur(3)), dtype=np.float32)
        / 255
    )
    sketch = np.clip(gray / np.maximum(1 - blurred_inverse, 1e-3), 0, 1)
    return Image.fromarray((sketch**2 * 255).round().astype(np.uint8), "L")


def night(photo: Image.Image) -> Image.Image:
    """Day to night: 60 % desaturated, much darker (gamma 2, x0.6), shifted to blue."""
    rgb = np.asarray(photo, dtype=np.float32) / 255
    gray = rgb.mean(axis=2, keepdims=True)
    rgb = 0.4 * rgb + 0.6 * gray
    rgb = 0.6 * rgb**2
    rgb = rgb * np.array([0.7, 0.85, 1.35], dtype=np.float32)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), "RGB")


def random_crops(photo: Image.Image, count: int, rng: random.Random) -> list[Image.Image]:
    crops = []
    for _ in range(count):
        scale = rng.uniform(0.35, 1.0)
        side = int(min(photo.size) * scale)
        left = rng.randint(0, photo.width - side)
        top = rng.randint(0, photo.height - side)
        crop = photo.crop((left, top, left + side, top + side)).resize((CROP, CROP), Image.BICUBIC)
        crops.append(ImageOps.mirror(crop) if rng.random() < 0.5 else crop)
    return crops


def side_by_side(a: Image.Image, b: Image.Image) -> Image.Image:
    pair = Image.new("RGB", (a.width + b.width, a.height))
    pair.paste(a.convert("RGB"), (0, 0))
    pair.paste(b.convert("RGB"), (a.width, 0))
    return pair


def build(root: Path, train_crops: int, seed: int) -> None:
    rng = random.Random(seed)
    photos = {name: load_photo(name) for name in TRAIN_PHOTOS + VAL_PHOTOS + DAY2NIGHT_TEST_PHOTOS}
    for split, names in (("train", TRAIN_PHOTOS), ("val", VAL_PHOTOS)):
        folder = root / "photo2sketch" / split
        folder.mkdir(parents=True, exist_ok=True)
        count = train_crops // len(names) if split == "train" else 8
        index = 0
        for name in names:
            for crop in random_crops(photos[name], count, rng):
                side_by_side(crop, pencil_sketch(crop)).save(folder / f"{index:04d}.png")
                index += 1
    # Unpaired: the day and night crops are cut independently, so no crop has its counterpart.
    for split, names, count in (
        ("train", DAY2NIGHT_TRAIN_PHOTOS, train_crops // len(DAY2NIGHT_TRAIN_PHOTOS)),
        ("test", DAY2NIGHT_TEST_PHOTOS, 8),
    ):
        for domain in ("A", "B"):
            folder = root / "day2night" / f"{split}{domain}"
            folder.mkdir(parents=True, exist_ok=True)
            index = 0
            for name in names:
                for crop in random_crops(photos[name], count, rng):
                    (crop if domain == "A" else night(crop)).save(folder / f"{index:04d}.png")
                    index += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", help="where to write the datasets")
    parser.add_argument(
        "--night",
        nargs=2,
        type=Path,
        metavar=("PHOTO", "OUT"),
        help="instead, write the night version of one photograph (how examples/inputs/*_night.png were made)",
    )
    parser.add_argument("--train-crops", type=int, default=400, help="training crops per dataset (per domain)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.night:
        night(Image.open(args.night[0]).convert("RGB")).save(args.night[1])
        return
    if args.root is None:
        parser.error("give the folder to write the datasets to (or --night PHOTO OUT)")
    build(args.root, args.train_crops, args.seed)
    print(f"wrote {args.root}/photo2sketch and {args.root}/day2night")


if __name__ == "__main__":
    main()
