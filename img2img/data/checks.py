"""The up-front dataset check: every image's header, its size against the preprocessing and
the generator, batch sizes, and differences between unpaired domains. Reads headers only, so
it is fast; raises one DatasetError naming the files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from img2img.data.images import list_images, load_image, read_header, read_size, unreadable_reason
from img2img.data.layouts import (
    EXPECTED_LAYOUT,
    EXPECTED_UNPAIRED,
    MAX_LISTED,
    Pair,
    PairedData,
    UnpairedData,
    describe_folder,
    domain_images,
    scan_split,
    validation_split,
)
from img2img.data.transforms import Preprocess
from img2img.errors import DatasetError, ImageError
from img2img.files.imageio import natural_channels


def _decode_all(paths: list[Path], problems: _Problems) -> None:
    """Decode every image (``--check-data full``): files whose header reads but whose data does
    not (truncated, corrupt) are found before training instead of during it."""
    for path in dict.fromkeys(paths):
        try:
            load_image(path, 3)
        except DatasetError as exc:
            problems.add(
                "images that cannot be decoded", f"{problems.rel(path)} ({str(exc).removeprefix(f'{path}: ')})"
            )
    problems.raise_if_any()


def check_dataset(root: str | os.PathLike[str], *, full: bool = True) -> PairedData | UnpairedData:
    """``img2img data check DIR``: the layout (paired: train/; unpaired: trainA/ + trainB/) and
    every image (decoded when ``full``), whatever the training options; raises a DatasetError
    naming the files."""
    root = Path(root)
    plain = Preprocess(mode="none", flip=False)  # no size constraint: those depend on the options
    if (root / "trainA").is_dir() or (root / "trainB").is_dir():
        return check_unpaired_data(root, plain, full=full)
    return check_paired_data(root, plain, full=full)


def smallest_input(pre: Preprocess, sizes: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], str]:
    """The smallest (width, height) the networks are given for images of ``sizes`` (as read,
    width x height), and a note saying where it comes from (for messages)."""
    if pre.crops:
        return (pre.crop_size, pre.crop_size), f"--crop-size {pre.crop_size}"
    outputs = [pre.output_size(*size) for size in sizes]
    if not outputs:
        return (pre.crop_size, pre.crop_size), f"--crop-size {pre.crop_size}"
    width, height = min(w for w, _ in outputs), min(h for _, h in outputs)
    return (width, height), f"the smallest images after --preprocess {pre.mode}"


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
            shown = ", ".join(items[:MAX_LISTED])
            more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
            clauses.append(f"{kind}: {shown}{more}")
        raise DatasetError(f"dataset {self.root}: " + "; ".join(clauses))


def check_paired_data(
    root: str | os.PathLike[str],
    pre: Preprocess,
    *,
    size_multiple: int = 1,
    batch_size: int = 1,
    val_size: int = 50,
    full: bool = False,
) -> PairedData:
    """Check a paired dataset before training: layout, every image's header, sizes against the
    preprocessing and the network. Raises one DatasetError that names the files; reads headers
    only, so it is fast. ``full`` also decodes every image (finds truncated files, slow)."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; {EXPECTED_LAYOUT}")
    _check_preprocess_options(pre, size_multiple)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DatasetError(f"{root}: no train/ folder; found {describe_folder(root)}; {EXPECTED_LAYOUT}")
    layout, train = scan_split(train_dir)
    val: list[Pair] = []
    val_dir = root / "val"
    if val_dir.is_dir():
        val_layout, val = scan_split(val_dir)
        if val_layout != layout:
            raise DatasetError(f"{root}: train/ uses the {layout} layout but val/ the {val_layout} layout; use one")

    problems = _Problems(root)
    sizes: dict[Path, tuple[int, int]] = {}
    for pair in train + val:
        _check_pair(pair, pre, size_multiple, problems, sizes)
    problems.raise_if_any()
    if full:
        _decode_all([path for pair in train + val for path in (pair.a, pair.b) if path is not None], problems)
    _check_batch_sizes(root, pre, batch_size, [sizes[p.a] for p in train])
    train, val, val_source = validation_split(train, val, val_size)
    warnings = _aligned_shape_warnings(root, train + val, sizes) if layout == "aligned" else []
    return PairedData(root, layout, train, val, val_source, sizes, warnings)


# A|B images of two square halves are 2:1; a pair of photographs side by side is anywhere from
# about 1.3:1 (two portraits) to 3:1 (two landscape 3:2 photos). Outside this range the images
# are most likely not pairs at all (a folder of single photos given as the aligned layout).
_ALIGNED_RATIO = (1.25, 3.2)


