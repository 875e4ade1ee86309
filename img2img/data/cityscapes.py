"""`img2img data prepare cityscapes`: the pix2pix (and CycleGAN) Cityscapes set built from the
user's own downloads, as the reference's datasets/prepare_cityscapes_dataset.py builds it.

Cityscapes may not be redistributed, so its archives come from cityscapes-dataset.com
(``gtFine_trainvaltest.zip``, ``leftImg8bit_trainvaltest.zip``; the unzipped folders work too).
From the reference's script (facts, not code): the ``val`` split becomes ``test``, ``train``
stays ``train``; each ``gtFine/SPLIT/CITY/*_gtFine_color.png`` is paired with the
``leftImg8bit/SPLIT/CITY/*_leftImg8bit.png`` of the same name; both are converted to RGB and
resized to 256x256 (Pillow's default filter, bicubic); the photo is A (left), the colour label
map B (right) of a 512x256 JPEG (quality 100, no chroma subsampling) named by its index in
name order; the photo and the label map also go to ``SPLITA/N_A.jpg`` and ``SPLITB/N_B.jpg``.

Unlike the script, a file without its partner stops everything before anything is written, and
the result is built in a hidden temporary folder and moved into place when complete.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

from img2img.errors import DatasetError, UsageError

SIZE = 256
SPLITS = (("val", "test"), ("train", "train"))  # Cityscapes split -> the reference's folder name
_LABEL = re.compile(r"(?:^|/)gtFine/(train|val)/[^/]+/([^/]+)_gtFine_color\.png$")
_PHOTO = re.compile(r"(?:^|/)leftImg8bit/(train|val)/[^/]+/([^/]+)_leftImg8bit\.png$")


class _Source:
    """The files of a zip or a folder, by their '/'-separated paths."""

    def __init__(self, path: Path, option: str) -> None:
        self.path = path
        if path.is_dir():
            self.zip = None
            self.names = [p.relative_to(path.parent).as_posix() for p in path.rglob("*.png")]
        elif zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            self.names = [info.filename for info in self.zip.infolist() if not info.is_dir()]
        else:
            raise UsageError(f"{option} {path}: neither a zip file nor a folder")

    def read(self, name: str) -> bytes:
        if self.zip is not None:
            return self.zip.read(name)
        return (self.path.parent / name).read_bytes()

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _index(source: _Source, pattern: re.Pattern[str], what: str) -> dict[tuple[str, str], str]:
    found = {}
    for name in source.names:
        match = pattern.search(name)
        if match:
            found[(match.group(1), match.group(2))] = name
    if not found:
        raise DatasetError(f"{source.path}: no {what} files in it (is it the right archive?)")
    return found


def prepare_cityscapes(
    gtfine: Path, leftimg8bit: Path, out: Path, *, note: Callable[[str], None] = lambda line: None
) -> dict[str, int]:
    """Build the reference's Cityscapes layout in ``out`` (which must not exist) from the two
    archives (or folders); returns the number of pairs per output split. Raises UsageError (out
    exists, an input that is neither a zip nor a folder), DatasetError (no Cityscapes files, a
    file without its partner), ImageError (an image that cannot be decoded, naming it)."""
    from img2img.data.fetch import temporary_folder

    if out.exists():
        raise UsageError(f"{out}: already exists; remove it or choose another --out")
    labels_source = _Source(gtfine, "--gtfine")
    photos_source = _Source(leftimg8bit, "--leftimg8bit")
    try:
        labels = _index(labels_source, _LABEL, "gtFine/*/*/*_gtFine_color.png")
        photos = _index(photos_source, _PHOTO, "leftImg8bit/*/*/*_leftImg8bit.png")
        unpaired = sorted(set(labels) ^ set(photos))
        if unpaired:
            split, stem = unpaired[0]
            missing = "_leftImg8bit.png" if (split, stem) in labels else "_gtFine_color.png"
            raise DatasetError(
                f"{stem}: {split} has no {stem}{missing}; {len(unpaired)} files without a partner, nothing was written"
            )
        counts = {}
        with temporary_folder(out.parent) as staging:
            for split, folder in SPLITS:
                keys = sorted(key for key in labels if key[0] == split)
                for sub in (folder, f"{folder}A", f"{folder}B"):
                    (staging / sub).mkdir()
                for i, key in enumerate(keys):
                    label = _resized(labels_source, labels[key])
                    photo = _resized(photos_source, photos[key])
                    _write_pair(staging, folder, i, photo, label)
                counts[folder] = len(keys)
                note(f"{folder}: {len(keys)} pairs")
            _move(staging, out)  # the staging folder is gone now: its cleanup finds nothing
        return counts
    finally:
        labels_source.close()
        photos_source.close()


def _move(staging: Path, out: Path) -> None:
    from img2img.files.atomic import rename_no_replace

    try:
        rename_no_replace(staging, out)
    except FileExistsError:
        raise UsageError(f"{out}: already exists; remove it or choose another --out") from None
    except OSError:
        if out.exists():
            raise UsageError(f"{out}: already exists; remove it or choose another --out") from None
        os.rename(staging, out)


def _resized(source: _Source, name: str):
    from PIL import Image

    from img2img.files.imageio import read_image, to_8bit

    label = f"{source.path}:{name}" if source.zip is not None else str(source.path.parent / name)
    image = to_8bit(read_image(source.read(name), label), 3)
    return image.resize((SIZE, SIZE), Image.Resampling.BICUBIC)


def _write_pair(root: Path, folder: str, i: int, photo, label) -> None:
    from PIL import Image

    side_by_side = Image.new("RGB", (2 * SIZE, SIZE))
    side_by_side.paste(photo, (0, 0))
    side_by_side.paste(label, (SIZE, 0))
    for image, path in (
        (side_by_side, root / folder / f"{i}.jpg"),
        (photo, root / f"{folder}A" / f"{i}_A.jpg"),
        (label, root / f"{folder}B" / f"{i}_B.jpg"),
    ):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", subsampling=0, quality=100)
        path.write_bytes(buffer.getvalue())


__all__ = ["prepare_cityscapes"]
