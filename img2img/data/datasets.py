"""The paired (pix2pix) and unpaired (CycleGAN) datasets: decoded, preprocessed tensors in
[-1, 1]."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from img2img.data.images import load_image
from img2img.data.layouts import Pair
from img2img.data.transforms import Preprocess, build_transform, to_tensor
from img2img.errors import DatasetError, UsageError


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
    from img2img.files.imageio import to_8bit  # the one decoder's conversions, as every reader's

    return to_8bit(image, channels)


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