def _aligned_shape_warnings(root: Path, pairs: list[Pair], sizes: dict[Path, tuple[int, int]]) -> list[str]:
    """A warning when most A|B images are far from 2:1, with what to do instead."""
    ratios = [(2 * width) / height for width, height in (sizes[p.a] for p in pairs if p.a in sizes) if height]
    odd = [r for r in ratios if not _ALIGNED_RATIO[0] <= r <= _ALIGNED_RATIO[1]]
    if not ratios or len(odd) * 2 < len(ratios):
        return []
    typical = sorted(odd)[len(odd) // 2]
    return [
        f"{len(odd)} of the {len(ratios)} images in {root}/train (and val) are {typical:.2g}:1, far from "
        "the 2:1 of an A|B pair side by side; are they pairs? Put A and B in train/A/ and train/B/ "
        "(paired by file name), or build A|B images with `img2img data combine A_DIR B_DIR OUT_DIR`"
    ]


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
        except ImageError as exc:
            problems.add("unreadable images", f"{problems.rel(path)} ({unreadable_reason(exc, path)})")
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
                f"{problems.rel(pair.a)} {read[0][0]}x{read[0][1]} vs {problems.rel(pair.b)} {read[1][0]}x{read[1][1]}",
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


def check_unpaired_data(
    root: str | os.PathLike[str],
    pre: Preprocess,
    *,
    size_multiple: int = 1,
    batch_size: int = 1,
    val_size: int = 50,
    full: bool = False,
) -> UnpairedData:
    """Check an unpaired dataset (the reference's unaligned layout: DIR/trainA, DIR/trainB and
    optionally DIR/testA, DIR/testB) before training, as :func:`check_paired_data` does a paired
    one. Without testA/ and testB/ a fixed slice of each training domain is held out for
    validation. Warns (in ``warnings``) when the domains differ a lot in channels or size."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; {EXPECTED_UNPAIRED}")
    _check_preprocess_options(pre, size_multiple)
    missing = [name for name in ("trainA", "trainB") if not (root / name).is_dir()]
    if missing:
        hint = ""
        if (root / "train").is_dir():
            hint = " (train/ is the paired layout of `img2img train pix2pix`)"
        raise DatasetError(
            f"{root}: no {' or '.join(m + '/' for m in missing)} folder; found "
            f"{describe_folder(root)}{hint}; {EXPECTED_UNPAIRED}"
        )
    train_a, train_b = (domain_images(root / name) for name in ("trainA", "trainB"))
    test_a, test_b = (list_images(root / n, recursive=True) if (root / n).is_dir() else [] for n in ("testA", "testB"))
    val_a, val_b = (test_a, test_b) if test_a and test_b else ([], [])

    problems = _Problems(root)
    headers: dict[Path, tuple[tuple[int, int], str]] = {}
    for path in train_a + train_b + val_a + val_b:
        try:
            headers[path] = read_header(path)
        except ImageError as exc:
            problems.add("unreadable images", f"{problems.rel(path)} ({unreadable_reason(exc, path)})")
            continue
        _check_image_size(path, headers[path][0], pre, size_multiple, problems)
    problems.raise_if_any()
    if full:
        _decode_all(train_a + train_b + val_a + val_b, problems)
    _check_batch_sizes(root, pre, batch_size, [headers[p][0] for p in train_a + train_b])

    train_a, val_a, source_a = validation_split(train_a, val_a, val_size)
    train_b, val_b, source_b = validation_split(train_b, val_b, val_size)
    val_source = source_a if source_a == source_b else "train"  # one domain too small to hold out
    warnings = _domain_differences([headers[p] for p in train_a], [headers[p] for p in train_b])
    sizes = {path: header[0] for path, header in headers.items()}
    return UnpairedData(root, train_a, train_b, val_a, val_b, val_source, warnings, sizes)


def _domain_differences(
    headers_a: list[tuple[tuple[int, int], str]], headers_b: list[tuple[tuple[int, int], str]]
) -> list[str]:
    """Warnings for domains that differ a lot: mostly grayscale vs mostly colour, or typical
    sizes 2x or more apart."""
    warnings = []
    gray_a = sum(natural_channels(mode) == 1 for _, mode in headers_a) / len(headers_a)
    gray_b = sum(natural_channels(mode) == 1 for _, mode in headers_b) / len(headers_b)
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
