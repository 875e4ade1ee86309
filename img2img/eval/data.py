"""What ``img2img eval`` measures: folders, pairs by relative name, and dataset layouts.

Dataset layouts (``--data DIR``), the same ones training reads:

- CycleGAN (unaligned): ``DIR/testA`` and ``DIR/testB`` (``--split train``: trainA/trainB).
  A model that maps AtoB translates testA and is compared with testB; BtoA the other way.
- pix2pix, two folders: ``DIR/SPLIT/A/x.png`` + ``DIR/SPLIT/B/x.png``, paired by name.
- pix2pix, aligned: ``DIR/SPLIT/x.jpg`` with A and B side by side (left half A).

For pix2pix the fakes are compared with the targets both unpaired (FID, KID, IS) and pair by
pair (PSNR, SSIM, LPIPS). The default split is ``val`` when it exists, else ``test``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from img2img.errors import DatasetError, UsageError
from img2img.eval.features import ImageItem, folder_items

_HALF = {"A": "left", "B": "right"}  # the reference's aligned layout: A|B


@dataclass
class Comparison:
    """One evaluation: the inputs to translate (or the fakes), the real set, and the pairs.

    ``inputs``: images to translate into the fakes (with a model), else None; ``fakes``: the
    fake images when they are files; ``reals``: the real set for FID/KID; ``targets``: the
    targets, by the name of the input/fake they belong to."""

    label: str
    inputs: list[ImageItem] | None = None
    fakes: list[ImageItem] | None = None
    reals: list[ImageItem] | None = None
    targets: dict[str, ImageItem] | None = None
    direction: str | None = None
    described: dict = field(default_factory=dict)
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (label, message)


def read_folder(path: Path, option: str) -> list[ImageItem]:
    if not path.exists():
        raise UsageError(f"{path}: no such folder ({option})")
    if not path.is_dir():
        raise UsageError(f"{path}: not a folder ({option})")
    items = folder_items(path)
    if not items:
        raise UsageError(f"{path}: no images in this folder ({option})")
    return items


def stem_of(name: str) -> str:
    """The pairing key: the relative name without its extension (out/x.png pairs truth/x.jpg)."""
    path = Path(name)
    return path.with_suffix("").as_posix()


def pair_by_name(
    fakes: list[ImageItem], targets: list[ImageItem], fake_option: str, target_option: str
) -> tuple[dict[str, ImageItem], list[tuple[str, str]]]:
    """Targets keyed by the fake's name they pair with, and one (label, message) for each image
    on either side without a partner. UsageError when nothing pairs at all."""
    by_stem: dict[str, ImageItem] = {}
    for item in targets:
        key = stem_of(item.name or item.label)
        if key in by_stem:
            raise UsageError(
                f"{item.label} and {by_stem[key].label} have the same name but for the extension; "
                f"pairs are matched by name ({target_option})"
            )
        by_stem[key] = item
    paired: dict[str, ImageItem] = {}
    unmatched: list[tuple[str, str]] = []
    seen: set[str] = set()
    for fake in fakes:
        key = stem_of(fake.name or fake.label)
        if key in by_stem:
            paired[fake.name or fake.label] = by_stem[key]
            seen.add(key)
        else:
            unmatched.append(
                (fake.label, f"{fake.label}: no image named {key}.* in {target_option}; left out of the paired scores")
            )
    for key, item in by_stem.items():
        if key not in seen:
            unmatched.append(
                (item.label, f"{item.label}: no image named {key}.* in {fake_option}; left out of the paired scores")
            )
    if not paired:
        raise UsageError(f"no image in {fake_option} has a partner of the same name in {target_option}")
    return paired, unmatched


# --- dataset layouts ------------------------------------------------------------------------


def dataset_comparisons(root: Path, split: str | None, directions: list[str], task: str | None) -> list[Comparison]:
    """The comparisons ``--data root`` holds, one per direction in ``directions``.

    DatasetError for a folder that has none of the layouts."""
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (--data)")
    out = []
    for direction in directions:
        src, dst = ("A", "B") if direction == "AtoB" else ("B", "A")
        unaligned_split = split or "test"
        a_dir, b_dir = root / f"{unaligned_split}{src}", root / f"{unaligned_split}{dst}"
        if a_dir.is_dir() and b_dir.is_dir():
            inputs, reals = read_folder(a_dir, "--data"), read_folder(b_dir, "--data")
            out.append(Comparison(
                label=f"{a_dir.name}/ -> vs {b_dir.name}/", inputs=inputs, reals=reals, direction=direction,
                described={"data": str(root), "layout": "unaligned", "input": str(a_dir), "real": str(b_dir)},
            ))  # fmt: skip
            continue
        split_dir = _paired_split(root, split)
        if (split_dir / "A").is_dir() and (split_dir / "B").is_dir():
            inputs = read_folder(split_dir / src, "--data")
            targets = read_folder(split_dir / dst, "--data")
            paired, unmatched = pair_by_name(inputs, targets, f"{split_dir / src}/", f"{split_dir / dst}/")
            out.append(Comparison(
                label=f"{split_dir.name}/{src} -> vs {split_dir.name}/{dst}", inputs=inputs, reals=targets,
                targets=paired, direction=direction, unmatched=unmatched,
                described={"data": str(root), "layout": "two-folder", "split": split_dir.name},
            ))  # fmt: skip
            continue
        items = read_folder(split_dir, "--data")
        inputs, targets = [], {}
        for item in items:
            name = item.name or item.label
            inputs.append(ImageItem(item.label, path=item.path, name=name, half=_HALF[src]))
            targets[name] = ImageItem(item.label, path=item.path, name=name, half=_HALF[dst])
        out.append(Comparison(
            label=f"{split_dir.name}/ ({src}|{dst} halves) -> vs {dst}", inputs=inputs,
            reals=list(targets.values()), targets=targets, direction=direction,
            described={"data": str(root), "layout": "aligned", "split": split_dir.name},
        ))  # fmt: skip
    return out


def _paired_split(root: Path, split: str | None) -> Path:
    candidates = [split] if split else ["val", "test"]
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    wanted = " or ".join(f"{root / c}/" for c in candidates)
    raise DatasetError(
        f"{root}: no {wanted}; expected testA/ + testB/ (CycleGAN) or SPLIT/ with A|B images or "
        "A/ + B/ folders (pix2pix)"
    )
