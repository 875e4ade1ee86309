"""Configuration dataclasses. A network is built from its config, and weights files carry it."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal

from img2img.errors import UsageError

Norm = Literal["batch", "instance", "none"]
NORMS = ("batch", "instance", "none")
PADDING_TYPES = ("reflect", "replicate", "zero")


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
        if self.arch not in ("resnet", "unet"):
            raise UsageError(f"unknown generator arch {self.arch!r}; valid: resnet, unet")
        if self.norm not in NORMS:
            raise UsageError(f"unknown norm {self.norm!r}; valid: {', '.join(NORMS)}")
        if self.padding_type not in PADDING_TYPES:
            raise UsageError(
                f"unknown padding type {self.padding_type!r}; valid: {', '.join(PADDING_TYPES)}"
            )
        for name in ("input_nc", "output_nc", "ngf"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.arch == "unet" and self.num_downs < 5:
            raise UsageError(f"a U-Net needs num_downs >= 5, got {self.num_downs}")
        if self.arch == "resnet" and self.n_blocks < 0:
            raise UsageError(f"n_blocks must be >= 0, got {self.n_blocks}")

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (one halving per down-sampling)."""
        return 4 if self.arch == "resnet" else 2**self.num_downs

    @property
    def reference_name(self) -> str:
        """The reference implementation's --netG name, e.g. resnet_9blocks or unet_256."""
        if self.arch == "resnet":
            return f"resnet_{self.n_blocks}blocks"
        return f"unet_{2 ** self.num_downs}"

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


def parse_generator_name(net_g: str) -> dict[str, Any]:
    """'resnet_9blocks' -> {arch: resnet, n_blocks: 9}; 'unet_256' -> {arch: unet, num_downs: 8}."""
    if match := re.fullmatch(r"resnet_(\d+)blocks", net_g):
        return {"arch": "resnet", "n_blocks": int(match[1])}
    if match := re.fullmatch(r"unet_(\d+)", net_g):
        size = int(match[1])
        if size >= 32 and size & (size - 1) == 0:
            return {"arch": "unet", "num_downs": size.bit_length() - 1}
    raise UsageError(
        f"unknown generator {net_g!r}; valid: resnet_6blocks, resnet_9blocks, "
        "unet_128, unet_256 (or resnet_Nblocks, unet_2^N)"
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
