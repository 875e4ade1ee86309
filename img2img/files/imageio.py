"""Reading and writing images: EXIF orientation, mode conversions, formats, atomic writes.

Everything here works on PIL images and numpy arrays; tensors belong to ``inference``.

This is the one decoder of the project: ``translate``, the training and validation datasets, the
dataset checks, ``data combine`` and ``eval`` all read images with :func:`read_image` and turn
them into pixels with :func:`to_model_input` (float, for a model) or :func:`to_8bit` (the same
values rounded to 8 bits, for PIL transforms and files), so one file gives the same pixels
everywhere. How each Pillow mode maps onto [0, 1] is the table ``MODE_SCALES`` (README, "How
images are read").
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import stat
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from img2img.errors import ImageError, OutputExistsError, UsageError, exists_message
from img2img.files import formats
from img2img.files.atomic import atomic_path
from img2img.files.filetypes import special_file_kind

Image.init()  # registers every plugin, so the extension tables below are complete

# Extensions Pillow can open (folder inputs keep only these) and the ones it can write.
READABLE_EXTENSIONS = frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)
WRITABLE_EXTENSIONS = frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE)
DEFAULT_FORMAT = "PNG"

# Encoder options where Pillow's defaults throw away more than a translation deserves.
_SAVE_OPTIONS: dict[str, dict] = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}

_ORIENTATION_TAG = 0x0112
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})

# How each high-bit-depth grayscale mode maps onto [0, 1]: value / scale, clipped. 16-bit data
# uses its full range; 32-bit integer images ("I") are what Pillow makes of 16-bit PGM/PPM files
# (and what older Pillow made of 16-bit PNGs), so they get the same scale; float images are
# taken to hold [0, 1]. Every other mode is 8 bits a channel, converted by Pillow (below).
_HIGH_BIT_SCALE = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}

# The scale policy, one row per Pillow mode a user can hand in (README, "How images are read").
MODE_SCALES: dict[str, str] = {
    "1": "bilevel: 0 -> 0, 1 -> 1",
    "L": "8-bit gray: v / 255",
    "P": "palette: colours looked up, then v / 255 (transparency becomes alpha)",
    "PA": "palette + alpha: as P; alpha kept apart",
    "LA": "8-bit gray + alpha: v / 255; alpha kept apart",
    "La": "premultiplied LA: un-premultiplied, then as LA",
    "RGB": "8-bit colour: v / 255 (16-bit RGB files are reduced to 8 bits by Pillow)",
    "RGBX": "as RGB, the padding band dropped",
    "RGBA": "as RGB; alpha kept apart",
    "RGBa": "premultiplied RGBA: un-premultiplied, then as RGBA",
    "CMYK": "converted to RGB by Pillow (no colour management), then v / 255",
    "YCbCr": "converted to RGB by Pillow (ITU-R BT.601), then v / 255",
    "LAB": "converted to RGB by Pillow, then v / 255",
    "HSV": "converted to RGB by Pillow, then v / 255",
    "I;16": "16-bit gray: v / 65535 (also I;16L, I;16B, I;16N)",
    "I": "32-bit integer gray: v / 65535, clipped to [0, 1] (16-bit PGM/PPM files open as I)",
    "F": "32-bit float gray: taken as [0, 1], clipped; NaN is refused",
}

# Streams (standard input, a FIFO or /dev/fd/N named as input) are read into memory up to this
# many bytes; past it the input fails with a clear error rather than filling the memory.
DEFAULT_STREAM_LIMIT = 1 << 30
STREAM_LIMIT_ENV = "IMG2IMG_STDIN_LIMIT"

_log = logging.getLogger(__name__)
_noted_frames: set[str] = set()  # inputs already told that only their first frame is used


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
    """The Pillow format that ``path``'s extension asks for, if a translation can be written in
    it; a UsageError naming the file and the format otherwise (see img2img.files.formats)."""
    return formats.format_for_path(path)


def read_image(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    name: str | None = None,
    *,
    stream_limit: int | None = None,
    on_note: Callable[[str], None] | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """Decode an image fully, upright (EXIF orientation applied), first frame only.

    ``source`` is a path, the file's bytes or a binary stream. A path that is a FIFO or a
    character device (``<(cmd)``, ``/dev/stdin``) and a stream that cannot seek are read into
    memory up to ``stream_limit`` bytes (default ``DEFAULT_STREAM_LIMIT``); sockets and block
    devices are refused without being opened. A file of several frames (animated GIF, APNG,
    multipage TIFF) gives its first, and says so once per ``name`` through ``on_note``
    (default: a logging warning).

    ``max_pixels`` (default: $IMG2IMG_MAX_PIXELS, else twice Pillow's ``MAX_IMAGE_PIXELS``, where
    Pillow itself refuses) is the largest width x height read; it guards against decompression
    bombs.

    Raises ImageError naming ``name`` (default: the path) with the reason: Pillow's, "out of
    memory" with the image's size, the pixel limit, or the stream limit."""
    label = name if name is not None else str(source)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        source = _open_path(Path(source), label, stream_limit)
    elif not _seekable(source):
        source = io.BytesIO(read_stream(source, label, stream_limit))
    size: tuple[int, int] | None = None
    frames = 1
    try:
        with _decode_errors(label), warnings.catch_warnings():
            # Large photos trip Pillow's decompression-bomb *warning* (twice the limit is still
            # an error below); a translation tool is fed big images on purpose.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                with _open_within(source, label, max_pixels) as opened:
                    size = opened.size
                    frames = _frame_count(opened)
                    opened.load()  # decode now, so truncated files fail here rather than later
                    image = ImageOps.exif_transpose(opened)  # a new image, so the file can be closed
            except MemoryError:
                raise ImageError(f"{label}: {_out_of_memory('decoding', size, _byte_count(source))}") from None
    finally:
        if isinstance(source, io.BufferedReader):
            source.close()
    note_frames(label, frames, on_note)
    return image


