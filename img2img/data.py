"""Training data: folder layouts, the up-front dataset check, paired and unpaired datasets,
transforms, a resumable sampler, and ``data combine``.

Paired layouts (pix2pix):

- aligned (the reference's): ``DIR/train/*.jpg``, each image A and B side by side;
- two folders: ``DIR/train/A/x.png`` + ``DIR/train/B/x.png``, paired by file name.

``DIR/val`` (either layout) is the validation split; without one, a slice of train is held out.

Unpaired layout (CycleGAN, the reference's unaligned one): ``DIR/trainA`` and ``DIR/trainB``,
any number of images each; ``DIR/testA`` + ``DIR/testB`` are the validation split, else a slice
of each domain is held out.

Preprocessing follows the reference (``--preprocess``, ``--load-size``, ``--crop-size``, flip),
with torchvision's v2 transforms applied to paired A and B together so that they get the same
crop and flip (unpaired A and B get their own). Randomness comes from a per-sample seed chosen by :class:`EpochSampler`, so an epoch's
batches do not depend on worker count or on where a run was resumed.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from img2img.errors import DatasetError, UsageError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")
_ORIENTATION_TAG = 0x0112
_MAX_LISTED = 5  # files named per kind of problem; the rest are counted


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


# --- preprocessing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocess:
    """The reference's --preprocess, --load-size, --crop-size and flip options."""

    mode: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True

    @classmethod
    def from_config(cls, config: Any) -> Preprocess:
        return cls(config.preprocess, config.load_size, config.crop_size, config.flip)

    @property
    def crops(self) -> bool:
        return self.mode in ("resize_and_crop", "crop", "scale_width_and_crop")

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize step, before any crop."""
        if self.mode == "resize_and_crop":
            return self.load_size, self.load_size
        if self.mode in ("scale_width", "scale_width_and_crop"):
            return _scale_width_size(width, height, self.load_size, self.crop_size)
        if self.mode == "none":
            return _power_of_2_size(width, height, 4)
        return width, height

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the tensor an image of this size becomes."""
        if self.crops:
            return self.crop_size, self.crop_size
        return self.resized_size(width, height)

    def to_dict(self) -> dict[str, Any]:
        return {"preprocess": self.mode, "load_size": self.load_size, "crop_size": self.crop_size}


