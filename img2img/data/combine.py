"""``img2img data combine``: A/ and B/ folders into the aligned (A|B) layout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from PIL import Image

from img2img.data.layouts import pair_by_name
from img2img.errors import DatasetError, ImageError, OutputExistsError, exists_message
from img2img.files.imageio import natural_channels, read_image, to_8bit, write_image

SPLITS = ("train", "val", "test")  # split subfolders mirrored by combine_folders


def combine_folders(
    dir_a: str | os.PathLike[str],
    dir_b: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    on_error: Callable[[str], None] | None = None,
    skip_existing: bool = False,
    on_skip: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Build the aligned layout: every A/x.* and B/x.* side by side in OUT/x.* (A's name and
    format; 8-bit L when both sides are grayscale, else RGB, decoded as every reader of images
    does). Split subfolders (train/, val/, test/) present in A are mirrored.

    The folders are paired first (files without a partner, mismatched split folders: a
    DatasetError before anything is written). Then each pair is read and written on its own, as
    ``translate`` does with its inputs: a pair that cannot be (an unreadable file, A and B of
    different sizes, an output that exists without ``overwrite``) is one message naming the
    file, passed to ``on_error``, and the other pairs are still written. Without ``on_error``
    those messages are raised together as one DatasetError once the others are written.
    With ``skip_existing`` an output that exists (or appears meanwhile) is kept and passed to
    ``on_skip``, not an error: a run that stopped part way is completed by running it again.
    Returns the files written."""
    dir_a, dir_b, out_dir = Path(dir_a), Path(dir_b), Path(out_dir)
    for folder in (dir_a, dir_b):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such folder")
    splits_a = [s for s in SPLITS if (dir_a / s).is_dir()]
    if splits_a:
        splits_b = [s for s in SPLITS if (dir_b / s).is_dir()]
        if splits_a != splits_b:
            raise DatasetError(
                f"{dir_a} has {', '.join(s + '/' for s in splits_a)} but {dir_b} has "
                f"{', '.join(s + '/' for s in splits_b) or 'no split folders'}; they must match"
            )
        jobs = [(dir_a / s, dir_b / s, out_dir / s) for s in splits_a]
    else:
        jobs = [(dir_a, dir_b, out_dir)]
    plan = [
        (pair.a, pair.b, folder_out / pair.a.name)
        for folder_a, folder_b, folder_out in jobs
        for pair in pair_by_name(folder_a, folder_b)
    ]

    failures: list[str] = []
    report = on_error or failures.append
    written = []
    for path_a, path_b, target in plan:
        assert path_b is not None
        if target.exists() and not overwrite:
            if skip_existing:
                (on_skip or (lambda path: None))(target)
            else:
                report(exists_message(target))
            continue
        try:
            _combine_pair(path_a, path_b, target, replace=overwrite)
        except OutputExistsError:  # written by another process since the check above
            if skip_existing:
                (on_skip or (lambda path: None))(target)
            else:
                report(f"{target}: appeared while combining (another process?); not replaced")
            continue
        except ImageError as exc:  # its message names the file
            report(str(exc))
            continue
        written.append(target)
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise DatasetError(f"{failures[0]}{more}; wrote the {len(written)} other pairs")
    return written


def _combine_pair(path_a: Path, path_b: Path, target: Path, *, replace: bool) -> None:
    a, b = read_image(path_a), read_image(path_b)
    if a.size != b.size:
        raise ImageError(
            f"{path_a}: A and B of different sizes ({a.width}x{a.height} and {b.width}x{b.height} in {path_b})"
        )
    channels = 1 if natural_channels(a.mode) == natural_channels(b.mode) == 1 else 3
    a, b = to_8bit(a, channels), to_8bit(b, channels)
    both = Image.new(a.mode, (a.width * 2, a.height))
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    image_format = Image.registered_extensions().get(target.suffix.lower())
    # No-replace unless --overwrite: a file another process wrote meanwhile is an error for this pair.
    write_image(both, target, image_format if image_format in Image.SAVE else "PNG", replace=replace)