def note_frames(label: str, frames: int, on_note: Callable[[str], None] | None = None) -> None:
    """Say once per ``label`` (per process) that only the first of ``frames`` frames is used."""
    if frames > 1 and label not in _noted_frames:
        _noted_frames.add(label)
        (on_note or _log.warning)(f"{label}: has {frames} frames; using the first")


def read_stream(stream: BinaryIO, name: str, limit: int | None = None) -> bytes:
    """Everything ``stream`` holds, read in chunks up to ``limit`` bytes (default
    ``DEFAULT_STREAM_LIMIT``); past it an ImageError naming ``name`` and the limit."""
    limit = DEFAULT_STREAM_LIMIT if limit is None else limit
    data = bytearray()
    while True:
        chunk = stream.read(min(1 << 20, limit + 1 - len(data)))
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise ImageError(
                f"{name}: more than {format_bytes(limit)}, the limit for standard input and pipes "
                f"(raise it with --stdin-limit or {STREAM_LIMIT_ENV})"
            )


def parse_byte_size(text: str) -> int:
    """'1G', '512M', '64k', '1.5GiB', '1000' -> bytes (K, M, G, T are powers of 1024).
    Raises UsageError for anything else."""
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    factor = 1
    if cleaned and cleaned[-1] in "KMGT":
        factor = 1024 ** ("KMGT".index(cleaned[-1]) + 1)
        cleaned = cleaned[:-1]
    try:
        value = float(cleaned)
    except ValueError:
        value = -1.0
    if not value >= 1 or value * factor > 1 << 62:
        raise UsageError(f"{text!r} is not a size in bytes (e.g. 1G, 512M, 1000000)")
    return int(value * factor)


def format_bytes(count: int) -> str:
    """1536 -> '1.5 KiB', 1073741824 -> '1 GiB'."""
    value = float(count)
    unit = "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{count} bytes" if unit == "bytes" else f"{value:.3g} {unit}"


def probe_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> tuple[tuple[int, int], str, int]:
    """((width, height) as the image will be used (EXIF orientation applied), Pillow mode,
    frame count), from the header only; never opens a socket or device, reads a FIFO with the
    stream bound. ``max_pixels`` is :func:`read_image`'s limit (default: $IMG2IMG_MAX_PIXELS,
    else twice Pillow's ``MAX_IMAGE_PIXELS``), so a header check passes exactly the images the
    decoder will read. Raises ImageError naming the path (the pixel limit with its hint)."""
    label = str(path)
    source = _open_path(Path(path), label, None)
    try:
        with _decode_errors(label), warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # as read_image
            with _open_within(source, label, max_pixels) as image:
                width, height = image.size
                try:
                    orientation = image.getexif().get(_ORIENTATION_TAG, 1)
                except Exception:  # noqa: BLE001  a broken EXIF block is not worth refusing the image for
                    orientation = 1
                size = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
                return size, image.mode, _frame_count(image)
    finally:
        if isinstance(source, io.BufferedReader):
            source.close()


@contextlib.contextmanager
def _decode_errors(label: str) -> Iterator[None]:
    """Whatever opening or decoding one file raises becomes one ImageError naming ``label``
    (errors that already name it pass through): the readers of pixels and of headers say the
    same thing about the same file."""
    try:
        yield
    except (ImageError, UsageError):
        raise  # already says what is wrong with which file (the pixel limit, out of memory)
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


