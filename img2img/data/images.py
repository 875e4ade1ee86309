"""Image files of a dataset: which files count as images, listing them, reading their
headers (size and mode) and decoding them."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageOps

from img2img.errors import DatasetError


IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
_ORIENTATION_TAG = 0x0112


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (and below it when ``recursive``), sorted by path."""
    if recursive:
        found = []
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(root) / name for name in files if is_image_file(Path(name))]
        return sorted(found)
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def read_size(path: Path) -> tuple[int, int]:
    """(width, height) as the image will be used (EXIF orientation applied), from its header only."""
    return read_header(path)[0]


def read_header(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) as the image will be used (EXIF orientation applied) and the PIL mode
    (L, RGB, ...), from the header only."""
    with Image.open(path) as image:
        width, height = image.size
        mode = image.mode
        try:
            orientation = image.getexif().get(_ORIENTATION_TAG, 1)
        except Exception:  # a broken EXIF block is not worth refusing the image for
            orientation = 1
    return ((height, width) if orientation in (5, 6, 7, 8) else (width, height)), mode


def load_image(path: Path, channels: int) -> Image.Image:
    """Decode ``path`` (EXIF orientation applied) as grayscale (1 channel) or RGB (3)."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return image.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot read image ({_first_line(exc)})") from None



def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
