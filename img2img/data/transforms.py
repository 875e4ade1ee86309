"""Preprocessing as the reference does it (``--preprocess``, ``--load-size``, ``--crop-size``,
flip), with torchvision's v2 transforms: call the transform with A and B together so that a
pair gets the same crop and flip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF


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
