"""Output formats: which ones can hold a translated image, checked before any work is done.

A translation is an L or RGB image (with an alpha channel when the input had one) of the
input's size. Pillow registers writers for formats that cannot hold that:

- formats whose writer is a stub without a handler (BUFR, GRIB, HDF5, WMF/EMF), or that need a
  codec this Pillow was built without (JPEG 2000 without OpenJPEG, AVIF, WebP...);
- formats for other modes only: XBM and MSP (1-bit), Palm (palette), BLP (palette or RGBA);
- formats that resize: ICNS stores fixed icon sizes from 16² to 1024²;
- formats with a largest size: ICO 256 × 256, WebP 16383, JPEG/MPO 65500 (libjpeg's
  JPEG_MAX_DIMENSION), GIF, PCX, TGA and SGI 65535 (16-bit header fields).

:func:`output_format` (and :func:`format_for_path`) refuses the first three kinds as a usage error naming the format, by
asking Pillow to encode a small L and RGB image (so the answer is this installation's);
:func:`check_size` refuses an image too large for the format, for that input, before it is
translated (Pillow itself would shrink an ICO, or fail after the work was done).
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path

from PIL import Image

from img2img.errors import ImageError, UsageError

Image.init()

# Largest width and height a format's header or codec can hold.
MAX_SIDE: dict[str, int] = {
    "ICO": 256,
    "WEBP": 16383,
    "JPEG": 65500,
    "MPO": 65500,
    "GIF": 65535,
    "PCX": 65535,
    "TGA": 65535,
    "SGI": 65535,
}
# Formats Pillow writes only after resizing the image.
_RESIZING = {"ICNS": "stores fixed icon sizes (16×16 to 1024×1024), so it would resize the image"}
_EXAMPLES = "png, jpg, webp, tif, bmp, ..."


def output_format(suffix: str, label: str) -> str:
    """The Pillow format for an extension (``.jpg``, ``jpg``, ``.JPG``; ``""`` for none) if
    img2img can write a translation in it. Raises UsageError starting with ``label`` (the option
    or file that asked for it) naming the format and why not: unknown, no writer, a writer for
    other modes only, or a writer that resizes."""
    suffix = "." + suffix.lower().lstrip(".") if suffix else ""
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        name = f"extension {suffix!r}" if suffix else "no extension"
        raise UsageError(f"{label}: {name} is not an image format img2img can write ({_EXAMPLES})")
    problem = _RESIZING.get(fmt) or _cannot_encode(fmt)
    if problem:
        raise UsageError(f"{label}: cannot write {fmt} ({suffix}): {problem}")
    return fmt


def format_for_path(path: str | os.PathLike[str]) -> str:
    """:func:`output_format` for a file name's extension; the message names the file."""
    return output_format(Path(path).suffix, os.fspath(path))


def can_write(suffix: str) -> bool:
    """Whether an extension names a format :func:`output_format` accepts."""
    try:
        output_format(suffix, suffix)
    except UsageError:
        return False
    return True


def check_size(fmt: str, size: tuple[int, int], label: str) -> None:
    """Raise ImageError naming ``label`` when a ``size`` (width, height) image does not fit
    ``fmt``."""
    limit = MAX_SIDE.get(fmt)
    if limit is not None and max(size) > limit:
        raise ImageError(
            f"{label}: {fmt} holds at most {limit}×{limit} pixels, the image is {size[0]}×{size[1]} "
            "(choose another format with --ext or the output's extension)"
        )


def save_options(fmt: str, size: tuple[int, int]) -> dict:
    """Encoder options that keep the image's size (ICO would otherwise store its own sizes)."""
    if fmt == "ICO":
        return {"sizes": [size]}
    return {}


@functools.lru_cache(maxsize=None)
def _cannot_encode(fmt: str) -> str | None:
    """Why Pillow cannot encode an L or RGB image as ``fmt`` (None when it can hold either)."""
    reasons = []
    for mode in ("RGB", "L"):
        try:
            Image.new(mode, (8, 8)).save(io.BytesIO(), format=fmt, **save_options(fmt, (8, 8)))
            return None
        except Exception as exc:  # noqa: BLE001  (plugins raise OSError, ValueError, KeyError...)
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reasons.append(text)
    return f"this Pillow cannot write grayscale or RGB images in it ({reasons[0]})"


__all__ = ["MAX_SIDE", "can_write", "check_size", "format_for_path", "output_format", "save_options"]
