"""Image files of a dataset: which files count as images, listing them, reading their
headers (size and mode) and decoding them.

All of it goes through the project's one folder walker (:mod:`img2img.files.walk`) and one decoder
(:mod:`img2img.files.imageio`), so a dataset holds the files ``translate`` would list for the same
folder and gets the pixels ``translate`` would get from the same file (a 16-bit PNG is scaled,
not clipped; README, "Which files are read, and how images are decoded")."""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image

from img2img.errors import DatasetError, ImageError
from img2img.files.imageio import READABLE_EXTENSIONS, is_image_path, note_frames, probe_image
from img2img.files.imageio import load_image as _decode
from img2img.files.walk import list_images as _walk

IMG_EXTENSIONS = tuple(sorted(READABLE_EXTENSIONS))  # every extension Pillow can open, any case
_log = logging.getLogger(__name__)
_noted: set[str] = set()  # walker notes already logged (a folder is listed more than once)


def is_image_file(path: Path) -> bool:
    return is_image_path(path) and not path.name.startswith(".")


def list_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (and below it when ``recursive``), sorted by path, listed by
    the one walker: symbolic links followed (loops not), FIFOs, sockets, devices and broken
    links skipped with a note (logged once). Raises DatasetError for a folder that cannot be
    listed, since its images would otherwise be missing without a word."""
    listing = _walk(folder, recursive=recursive)
    if listing.errors:
        raise DatasetError("; ".join(listing.errors))
    for note in listing.notes:
        if note not in _noted:
            _noted.add(note)
            _log.warning(note)
    return sorted(listing.paths)


def read_size(path: Path) -> tuple[int, int]:
    """(width, height) as the image will be used (EXIF orientation applied), from its header only."""
    return read_header(path)[0]


def read_header(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) as the image will be used (EXIF orientation applied) and the PIL mode
    (L, RGB, ...), from the header only. A file of several frames is noted (once): the first
    is used. Raises ImageError naming the file."""
    size, mode, frames = probe_image(path)
    note_frames(str(path), frames)
    return size, mode


def load_image(path: Path, channels: int) -> Image.Image:
    """Decode ``path`` with the project's decoder (EXIF orientation applied, first frame,
    scaled by the mode table) as 8-bit grayscale (1 channel) or RGB (3). Raises DatasetError
    naming the file (the training loop reports it as such from its workers)."""
    try:
        return _decode(path, channels)
    except ImageError as exc:
        raise DatasetError(f"{path}: cannot read image ({unreadable_reason(exc, path)})") from None


def unreadable_reason(exc: BaseException, path: Path) -> str:
    """The reason in an ImageError about ``path``, without the path it starts with."""
    text = str(exc).removeprefix(f"{path}: ") or type(exc).__name__
    hint = getattr(exc, "hint", None)  # e.g. how to lift the pixel limit
    return f"{text}; {hint}" if hint else text
