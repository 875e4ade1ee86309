"""Reading and writing images: EXIF orientation, mode conversions, formats, atomic writes.

Everything here works on PIL images and numpy arrays; tensors belong to ``inference``.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from img2img.atomic import atomic_path
from img2img.errors import ImageError, UsageError

Image.init()  # registers every plugin, so the extension tables below are complete

# Extensions Pillow can open (folder inputs keep only these) and the ones it can write.
READABLE_EXTENSIONS = frozenset(
    ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN
)
WRITABLE_EXTENSIONS = frozenset(
    ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE
)
DEFAULT_FORMAT = "PNG"

# Encoder options where Pillow's defaults throw away more than a translation deserves.
_SAVE_OPTIONS: dict[str, dict] = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}

# How each high-bit-depth grayscale mode maps onto [0, 1]. 16-bit data uses its full range;
# 32-bit integer images are what older Pillow made of 16-bit PNGs, so they get the same scale;
# float images are taken to hold [0, 1]. Values outside are clipped.
_HIGH_BIT_SCALE = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


@dataclass(frozen=True)
class ModelInput:
    """An image as a model with ``channels`` input channels takes it, plus what the output
    needs to look like the input: the alpha channel and the colour profile."""

    pixels: np.ndarray  # float32, H x W x channels, in [0, 1]
    alpha: Image.Image | None  # mode L, same size, or None
    icc_profile: bytes | None  # only when the output stays in the input's colour family

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL reports sizes."""
        return self.pixels.shape[1], self.pixels.shape[0]


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in READABLE_EXTENSIONS


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The Pillow format that ``path``'s extension asks for; a UsageError when there is none."""
    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        known = "png, jpg, webp, tif, bmp, ..."
        what = f"extension {suffix!r}" if suffix else "no extension"
        raise UsageError(f"{path}: {what} is not an image format img2img can write ({known})")
    return fmt


