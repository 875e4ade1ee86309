"""``img2img data combine``: A/ and B/ folders into the aligned (A|B) layout."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageOps

from img2img.data.checks import _Problems
from img2img.data.images import _first_line, read_size
from img2img.data.layouts import _pair_by_name
from img2img.errors import DatasetError


SPLITS = ("train", "val", "test")  # split subfolders mirrored by combine_folders


def combine_folders(
    dir_a: str | os.PathLike[str],
    dir_b: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Build the aligned layout: every A/x.* and B/x.* side by side in OUT/x.* (A's name and
    format). Split subfolders (train/, val/, test/) present in A are mirrored. Everything is
    checked before anything is written; returns the files written."""
    from img2img.atomic import atomic_path

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

    plan: list[tuple[Path, Path, Path]] = []
    problems = _Problems(Path(os.path.commonpath([dir_a.resolve(), dir_b.resolve()])))
    for folder_a, folder_b, folder_out in jobs:
        for pair in _pair_by_name(folder_a, folder_b):
            assert pair.b is not None
            target = folder_out / pair.a.name
            try:
                size_a, size_b = read_size(pair.a), read_size(pair.b)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                problems.add("unreadable images", f"{pair.a.name} or {pair.b.name} ({_first_line(exc)})")
                continue
            if size_a != size_b:
                problems.add(
                    "A and B of different sizes",
                    f"{problems.rel(pair.a.resolve())} {size_a[0]}x{size_a[1]} vs "
                    f"{problems.rel(pair.b.resolve())} {size_b[0]}x{size_b[1]}",
                )
            if target.exists() and not overwrite:
                problems.add("outputs that already exist (use --overwrite)", str(target))
            plan.append((pair.a, pair.b, target))
    problems.raise_if_any()

    written = []
    for path_a, path_b, target in plan:
        with Image.open(path_a) as raw_a, Image.open(path_b) as raw_b:
            a, b = ImageOps.exif_transpose(raw_a), ImageOps.exif_transpose(raw_b)
            mode = "L" if a.mode in ("L", "1") and b.mode in ("L", "1") else "RGB"
            a, b = a.convert(mode), b.convert(mode)
            both = Image.new(mode, (a.width * 2, a.height))
            both.paste(a, (0, 0))
            both.paste(b, (a.width, 0))
        image_format = Image.registered_extensions().get(target.suffix.lower(), "PNG")
        options = {"quality": 95} if image_format == "JPEG" else {}
        with atomic_path(target) as tmp:
            both.save(tmp, format=image_format, **options)
        written.append(target)
    return written