# --- the pixel limit (--max-pixels) ---------------------------------------------------------

MAX_PIXELS_ENV = "IMG2IMG_MAX_PIXELS"
_PILLOW_LIMIT_LOCK = threading.Lock()


def use_max_pixels(max_pixels: int) -> None:
    """Make ``max_pixels`` the default pixel limit of every reader (:func:`read_image`,
    :func:`probe_image`) in this process and the processes it starts (DataLoader workers,
    torchrun ranks): it becomes $IMG2IMG_MAX_PIXELS, which they read. For commands whose
    readers are deep inside (`train`, `data check`); `translate` passes its limit directly."""
    if max_pixels < 1:
        raise UsageError(f"--max-pixels must be at least 1, not {max_pixels}")
    os.environ[MAX_PIXELS_ENV] = str(int(max_pixels))


def _open_within(source, label: str, max_pixels: int | None) -> Image.Image:
    """Image.open with our own pixel limit instead of Pillow's global one (which is switched
    off, under a lock, only while the header is read)."""
    if max_pixels is None and os.environ.get(MAX_PIXELS_ENV):
        try:
            max_pixels = int(os.environ[MAX_PIXELS_ENV])
        except ValueError:
            raise UsageError(
                f"{MAX_PIXELS_ENV} must be a number of pixels, not {os.environ[MAX_PIXELS_ENV]!r}"
            ) from None
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
    """Convert any Pillow mode to ``channels`` (1: grayscale, 3: RGB) float32 pixels in [0, 1]
    (H x W x channels; scales: ``MODE_SCALES``), keeping the alpha channel apart so that it can
    be put back on the output. Raises ImageError for a mode that cannot be converted, NaN
    pixels, or pixels that do not fit in memory."""
    _check_channels(channels)
    # A colour profile describes the input's colour space; it still fits the output only for RGB
    # in and RGB out (from_model_output drops it otherwise), not for CMYK, LAB or gray profiles.
    icc = image.info.get("icc_profile") if image.mode in ("RGB", "RGBA") else None
    try:
        image, alpha = _split_alpha(image)
        if image.mode in _HIGH_BIT_SCALE:
            gray = _high_bit_gray(image)[:, :, None]
            pixels = gray if channels == 1 else np.repeat(gray, 3, axis=2)
        else:
            pixels = np.asarray(_convert_8bit(image, channels), dtype=np.float32) / 255.0
            if pixels.ndim == 2:
                pixels = pixels[:, :, None]
        pixels = np.ascontiguousarray(pixels)
    except MemoryError:
        raise ImageError(_out_of_memory("converting", image.size, None)) from None
    except (ValueError, OSError) as exc:  # a mode Pillow cannot convert
        raise ImageError(_cannot_convert(image.mode, channels, exc)) from None
    return ModelInput(pixels=pixels, alpha=alpha, icc_profile=icc)