def read_image(
    source: str | os.PathLike[str] | bytes | BinaryIO, name: str | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Decode an image fully, upright (EXIF orientation applied), first frame only.

    ``max_pixels`` (default: $IMG2IMG_MAX_PIXELS, else twice Pillow's ``MAX_IMAGE_PIXELS``, where
    Pillow itself refuses) is the largest width x height read; it guards against decompression
    bombs. Raises ImageError naming ``name`` (default: the path) with Pillow's reason."""
    label = name if name is not None else str(source)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            # Large photos trip Pillow's decompression-bomb *warning* (twice the limit is still
            # an error below); a translation tool is fed big images on purpose.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open_within(source, label, max_pixels) as opened:
                opened.load()  # decode now, so truncated files fail here rather than later
                image = ImageOps.exif_transpose(opened)  # a new image, so the file can be closed
    except (ImageError, UsageError):
        raise  # already says what is wrong with which file (the pixel limit)
    except UnidentifiedImageError:
        raise ImageError(f"{label}: cannot identify image file") from None
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{label}: is a directory") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label}: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        # System errors (permission denied) have a strerror; Pillow reports broken data as
        # OSError ("image file is truncated"), ValueError or, in some plugins, SyntaxError.
        raise ImageError(f"{label}: {getattr(exc, 'strerror', None) or _reason(exc)}") from None
    except Exception as exc:  # noqa: BLE001
        # Plugins fed corrupt data also raise IndexError, struct.error, TypeError...: still a
        # problem with this one file, not a reason to stop translating the others.
        raise ImageError(f"{label}: cannot decode ({type(exc).__name__}: {_reason(exc)})") from None
    return image


# --- the pixel limit (--max-pixels) ---------------------------------------------------------

MAX_PIXELS_ENV = "IMG2IMG_MAX_PIXELS"
_PILLOW_LIMIT_LOCK = threading.Lock()


def _open_within(source, label: str, max_pixels: int | None) -> Image.Image:
    """Image.open with our own pixel limit instead of Pillow's global one (which is switched
    off, under a lock, only while the header is read)."""
    if max_pixels is None and os.environ.get(MAX_PIXELS_ENV):
        try:
            max_pixels = int(os.environ[MAX_PIXELS_ENV])
        except ValueError:
            raise UsageError(f"{MAX_PIXELS_ENV} must be a number of pixels, not {os.environ[MAX_PIXELS_ENV]!r}") from None
    if max_pixels is None:
        if Image.MAX_IMAGE_PIXELS is None:  # switched off by the embedding program
            return Image.open(source)
        max_pixels = 2 * Image.MAX_IMAGE_PIXELS
    with _PILLOW_LIMIT_LOCK:
        pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            opened = Image.open(source)
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit
    width, height = opened.size
    if width * height > max_pixels:
        opened.close()
        raise ImageError(
            f"{label}: {width}x{height} is {width * height} pixels, more than the limit of {max_pixels} "
            "(a guard against decompression bombs)",
            hint=f"if you trust this image, pass --max-pixels {width * height} or set {MAX_PIXELS_ENV}",
        )
    return opened


def to_model_input(image: Image.Image, channels: int) -> ModelInput:
    """Convert any Pillow mode to ``channels`` (1: grayscale, 3: RGB) float pixels in [0, 1],
    keeping the alpha channel apart so that it can be put back on the output."""
    if channels not in (1, 3):
        raise ImageError(f"models with {channels} input channels are not supported (only 1 or 3)")
    # A colour profile describes the input's colour space; it still fits the output only for RGB
    # in and RGB out (from_model_output drops it otherwise), not for CMYK, LAB or gray profiles.
    icc = image.info.get("icc_profile") if image.mode in ("RGB", "RGBA") else None
    try:
        pixels, alpha = _to_pixels(image, channels)
    except (ValueError, OSError) as exc:  # a mode Pillow cannot convert
        raise ImageError(f"cannot convert a {image.mode} image to {'L' if channels == 1 else 'RGB'} ({_reason(exc)})") from None
    return ModelInput(pixels=np.ascontiguousarray(pixels), alpha=alpha, icc_profile=icc)


def _to_pixels(image: Image.Image, channels: int) -> tuple[np.ndarray, Image.Image | None]:
    image, alpha = _split_alpha(image)
    if image.mode in _HIGH_BIT_SCALE:
        # Pillow's own conversion to 8 bits clips 16-bit values instead of scaling them; keep
        # the full precision instead and scale explicitly.
        gray = np.asarray(image).astype(np.float32) / _HIGH_BIT_SCALE[image.mode]
        gray = np.clip(gray, 0.0, 1.0)[:, :, None]
        pixels = gray if channels == 1 else np.repeat(gray, 3, axis=2)
    else:
        if image.mode not in ("L", "RGB"):  # "1", P, CMYK, YCbCr, LAB, HSV, RGBX, ...
            image = image.convert("RGB")
        target = "L" if channels == 1 else "RGB"
        if image.mode != target:
            image = image.convert(target)  # ITU-R 601 luma, as torchvision's Grayscale
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
    return pixels, alpha


def from_model_output(
    pixels: np.ndarray, alpha: Image.Image | None = None, icc_profile: bytes | None = None
) -> Image.Image:
    """uint8 H x W x C (C = 1 or 3) pixels -> an L or RGB image, with ``alpha`` put back (LA/RGBA)."""
    if pixels.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 3 and pixels.shape[2] != 3:
        raise ImageError(f"models with {pixels.shape[2]} output channels are not supported (only 1 or 3)")
    image = Image.fromarray(pixels)
    if alpha is not None:
        image.putalpha(alpha)
    if icc_profile and image.mode in ("RGB", "RGBA"):
        image.info["icc_profile"] = icc_profile
    return image


def encode_image(image: Image.Image, fmt: str = DEFAULT_FORMAT) -> bytes:
    """Encode in memory, so that a failure to encode never leaves a file behind. Formats that
    cannot hold the image's mode (alpha in JPEG, LA in BMP, ...) get it without alpha, then as RGB."""
    options = dict(_SAVE_OPTIONS.get(fmt, {}))
    if image.info.get("icc_profile"):
        options["icc_profile"] = image.info["icc_profile"]
    last_error: Exception | None = None
    for candidate in _fallback_modes(image):
        buffer = io.BytesIO()
        try:
            candidate.save(buffer, format=fmt, **options)
        except (OSError, ValueError, KeyError) as exc:  # KeyError: a mode the plugin has no table for
            last_error = exc
            continue
        return buffer.getvalue()
    raise ImageError(f"cannot write a {image.mode} image as {fmt}: {_reason(last_error)}")


def write_image(image: Image.Image, path: str | os.PathLike[str], fmt: str | None = None) -> None:
    """Write ``image`` to ``path`` (format from its extension unless ``fmt``) through a temporary
    file that is renamed into place, so no reader ever sees half an image."""
    data = encode_image(image, fmt or format_for_path(path))
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write: {exc.strerror or _reason(exc)}") from None


def _split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    if image.mode in ("P", "L", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")  # palette or colour-key transparency becomes a real alpha
    if image.mode in ("PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "La":
        image = image.convert("LA")
    if image.mode in ("RGBA", "LA"):
        return image.convert(image.mode[:-1]), image.getchannel("A")
    return image, None


def _fallback_modes(image: Image.Image):
    yield image
    if image.mode in ("RGBA", "LA"):
        image = image.convert(image.mode[:-1])
        yield image
    if image.mode != "RGB":
        yield image.convert("RGB")


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "DEFAULT_FORMAT",
    "ModelInput",
    "READABLE_EXTENSIONS",
    "WRITABLE_EXTENSIONS",
    "encode_image",
    "format_for_path",
    "from_model_output",
    "is_image_path",
    "read_image",
    "to_model_input",
    "write_image",
]
