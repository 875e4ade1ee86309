"""The networks' configs: a network is built from its config, and weights files carry it."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from img2img.errors import UsageError

Norm = Literal["batch", "instance", "none"]
NORMS = ("batch", "instance", "none")
PADDING_TYPES = ("reflect", "replicate", "zero")


#: Accepted ranges of the generator options. Far beyond any published model (the reference
#: builds resnet_6/9blocks and unet_128/256 with ngf 64), they stop a hostile or mistyped value
#: from building a network for minutes (a million blocks) or recursing without end (a U-Net 1000
#: levels deep; 2**num_downs is also the size every input is padded to a multiple of).
GENERATOR_LIMITS = {
    "input_nc": (1, 64),
    "output_nc": (1, 64),
    "ngf": (1, 1024),
    "n_blocks": (0, 128),
    "num_downs": (5, 12),
}


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator; stored in the weights file's metadata."""

    arch: Literal["resnet", "unet"] = "resnet"
    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    norm: Norm = "instance"
    use_dropout: bool = False
    n_blocks: int = 9  # resnet only
    padding_type: str = "reflect"  # resnet only
    num_downs: int = 8  # unet only

    def __post_init__(self) -> None:
        # Strict types: a weights file's metadata is JSON, where "9" or true must not pass for
        # a number, nor "false" for a boolean.
        for name in ("input_nc", "output_nc", "ngf", "n_blocks", "num_downs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise UsageError(f"{name} must be an integer, got {value!r}")
        for name in ("arch", "norm", "padding_type"):
            if not isinstance(getattr(self, name), str):
                raise UsageError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not isinstance(self.use_dropout, bool):
            raise UsageError(f"use_dropout must be true or false, got {self.use_dropout!r}")
        if self.arch not in ("resnet", "unet"):
            raise UsageError(f"unknown generator arch {self.arch!r}; valid: resnet, unet")
        if self.norm not in NORMS:
            raise UsageError(f"unknown norm {self.norm!r}; valid: {', '.join(NORMS)}")
        if self.padding_type not in PADDING_TYPES:
            raise UsageError(f"unknown padding type {self.padding_type!r}; valid: {', '.join(PADDING_TYPES)}")
        for name, (low, high) in GENERATOR_LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise UsageError(f"{name} must be in [{low}, {high}], got {value}")

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (one halving per down-sampling)."""
        return 4 if self.arch == "resnet" else 2**self.num_downs

    @property
    def reference_name(self) -> str:
        """The reference implementation's --netG name, e.g. resnet_9blocks or unet_256."""
        if self.arch == "resnet":
            return f"resnet_{self.n_blocks}blocks"
        return f"unet_{2**self.num_downs}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        irrelevant = ("num_downs",) if self.arch == "resnet" else ("n_blocks", "padding_type")
        for key in irrelevant:
            data.pop(key)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown generator options: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_reference(cls, net_g: str, **options: Any) -> GeneratorConfig:
        """Map the reference's --netG name (resnet_9blocks, unet_256, unet_N) onto a config."""
        return cls(**parse_generator_name(net_g), **options)


def minimum_size(cfg: GeneratorConfig) -> int:
    """The smallest input side the network runs on. A ResNet's residual blocks reflect-pad by 1
    at a quarter of the resolution, which needs at least 2 pixels there; its first layer
    reflect-pads by 3. A U-Net needs one pixel at the bottom."""
    if cfg.arch == "resnet":
        return 8 if cfg.n_blocks > 0 and cfg.padding_type == "reflect" else 4
    return cfg.size_multiple


def smallest_side(cfg: GeneratorConfig) -> int:
    """The smallest side, in pixels, that the network takes as it is (no padding added): a
    multiple of its size multiple and at least ``minimum_size``. The one limit behind the
    smallest --tile, the --static sizes export accepts and the advice both give (8 for ResNets
    with reflection padding, 2^depth for U-Nets)."""
    multiple = cfg.size_multiple
    return multiple * math.ceil(minimum_size(cfg) / multiple)


def valid_side_near(value: int, cfg: GeneratorConfig) -> int:
    """The valid side (see ``smallest_side``) closest to ``value`` from below, or the smallest
    valid side when none is below: what --tile and --static advise instead of ``value``."""
    multiple = cfg.size_multiple
    return max(smallest_side(cfg), value - value % multiple)


def parse_generator_name(net_g: str) -> dict[str, Any]:
    """'resnet_9blocks' -> {arch: resnet, n_blocks: 9}; 'unet_256' -> {arch: unet, num_downs: 8}."""
    if match := re.fullmatch(r"resnet_(\d+)blocks", net_g):
        return {"arch": "resnet", "n_blocks": int(match[1])}
    if match := re.fullmatch(r"unet_(\d+)", net_g):
        size = int(match[1])
        if size >= 32 and size & (size - 1) == 0:
            return {"arch": "unet", "num_downs": size.bit_length() - 1}
    if match := re.fullmatch(r"unet_(\d+)", net_g):
        raise UsageError(
            f"unknown generator {net_g!r}: unet_N needs N a power of two, at least 32 (unet_32, unet_64, unet_128, "
            "unet_256, ...: N halvings' worth of down-sampling, so the inputs' sides must be "
            "multiples of N, and at least N)"
        )
    raise UsageError(
        f"unknown generator {net_g!r}; valid: resnet_6blocks, resnet_9blocks, "
        "unet_128, unet_256 (or resnet_Nblocks, unet_N for N a power of two, at least 32)"
    )


@dataclass(frozen=True)
class DiscriminatorConfig:
    """A PatchGAN (basic = 3 layers, 70x70 receptive field; n_layers) or a 1x1 PixelGAN."""

    arch: Literal["basic", "n_layers", "pixel"] = "basic"
    input_nc: int = 6
    ndf: int = 64
    n_layers: int = 3
    norm: Norm = "batch"

    def __post_init__(self) -> None:
        if self.arch not in ("basic", "n_layers", "pixel"):
            raise UsageError(f"unknown discriminator {self.arch!r}; valid: basic, n_layers, pixel")
        if self.norm not in NORMS:
            raise UsageError(f"unknown norm {self.norm!r}; valid: {', '.join(NORMS)}")
        if self.n_layers < 1:
            raise UsageError(f"n_layers must be at least 1, got {self.n_layers}")

    @property
    def effective_n_layers(self) -> int:
        return 3 if self.arch == "basic" else self.n_layers

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiscriminatorConfig:
        return cls(**data)


def option_flag(name: str) -> str:
    return name.replace("_", "-")


# --- a weights file's preprocess record ---------------------------------------------------

PREPROCESS_CHOICES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
#: The sizes a weights file's ``preprocess`` may record: far beyond any training crop, they stop
#: nonsense (a negative crop, a size no image has) from passing for the training's settings.
PREPROCESS_SIZE_LIMITS = (1, 1 << 16)


def preprocess_problem(preprocess: Any) -> str | None:
    """What is wrong with a weights file's (or a registry entry's) ``preprocess`` record, or None.

    The record is the training's ``{"preprocess": MODE, "load_size": N, "crop_size": N}`` (any of
    them may be left out; a converted reference checkpoint records only the sizes). Informational
    (outputs keep the input size), but checked like every field, so that a file whose record is
    nonsense is refused rather than shown: strict JSON types (no "128" for 128), MODE one of
    PREPROCESS_CHOICES, sizes in PREPROCESS_SIZE_LIMITS, no other keys. The problem names the
    field as ``preprocess.KEY``."""
    if preprocess is None:
        return None
    if not isinstance(preprocess, dict):
        return f"preprocess must be a JSON object, got {preprocess!r}"
    unknown = sorted(set(preprocess) - {"preprocess", "load_size", "crop_size"})
    if unknown:
        return f"preprocess has unknown keys {', '.join(map(repr, unknown))} (valid: preprocess, load_size, crop_size)"
    mode = preprocess.get("preprocess", PREPROCESS_CHOICES[0])
    if mode not in PREPROCESS_CHOICES:
        return f"preprocess.preprocess must be one of {', '.join(PREPROCESS_CHOICES)}, got {mode!r}"
    low, high = PREPROCESS_SIZE_LIMITS
    for name in ("load_size", "crop_size"):
        value = preprocess.get(name, low)
        if not isinstance(value, int) or isinstance(value, bool):
            return f"preprocess.{name} must be an integer, got {value!r}"
        if not low <= value <= high:
            return f"preprocess.{name} must be in [{low}, {high}], got {value}"
    return None