def to_8bit(image: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode -> an 8-bit L (``channels`` 1) or RGB (3) image, alpha dropped: the
    pixels of :func:`to_model_input` rounded to 8 bits (exactly its values for 8-bit inputs), for
    code that works on PIL images (training transforms, ``data combine``). Raises ImageError as
    :func:`to_model_input` does."""
    _check_channels(channels)
    try:
        image, _ = _split_alpha(image)
        if image.mode not in _HIGH_BIT_SCALE:
            return _convert_8bit(image, channels)
        gray = Image.fromarray(np.round(_high_bit_gray(image) * 255.0).astype(np.uint8), "L")
        return gray if channels == 1 else gray.convert("RGB")
    except MemoryError:
        raise ImageError(_out_of_memory("converting", image.size, None)) from None
    except (ValueError, OSError) as exc:
        raise ImageError(_cannot_convert(image.mode, channels, exc)) from None


def load_image(
    path: str | os.PathLike[str], channels: int, *, on_note: Callable[[str], None] | None = None
) -> Image.Image:
    """:func:`read_image` then :func:`to_8bit`: the file as an 8-bit L (``channels`` 1) or RGB
    (3) image, upright, first frame. Raises ImageError naming ``path``."""
    image = read_image(path, on_note=on_note)
    try:
        return to_8bit(image, channels)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None


def naming(label: str, exc: ImageError) -> ImageError:
    """``exc`` as an ImageError whose message starts with ``label``: the conversions
    (:func:`to_model_input`, :func:`to_8bit`) do not know which file the image came from, the
    code that read it does. An error that already names ``label`` is returned as it is."""
    if str(exc).startswith(f"{label}: "):
        return exc
    return ImageError(f"{label}: {exc.message}", hint=exc.hint)  # the hint stays apart


def natural_channels(mode: str) -> int:
    """1 for the grayscale family of modes (1, L, LA, La, I, I;16*, F), else 3."""
    return 1 if mode in _GRAY_MODES else 3


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ImageError(f"models with {channels} input channels are not supported (only 1 or 3)")


def _cannot_convert(mode: str, channels: int, exc: BaseException) -> str:
    return f"cannot convert a {mode} image to {'L' if channels == 1 else 'RGB'} ({_reason(exc)})"


def _convert_8bit(image: Image.Image, channels: int) -> Image.Image:
    """An 8-bit mode (alpha already split off) -> L or RGB by Pillow's conversions."""
    if image.mode not in ("L", "RGB"):  # "1", P, CMYK, YCbCr, LAB, HSV, RGBX, ...
        image = image.convert("RGB")
    target = "L" if channels == 1 else "RGB"
    if image.mode != target:
        image = image.convert(target)  # ITU-R 601 luma, as torchvision's Grayscale
    return image


def _high_bit_gray(image: Image.Image) -> np.ndarray:
    """A 16/32-bit integer or float image -> float32 H x W in [0, 1] (``_HIGH_BIT_SCALE``)."""
    # Pillow's own conversion to 8 bits clips 16-bit values instead of scaling them; keep the
    # full precision instead and scale explicitly.
    gray = np.asarray(image).astype(np.float32) / _HIGH_BIT_SCALE[image.mode]
    if image.mode == "F" and np.isnan(gray).any():
        raise ValueError("NaN pixel values")
    return np.clip(gray, 0.0, 1.0)


def _open_path(path: Path, label: str, stream_limit: int | None) -> BinaryIO:
    """An open file for ``path``; streams (FIFOs, character devices) are read with a bound
    first, sockets and block devices refused without being opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{label}: {exc.strerror or _reason(exc)}") from None
    if stat.S_ISDIR(mode):
        raise ImageError(f"{label}: is a directory")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        raise ImageError(f"{label}: is {special_file_kind(mode) or 'not a regular file'}, not an image file")
    try:
        handle = open(path, "rb")  # noqa: SIM115  closed by the caller
    except OSError as exc:
        raise ImageError(f"{label}: {exc.strerror or _reason(exc)}") from None
    if stat.S_ISREG(mode):
        return handle
    with handle:
        return io.BytesIO(read_stream(handle, label, stream_limit))


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError, OSError):
        return False


def _frame_count(image: Image.Image) -> int:
    try:
        return int(getattr(image, "n_frames", 1))
    except Exception:  # noqa: BLE001  a broken later frame: the first may still be fine
        return 1


def _byte_count(source: object) -> int | None:
    try:
        if isinstance(source, io.BytesIO):
            return len(source.getbuffer())
        return os.fstat(source.fileno()).st_size  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        return None


def _out_of_memory(doing: str, size: tuple[int, int] | None, file_bytes: int | None) -> str:
    if size is None:
        return f"out of memory {doing} this image"
    width, height = size
    details = f"{width * height / 1e6:.1f} megapixels"
    if file_bytes is not None:
        details += f", a {format_bytes(file_bytes)} file"
    return f"out of memory {doing} a {width}x{height} image ({details})"


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
    options = dict(_SAVE_OPTIONS.get(fmt, {}), **formats.save_options(fmt, image.size))
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


def write_image(
    image: Image.Image, path: str | os.PathLike[str], fmt: str | None = None, *, replace: bool = False
) -> None:
    """Write ``image`` to ``path`` (format from its extension unless ``fmt``) through a temporary
    file that is moved into place, so no reader ever sees half an image. Unless ``replace``, a
    file that exists at ``path`` when the move happens (another process may have just written
    it) is left alone and OutputExistsError is raised; any other failure (a name the file system
    refuses, no space) is an ImageError naming ``path``."""
    data = encode_image(image, fmt or format_for_path(path))
    try:
        with atomic_path(path, replace=replace) as tmp:
            tmp.write_bytes(data)
    except FileExistsError:
        raise OutputExistsError(exists_message(path)) from None
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
    "DEFAULT_STREAM_LIMIT",
    "MODE_SCALES",
    "ModelInput",
    "READABLE_EXTENSIONS",
    "WRITABLE_EXTENSIONS",
    "encode_image",
    "format_for_path",
    "from_model_output",
    "format_bytes",
    "is_image_path",
    "load_image",
    "natural_channels",
    "naming",
    "note_frames",
    "parse_byte_size",
    "probe_image",
    "read_image",
    "use_max_pixels",
    "read_stream",
    "to_8bit",
    "to_model_input",
    "write_image",
]