class ScaleWidth(v2.Transform):
    """The reference's ``__scale_width``: width to ``target``, height in proportion (at least
    ``crop_size``), bicubic."""

    def __init__(self, target: int, crop_size: int):
        super().__init__()
        self.target, self.crop_size = target, crop_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        new_w, new_h = _scale_width_size(width, height, self.target, self.crop_size)
        return {"size": [new_h, new_w], "unchanged": (new_w, new_h) == (width, height)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["unchanged"]:
            return inpt
        return TF.resize(inpt, params["size"], interpolation=InterpolationMode.BICUBIC, antialias=True)


class MakePowerOf2(v2.Transform):
    """The reference's ``__make_power_2`` (base 4) for ``--preprocess none``: sides rounded to
    the nearest multiple of ``base``."""

    def __init__(self, base: int = 4):
        super().__init__()
        self.base = base

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        new_w, new_h = _power_of_2_size(width, height, self.base)
        return {"size": [new_h, new_w], "unchanged": (new_w, new_h) == (width, height)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["unchanged"]:
            return inpt
        return TF.resize(inpt, params["size"], interpolation=InterpolationMode.BICUBIC, antialias=True)


def _scale_width_size(width: int, height: int, target: int, crop_size: int) -> tuple[int, int]:
    if width == target and height >= crop_size:
        return width, height
    return target, int(max(target * height / width, crop_size))


def _power_of_2_size(width: int, height: int, base: int) -> tuple[int, int]:
    return max(base, round(width / base) * base), max(base, round(height / base) * base)


def build_transform(pre: Preprocess, *, train: bool) -> v2.Transform:
    """The joint geometric transform: call it as ``t(image_a, image_b)`` so both get the same
    crop and flip. ``train=False`` gives the deterministic version (centre crop, no flip)."""
    steps: list[v2.Transform] = []
    if pre.mode == "resize_and_crop":
        steps.append(v2.Resize([pre.load_size, pre.load_size], InterpolationMode.BICUBIC, antialias=True))
    elif pre.mode in ("scale_width", "scale_width_and_crop"):
        steps.append(ScaleWidth(pre.load_size, pre.crop_size))
    elif pre.mode == "none":
        steps.append(MakePowerOf2(4))
    if pre.crops:
        steps.append(v2.RandomCrop(pre.crop_size) if train else v2.CenterCrop(pre.crop_size))
    if train and pre.flip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    return v2.Compose(steps) if steps else v2.Identity()


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image as a float tensor in [-1, 1], channels first."""
    return TF.to_dtype(TF.to_image(image), torch.float32, scale=True).mul_(2.0).sub_(1.0)


# --- paired data ------------------------------------------------------------------------------


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

    def describe(self) -> str:
        val = {
            "val": f"{len(self.val)} from val/",
            "held-out": f"{len(self.val)} held out from train/",
            "train": f"{len(self.val)} training images (too few to hold any out)",
            "none": "none",
        }[self.val_source]
        layout = "A|B side by side" if self.layout == "aligned" else "A/ and B/ folders"
        return f"{self.root}: {len(self.train)} training pairs ({layout}); validation: {val}"


class _Problems:
    """Collects what is wrong with a dataset, grouped by kind, for one error message."""

    def __init__(self, root: Path):
        self.root = root
        self.kinds: dict[str, list[str]] = {}

    def add(self, kind: str, item: str) -> None:
        self.kinds.setdefault(kind, []).append(item)

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def raise_if_any(self) -> None:
        if not self.kinds:
            return
        clauses = []
        for kind, items in self.kinds.items():
            shown = ", ".join(items[:_MAX_LISTED])
            more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
            clauses.append(f"{kind}: {shown}{more}")
        raise DatasetError(f"dataset {self.root}: " + "; ".join(clauses))


_EXPECTED_LAYOUT = (
    "expected DIR/train/*.jpg|png (A and B side by side) or DIR/train/A/ + DIR/train/B/ "
    "(pairs with the same file name)"
)


def check_paired_data(
    root: str | os.PathLike[str],
    pre: Preprocess,
    *,
    size_multiple: int = 1,
    batch_size: int = 1,
    val_size: int = 50,
) -> PairedData:
    """Check a paired dataset before training: layout, every image's header, sizes against the
    preprocessing and the network. Raises one DatasetError that names the files; reads headers
    only, so it is fast."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; {_EXPECTED_LAYOUT}")
    _check_preprocess_options(pre, size_multiple)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DatasetError(f"{root}: no train/ folder; found {_describe_folder(root)}; {_EXPECTED_LAYOUT}")
    layout, train = _scan_split(train_dir)
    val: list[Pair] = []
    val_dir = root / "val"
    if val_dir.is_dir():
        val_layout, val = _scan_split(val_dir)
        if val_layout != layout:
            raise DatasetError(
                f"{root}: train/ uses the {layout} layout but val/ the {val_layout} layout; use one"
            )

    problems = _Problems(root)
    sizes: dict[Path, tuple[int, int]] = {}
    for pair in train + val:
        _check_pair(pair, pre, size_multiple, problems, sizes)
    problems.raise_if_any()
    _check_batch_sizes(root, pre, batch_size, [sizes[p.a] for p in train])
    train, val, val_source = _validation_split(train, val, val_size)
    return PairedData(root, layout, train, val, val_source, sizes)


def _check_preprocess_options(pre: Preprocess, size_multiple: int) -> None:
    if pre.crops and pre.mode != "crop" and pre.crop_size > pre.load_size:
        raise DatasetError(
            f"--crop-size {pre.crop_size} is larger than --load-size {pre.load_size} "
            f"(with --preprocess {pre.mode} images are resized to the load size, then cropped)"
        )
    if pre.crops and pre.crop_size % size_multiple:
        raise DatasetError(
            f"--crop-size {pre.crop_size} does not suit the generator, which needs sides that are "
            f"multiples of {size_multiple} (choose another --crop-size or --netg)"
        )


def _check_batch_sizes(root: Path, pre: Preprocess, batch_size: int, sizes: Iterable[tuple[int, int]]) -> None:
    """Batches of more than one image need every image to become the same size."""
    if batch_size > 1 and not pre.crops:
        shapes = {pre.output_size(*size) for size in sizes}
        if len(shapes) > 1:
            raise DatasetError(
                f"dataset {root}: with --batch-size {batch_size} every image must become the same "
                f"size, but --preprocess {pre.mode} gives {len(shapes)} sizes "
                f"(e.g. {', '.join('x'.join(map(str, s)) for s in sorted(shapes)[:3])}); "
                "use --batch-size 1 or a cropping --preprocess"
            )


def _validation_split(train: list, val: list, val_size: int) -> tuple[list, list, str]:
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


def _scan_split(folder: Path) -> tuple[str, list[Pair]]:
    """The layout of one split folder and its pairs; raises a DatasetError for an empty folder,
    an unknown layout, or A/B files without a partner."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    subdirs = {p.name: p for p in entries if p.is_dir()}
    direct_images = [p for p in entries if p.is_file() and is_image_file(p)]
    has_a, has_b = "A" in subdirs, "B" in subdirs
    if has_a or has_b:
        if direct_images:
            raise DatasetError(
                f"{folder}: holds both images and {'A/' if has_a else 'B/'}; unknown layout: "
                f"{_EXPECTED_LAYOUT}"
            )
        if not (has_a and has_b):
            present, missing = ("A", "B") if has_a else ("B", "A")
            raise DatasetError(f"{folder}: has {present}/ but no {missing}/; {_EXPECTED_LAYOUT}")
        return "two-folder", _pair_by_name(subdirs["A"], subdirs["B"])
    images = list_images(folder, recursive=True)  # the reference walks subfolders too
    if not images:
        found = _describe_folder(folder)
        hint = ""
        if any(name in subdirs for name in ("trainA", "trainB", "testA")):
            hint = " (trainA/trainB is the unpaired layout of `img2img train cyclegan`)"
        raise DatasetError(f"{folder}: no images (found {found}){hint}; {_EXPECTED_LAYOUT}")
    return "aligned", [Pair(path) for path in images]


def _pair_by_name(dir_a: Path, dir_b: Path) -> list[Pair]:
    """Pair DIR/A/x.* with DIR/B/x.* by file name (the extension may differ)."""
    files_a, files_b = list_images(dir_a), list_images(dir_b)
    if not files_a or not files_b:
        empty = dir_a if not files_a else dir_b
        raise DatasetError(f"{empty}: no images (found {_describe_folder(empty)})")
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
    shown = ", ".join(files[s].name for s in stems[:_MAX_LISTED])
    return shown + (f" and {len(stems) - _MAX_LISTED} more" if len(stems) > _MAX_LISTED else "")


def _check_pair(
    pair: Pair,
    pre: Preprocess,
    size_multiple: int,
    problems: _Problems,
    sizes: dict[Path, tuple[int, int]],
) -> None:
    paths = [pair.a] if pair.b is None else [pair.a, pair.b]
    read: list[tuple[int, int]] = []
    for path in paths:
        try:
            read.append(read_size(path))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            problems.add("unreadable images", f"{problems.rel(path)} ({_first_line(exc)})")
    if len(read) != len(paths):
        return
    if pair.b is None:
        width, height = read[0]
        if width % 2:
            problems.add(
                "A|B images of odd width (cannot split into two halves)",
                f"{problems.rel(pair.a)} ({width}x{height})",
            )
            return
        size = (width // 2, height)
    else:
        if read[0] != read[1]:
            problems.add(
                "A and B of different sizes",
                f"{problems.rel(pair.a)} {read[0][0]}x{read[0][1]} vs "
                f"{problems.rel(pair.b)} {read[1][0]}x{read[1][1]}",
            )
            return
        size = read[0]
    sizes[pair.a] = size
    _check_image_size(pair.a, size, pre, size_multiple, problems)


def _check_image_size(
    path: Path, size: tuple[int, int], pre: Preprocess, size_multiple: int, problems: _Problems
) -> None:
    """An image of ``size`` must survive the preprocessing and suit the generator."""
    resized = pre.resized_size(*size)
    if pre.crops and (resized[0] < pre.crop_size or resized[1] < pre.crop_size):
        problems.add(
            f"images smaller than --crop-size {pre.crop_size}",
            f"{problems.rel(path)} ({'x'.join(map(str, resized))})",
        )
        return
    out_w, out_h = pre.output_size(*size)
    if out_w % size_multiple or out_h % size_multiple:
        problems.add(
            f"sizes the generator cannot take (sides must be multiples of {size_multiple} after "
            f"--preprocess {pre.mode}; use a cropping --preprocess or another --netg)",
            f"{problems.rel(path)} ({out_w}x{out_h})",
        )


def _describe_folder(folder: Path) -> str:
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        return f"an unreadable folder ({_first_line(exc)})"
    if not entries:
        return "nothing"
    shown = [p.name + ("/" if p.is_dir() else "") for p in entries[:_MAX_LISTED]]
    more = f" and {len(entries) - _MAX_LISTED} more" if len(entries) > _MAX_LISTED else ""
    return ", ".join(shown) + more


class PairedDataset(Dataset):
    """Pairs as ``{"input": tensor, "target": tensor, "name": str}`` in [-1, 1], direction applied.

    Index with an int, or with ``(index, seed)`` from :class:`EpochSampler`: the seed drives the
    random crop and flip, so the same (epoch, position) always gives the same tensors."""

    def __init__(
        self,
        pairs: Sequence[Pair],
        pre: Preprocess,
        *,
        direction: str = "AtoB",
        input_nc: int = 3,
        output_nc: int = 3,
        train: bool = True,
    ):
        if direction not in ("AtoB", "BtoA"):
            raise UsageError(f"unknown direction {direction!r}; valid: AtoB, BtoA")
        self.pairs = list(pairs)
        self.pre = pre
        self.reverse = direction == "BtoA"
        # channels of the files' A and B sides
        self.nc_a, self.nc_b = (output_nc, input_nc) if self.reverse else (input_nc, output_nc)
        self.transform = build_transform(pre, train=train)

    def __len__(self) -> int:
        return len(self.pairs)

    def load_pair(self, pair: Pair) -> tuple[Image.Image, Image.Image]:
        if pair.b is None:
            both = load_image(pair.a, 3)
            width, height = both.size
            if width % 2:
                raise DatasetError(f"{pair.a}: A|B image of odd width {width}")
            half = width // 2
            a, b = both.crop((0, 0, half, height)), both.crop((half, 0, width, height))
            return _channels(a, self.nc_a), _channels(b, self.nc_b)
        a, b = load_image(pair.a, self.nc_a), load_image(pair.b, self.nc_b)
        if a.size != b.size:
            raise DatasetError(f"{pair.a} and {pair.b}: A and B of different sizes")
        return a, b

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, key)
        pair = self.pairs[index]
        a, b = self.load_pair(pair)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            a, b = self.transform(a, b)
        a, b = to_tensor(a), to_tensor(b)
        source, target = (b, a) if self.reverse else (a, b)
        return {"input": source, "target": target, "name": pair.name}


def _channels(image: Image.Image, channels: int) -> Image.Image:
    return image.convert("L" if channels == 1 else "RGB")


class EpochSampler(Sampler):
    """Yields ``(index, seed)``: a seeded shuffle per epoch and a seed per position for the data
    augmentation. ``set_epoch(epoch, start)`` skips the first ``start`` samples, which is how a run
    resumes mid-epoch with exactly the batches it would have seen. With ``world_size`` > 1 each
    rank takes every world_size-th sample (the order padded by repetition to divide evenly)."""

    def __init__(
        self, size: int, *, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ):
        if size < 1:
            raise ValueError("an EpochSampler needs at least one sample")
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    @property
    def per_rank(self) -> int:
        return math.ceil(self.size / self.world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def positions(self) -> list[tuple[int, int]]:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        if self.shuffle:
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        seeds = torch.randint(0, 2**62, (self.size,), generator=generator).tolist()
        total = self.per_rank * self.world_size
        items = [(order[i % self.size], seeds[i % self.size]) for i in range(total)]
        return items[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.positions()[self.start :])

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)


# --- unpaired data (CycleGAN) ------------------------------------------------------------------

_EXPECTED_UNPAIRED = (
    "expected DIR/trainA/ and DIR/trainB/ (each domain's images, any number, unpaired; "
    "DIR/testA/ + DIR/testB/ optional)"
)
_GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


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

    def describe(self) -> str:
        if self.val_source == "val":
            val = f"{len(self.val_a)} + {len(self.val_b)} from testA/ + testB/"
        elif self.val_source == "none":
            val = "none"
        else:
            val = f"{len(self.val_a)} + {len(self.val_b)} " + (
                "held out from trainA/ + trainB/" if self.val_source == "held-out"
                else "training images (too few to hold any out)"
            )
        return (
            f"{self.root}: {len(self.train_a)} trainA/ and {len(self.train_b)} trainB/ images "
            f"(unpaired); validation: {val}"
        )


def check_unpaired_data(
    root: str | os.PathLike[str],
    pre: Preprocess,
    *,
    size_multiple: int = 1,
    batch_size: int = 1,
    val_size: int = 50,
) -> UnpairedData:
    """Check an unpaired dataset (the reference's unaligned layout: DIR/trainA, DIR/trainB and
    optionally DIR/testA, DIR/testB) before training, as :func:`check_paired_data` does a paired
    one. Without testA/ and testB/ a fixed slice of each training domain is held out for
    validation. Warns (in ``warnings``) when the domains differ a lot in channels or size."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; {_EXPECTED_UNPAIRED}")
    _check_preprocess_options(pre, size_multiple)
    missing = [name for name in ("trainA", "trainB") if not (root / name).is_dir()]
    if missing:
        hint = ""
        if (root / "train").is_dir():
            hint = " (train/ is the paired layout of `img2img train pix2pix`)"
        raise DatasetError(
            f"{root}: no {' or '.join(m + '/' for m in missing)} folder; found "
            f"{_describe_folder(root)}{hint}; {_EXPECTED_UNPAIRED}"
        )
    train_a, train_b = (_domain_images(root / name) for name in ("trainA", "trainB"))
    test_a, test_b = (list_images(root / n, recursive=True) if (root / n).is_dir() else [] for n in ("testA", "testB"))
    val_a, val_b = (test_a, test_b) if test_a and test_b else ([], [])

    problems = _Problems(root)
    headers: dict[Path, tuple[tuple[int, int], str]] = {}
    for path in train_a + train_b + val_a + val_b:
        try:
            headers[path] = read_header(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            problems.add("unreadable images", f"{problems.rel(path)} ({_first_line(exc)})")
            continue
        _check_image_size(path, headers[path][0], pre, size_multiple, problems)
    problems.raise_if_any()
    _check_batch_sizes(root, pre, batch_size, [headers[p][0] for p in train_a + train_b])

    train_a, val_a, source_a = _validation_split(train_a, val_a, val_size)
    train_b, val_b, source_b = _validation_split(train_b, val_b, val_size)
    val_source = source_a if source_a == source_b else "train"  # one domain too small to hold out
    warnings = _domain_differences(
        [headers[p] for p in train_a], [headers[p] for p in train_b]
    )
    return UnpairedData(root, train_a, train_b, val_a, val_b, val_source, warnings)


def _domain_images(folder: Path) -> list[Path]:
    images = list_images(folder, recursive=True)  # the reference walks subfolders too
    if not images:
        raise DatasetError(f"{folder}: no images (found {_describe_folder(folder)}); {_EXPECTED_UNPAIRED}")
    return images


def _domain_differences(
    headers_a: list[tuple[tuple[int, int], str]], headers_b: list[tuple[tuple[int, int], str]]
) -> list[str]:
    """Warnings for domains that differ a lot: mostly grayscale vs mostly colour, or typical
    sizes 2x or more apart."""
    warnings = []
    gray_a = sum(mode in _GRAYSCALE_MODES for _, mode in headers_a) / len(headers_a)
    gray_b = sum(mode in _GRAYSCALE_MODES for _, mode in headers_b) / len(headers_b)
    if (gray_a > 0.5) != (gray_b > 0.5):
        gray, colour = ("trainA", "trainB") if gray_a > 0.5 else ("trainB", "trainA")
        warnings.append(
            f"{gray}/ holds grayscale images and {colour}/ colour ones; each side is read with "
            "the channels of --input-nc/--output-nc (1 for a grayscale domain, 3 for colour)"
        )
    median_a = [sorted(size[i] for size, _ in headers_a)[len(headers_a) // 2] for i in (0, 1)]
    median_b = [sorted(size[i] for size, _ in headers_b)[len(headers_b) // 2] for i in (0, 1)]
    if any(max(a, b) >= 2 * min(a, b) for a, b in zip(median_a, median_b)):
        warnings.append(
            f"trainA/ images are typically {median_a[0]}x{median_a[1]} and trainB/ ones "
            f"{median_b[0]}x{median_b[1]}; after preprocessing the networks see the two domains "
            "at very different scales (resize one domain to match the other)"
        )
    return warnings


class UnpairedDataset(Dataset):
    """Unpaired images as ``{"A": tensor, "B": tensor, "A_path": str, "B_path": str}`` in [-1, 1].

    As the reference's unaligned dataset: its length is the larger domain's; item ``index`` is
    A image ``index % len(A)`` and a B image drawn at random (``serial``: ``index % len(B)``,
    as for validation); A and B get independent crops and flips. Index with an int, or with
    ``(index, seed)`` from :class:`EpochSampler`: the seed drives the B draw and the transforms."""

    def __init__(
        self,
        files_a: Sequence[Path],
        files_b: Sequence[Path],
        pre: Preprocess,
        *,
        nc_a: int = 3,
        nc_b: int = 3,
        train: bool = True,
        serial: bool = False,
    ):
        if not files_a or not files_b:
            raise ValueError("an UnpairedDataset needs images in both domains")
        self.files_a, self.files_b = list(files_a), list(files_b)
        self.nc_a, self.nc_b = nc_a, nc_b
        self.serial = serial or not train
        self.transform = build_transform(pre, train=train)

    def __len__(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, key)
        path_a = self.files_a[index % len(self.files_a)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            index_b = index if self.serial else int(torch.randint(len(self.files_b), ()))
            path_b = self.files_b[index_b % len(self.files_b)]
            a = self.transform(load_image(path_a, self.nc_a))
            b = self.transform(load_image(path_b, self.nc_b))
        return {"A": to_tensor(a), "B": to_tensor(b), "A_path": str(path_a), "B_path": str(path_b)}


# --- data combine -----------------------------------------------------------------------------


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
        try:
            with atomic_path(target, replace=overwrite) as tmp:
                both.save(tmp, format=image_format, **options)
        except FileExistsError:  # written by another process since the check above
            raise DatasetError(f"{target}: appeared while combining (another process?); not replaced") from None
        written.append(target)
    return written


# --- a synthetic paired task -------------------------------------------------------------------

_SHAPE_COLOURS = {"ellipse": (220, 40, 40), "rectangle": (40, 90, 220), "triangle": (30, 170, 60)}


def shapes_pair(rng: random.Random, size: int = 64, max_shapes: int = 3) -> tuple[Image.Image, Image.Image]:
    """One example of a small learnable task: A has black outlines of ellipses, rectangles and
    triangles on white; B has the same shapes filled, red, blue and green by kind."""
    from PIL import ImageDraw

    a = Image.new("RGB", (size, size), "white")
    b = Image.new("RGB", (size, size), "white")
    draw_a, draw_b = ImageDraw.Draw(a), ImageDraw.Draw(b)
    for _ in range(rng.randint(1, max_shapes)):
        kind = rng.choice(sorted(_SHAPE_COLOURS))
        w, h = rng.randint(size // 5, size // 2), rng.randint(size // 5, size // 2)
        x, y = rng.randint(1, size - w - 2), rng.randint(1, size - h - 2)
        box = [x, y, x + w, y + h]
        outline = {"outline": "black", "width": max(1, size // 32)}
        if kind == "ellipse":
            draw_b.ellipse(box, fill=_SHAPE_COLOURS[kind])
            draw_a.ellipse(box, **outline)
        elif kind == "rectangle":
            draw_b.rectangle(box, fill=_SHAPE_COLOURS[kind])
            draw_a.rectangle(box, **outline)
        else:
            points = [(x, y + h), (x + w, y + h), (x + w // 2, y)]
            draw_b.polygon(points, fill=_SHAPE_COLOURS[kind])
            draw_a.polygon(points, **outline)
    return a, b


def write_shapes_dataset(
    root: str | os.PathLike[str],
    *,
    n_train: int = 64,
    n_val: int = 8,
    size: int = 64,
    layout: str = "aligned",
    seed: int = 0,
) -> Path:
    """Write the outlines -> filled shapes task (see :func:`shapes_pair`) in the aligned
    (``DIR/train/N.png``, A|B) or two-folder (``DIR/train/A/N.png`` + ``B/N.png``) layout; for
    tests, benchmarks and trying the trainer out."""
    root = Path(root)
    rng = random.Random(seed)
    for split, count in (("train", n_train), ("val", n_val)):
        for index in range(count):
            a, b = shapes_pair(rng, size)
            name = f"{index:04d}.png"
            if layout == "aligned":
                both = Image.new("RGB", (size * 2, size))
                both.paste(a, (0, 0))
                both.paste(b, (size, 0))
                (root / split).mkdir(parents=True, exist_ok=True)
                both.save(root / split / name)
            elif layout == "two-folder":
                for side, image in (("A", a), ("B", b)):
                    (root / split / side).mkdir(parents=True, exist_ok=True)
                    image.save(root / split / side / name)
            else:
                raise UsageError(f"unknown layout {layout!r}; valid: aligned, two-folder")
    return root



# --- a synthetic unpaired task ----------------------------------------------------------------

# The same kind of scene (shapes with outlines on a background) in two colour schemes: the
# true A -> B mapping is a per-pixel recolouring, and the colours' areas tell which is which.
PALETTES = {
    "A": {"background": (235, 225, 205), "fill": (200, 40, 40), "outline": (30, 30, 30)},
    "B": {"background": (20, 30, 70), "fill": (250, 210, 60), "outline": (240, 240, 240)},
}


def palette_scenes(rng: random.Random, size: int = 64, max_shapes: int = 3) -> dict[str, Image.Image]:
    """One random scene drawn in each of :data:`PALETTES`: ellipses, rectangles and triangles,
    filled and outlined, on a plain background."""
    from PIL import ImageDraw

    shapes = []
    for _ in range(rng.randint(1, max_shapes)):
        kind = rng.choice(sorted(_SHAPE_COLOURS))
        w, h = rng.randint(size // 5, size // 2), rng.randint(size // 5, size // 2)
        x, y = rng.randint(1, size - w - 2), rng.randint(1, size - h - 2)
        shapes.append((kind, x, y, w, h))
    scenes = {}
    for name, palette in PALETTES.items():
        image = Image.new("RGB", (size, size), palette["background"])
        draw = ImageDraw.Draw(image)
        style = {"fill": palette["fill"], "outline": palette["outline"], "width": max(1, size // 32)}
        for kind, x, y, w, h in shapes:
            if kind == "ellipse":
                draw.ellipse([x, y, x + w, y + h], **style)
            elif kind == "rectangle":
                draw.rectangle([x, y, x + w, y + h], **style)
            else:
                draw.polygon([(x, y + h), (x + w, y + h), (x + w // 2, y)], **style)
        scenes[name] = image
    return scenes


def write_palette_dataset(
    root: str | os.PathLike[str],
    *,
    n_a: int = 64,
    n_b: int = 48,
    n_test: int = 8,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write an unpaired task in the reference's layout (see :func:`palette_scenes`): trainA/
    and trainB/ hold different scenes (``n_a`` and ``n_b`` of them) in palettes A and B; testA/N
    and testB/N hold the same scene in each palette, so testB/N is the true translation of
    testA/N. For tests, benchmarks and trying the CycleGAN trainer out."""
    root = Path(root)
    rng = random.Random(seed)
    for folder in ("trainA", "trainB", "testA", "testB"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(n_a):
        palette_scenes(rng, size)["A"].save(root / "trainA" / f"{index:04d}.png")
    for index in range(n_b):
        palette_scenes(rng, size)["B"].save(root / "trainB" / f"{index:04d}.png")
    for index in range(n_test):
        scenes = palette_scenes(rng, size)
        for name, image in scenes.items():
            image.save(root / f"test{name}" / f"{index:04d}.png")
    return root

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "IMG_EXTENSIONS",
    "EpochSampler",
    "MakePowerOf2",
    "Pair",
    "PairedData",
    "PALETTES",
    "PairedDataset",
    "Preprocess",
    "ScaleWidth",
    "build_transform",
    "check_paired_data",
    "check_unpaired_data",
    "combine_folders",
    "is_image_file",
    "list_images",
    "load_image",
    "palette_scenes",
    "read_header",
    "read_size",
    "shapes_pair",
    "to_tensor",
    "UnpairedData",
    "UnpairedDataset",
    "write_palette_dataset",
    "write_shapes_dataset",
]
