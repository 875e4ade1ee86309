"""Folder layouts of training data: finding the pairs (aligned A|B images or A/ + B/ folders)
and the unpaired domains (trainA/, trainB/), and the validation split."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from img2img.data.images import is_image_file, list_images
from img2img.errors import DatasetError, first_line

MAX_LISTED = 5  # files named per kind of problem; the rest are counted

EXPECTED_LAYOUT = (
    "expected DIR/train/*.jpg|png (A and B side by side) or DIR/train/A/ + DIR/train/B/ (pairs with the same file name)"
)


EXPECTED_UNPAIRED = (
    "expected DIR/trainA/ and DIR/trainB/ (each domain's images, any number, unpaired; "
    "DIR/testA/ + DIR/testB/ optional)"
)


@dataclass(frozen=True)
class Pair:
    """One training example: an A|B image (``b`` is None) or an A file and a B file."""

    a: Path
    b: Path | None = None

    @property
    def name(self) -> str:
        return self.a.name


@dataclass
class PairedData:
    """What the dataset check found: the pairs to train and validate on, and how."""

    root: Path
    layout: str  # "aligned" or "two-folder"
    train: list[Pair]
    val: list[Pair]
    val_source: str  # "val", "held-out", "train" or "none"
    sizes: dict[Path, tuple[int, int]] = field(default_factory=dict, repr=False)
    warnings: list[str] = field(default_factory=list)  # shown when training starts

    def describe(self) -> str:
        val = {
            "val": f"{len(self.val)} from val/",
            "held-out": f"{len(self.val)} held out from train/",
            "train": f"{len(self.val)} training images (too few to hold any out)",
            "none": "none",
        }[self.val_source]
        layout = "A|B side by side" if self.layout == "aligned" else "A/ and B/ folders"
        return f"{self.root}: {len(self.train)} training pairs ({layout}); validation: {val}"


@dataclass
class UnpairedData:
    """What the unpaired dataset check found: each domain's training and validation images."""

    root: Path
    train_a: list[Path]
    train_b: list[Path]
    val_a: list[Path]
    val_b: list[Path]
    val_source: str  # "val" (testA/ + testB/), "held-out", "train" or "none"
    warnings: list[str] = field(default_factory=list)
    sizes: dict[Path, tuple[int, int]] = field(default_factory=dict, repr=False)  # (width, height)

    def describe(self) -> str:
        if self.val_source == "val":
            val = f"{len(self.val_a)} + {len(self.val_b)} from testA/ + testB/"
        elif self.val_source == "none":
            val = "none"
        else:
            val = f"{len(self.val_a)} + {len(self.val_b)} " + (
                "held out from trainA/ + trainB/"
                if self.val_source == "held-out"
                else "training images (too few to hold any out)"
            )
        return (
            f"{self.root}: {len(self.train_a)} trainA/ and {len(self.train_b)} trainB/ images "
            f"(unpaired); validation: {val}"
        )


def validation_split(train: list, val: list, val_size: int) -> tuple[list, list, str]:
    """(train, val, val_source): the given validation items, else a fixed slice of train held
    out (with 10 or more), else the first training items (too few to hold any out)."""
    val_source = "val"
    if val_size == 0:
        val, val_source = [], "none"
    elif not val:
        if len(train) >= 10:
            held = max(1, min(val_size, len(train) // 10))
            order = list(range(len(train)))
            random.Random(0).shuffle(order)  # a fixed split, whatever --seed is
            held_out = set(order[:held])
            val = [train[i] for i in sorted(held_out)]
            train = [item for i, item in enumerate(train) if i not in held_out]
            val_source = "held-out"
        else:
            val, val_source = list(train), "train"
    return train, val[:val_size], val_source


def scan_split(folder: Path) -> tuple[str, list[Pair]]:
    """The layout of one split folder and its pairs; raises a DatasetError for an empty folder,
    an unknown layout, or A/B files without a partner."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    subdirs = {p.name: p for p in entries if p.is_dir()}
    direct_images = [p for p in entries if p.is_file() and is_image_file(p)]
    has_a, has_b = "A" in subdirs, "B" in subdirs
    if has_a or has_b:
        if direct_images:
            raise DatasetError(
                f"{folder}: holds both images and {'A/' if has_a else 'B/'}; unknown layout: {EXPECTED_LAYOUT}"
            )
        if not (has_a and has_b):
            present, missing = ("A", "B") if has_a else ("B", "A")
            raise DatasetError(f"{folder}: has {present}/ but no {missing}/; {EXPECTED_LAYOUT}")
        return "two-folder", pair_by_name(subdirs["A"], subdirs["B"])
    images = list_images(folder, recursive=True)  # the reference walks subfolders too
    if not images:
        found = describe_folder(folder)
        hint = ""
        if any(name in subdirs for name in ("trainA", "trainB", "testA")):
            hint = " (trainA/trainB is the unpaired layout of `img2img train cyclegan`)"
        raise DatasetError(f"{folder}: no images (found {found}){hint}; {EXPECTED_LAYOUT}")
    return "aligned", [Pair(path) for path in images]


def pair_by_name(dir_a: Path, dir_b: Path) -> list[Pair]:
    """Pair DIR/A/x.* with DIR/B/x.* by file name (the extension may differ)."""
    files_a, files_b = list_images(dir_a), list_images(dir_b)
    if not files_a or not files_b:
        empty = dir_a if not files_a else dir_b
        raise DatasetError(f"{empty}: no images (found {describe_folder(empty)})")
    by_stem_a, by_stem_b = _by_stem(files_a), _by_stem(files_b)
    only_a = sorted(set(by_stem_a) - set(by_stem_b))
    only_b = sorted(set(by_stem_b) - set(by_stem_a))
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} in A/ without a partner in B/ ({_names(only_a, by_stem_a)})")
        if only_b:
            parts.append(f"{len(only_b)} in B/ without a partner in A/ ({_names(only_b, by_stem_b)})")
        raise DatasetError(f"{dir_a.parent}: unpaired images: " + "; ".join(parts))
    return [Pair(by_stem_a[stem], by_stem_b[stem]) for stem in sorted(by_stem_a)]


def _by_stem(files: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in files:
        if path.stem in found:
            raise DatasetError(
                f"{path.parent}: {found[path.stem].name} and {path.name} have the same name; "
                "pairs are matched by name, so keep one"
            )
        found[path.stem] = path
    return found


def _names(stems: list[str], files: dict[str, Path]) -> str:
    shown = ", ".join(files[s].name for s in stems[:MAX_LISTED])
    return shown + (f" and {len(stems) - MAX_LISTED} more" if len(stems) > MAX_LISTED else "")


def describe_folder(folder: Path) -> str:
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        return f"an unreadable folder ({first_line(exc)})"
    if not entries:
        return "nothing"
    shown = [p.name + ("/" if p.is_dir() else "") for p in entries[:MAX_LISTED]]
    more = f" and {len(entries) - MAX_LISTED} more" if len(entries) > MAX_LISTED else ""
    return ", ".join(shown) + more


def domain_images(folder: Path) -> list[Path]:
    images = list_images(folder, recursive=True)  # the reference walks subfolders too
    if not images:
        raise DatasetError(f"{folder}: no images (found {describe_folder(folder)}); {EXPECTED_UNPAIRED}")
    return images
