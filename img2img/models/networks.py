"""Generators and discriminators whose state-dict keys match pytorch-CycleGAN-and-pix2pix.

Layer order (and so every key such as ``model.10.conv_block.5.weight``) follows the reference
implementation, so its ``latest_net_G.pth`` loads with ``strict=True``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from img2img.errors import UsageError
from img2img.models.config import DiscriminatorConfig, GeneratorConfig

NormFactory = Callable[[int], nn.Module]


def norm_factory(norm: str) -> NormFactory:
    if norm == "batch":
        return lambda channels: nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if norm == "instance":
        return lambda channels: nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "none":
        return lambda channels: nn.Identity()
    raise UsageError(f"unknown norm {norm!r}; valid: batch, instance, none")


def conv_bias(norm: str) -> bool:
    # Batch norm has its own shift, so the conv before it has no bias. The reference also leaves
    # the bias out with norm "none"; we do the same so that its checkpoints keep their keys.
    return norm == "instance"


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, padding_type: str, norm: str, use_dropout: bool):
        super().__init__()
        make_norm, bias = norm_factory(norm), conv_bias(norm)

        def padded_conv() -> list[nn.Module]:
            if padding_type == "reflect":
                return [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias)]
            if padding_type == "replicate":
                return [nn.ReplicationPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias)]
            return [nn.Conv2d(dim, dim, 3, padding=1, bias=bias)]

        layers = [*padded_conv(), make_norm(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [*padded_conv(), make_norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Johnson et al.'s style-transfer network: 2 stride-2 downs, residual blocks, 2 ups."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        make_norm, bias, ngf = norm_factory(cfg.norm), conv_bias(cfg.norm), cfg.ngf
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(cfg.input_nc, ngf, 7, bias=bias),
            make_norm(ngf),
            nn.ReLU(True),
        ]
        channels = ngf
        for _ in range(2):
            layers += [
                nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1, bias=bias),
                make_norm(channels * 2),
                nn.ReLU(True),
            ]
            channels *= 2
        layers += [ResnetBlock(channels, cfg.padding_type, cfg.norm, cfg.use_dropout) for _ in range(cfg.n_blocks)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                make_norm(channels // 2),
                nn.ReLU(True),
            ]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, cfg.output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetSkipBlock(nn.Module):
    """One U-Net level: down, the inner levels, up; its input is concatenated to its output."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        norm: str,
        *,
        input_nc: int | None = None,
        inner: nn.Module | None = None,
        outermost: bool = False,
        use_dropout: bool = False,
    ):
        super().__init__()
        self.outermost = outermost
        make_norm, bias = norm_factory(norm), conv_bias(norm)
        down_conv = nn.Conv2d(input_nc or outer_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        if outermost:
            assert inner is not None
            up_conv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            layers = [down_conv, inner, nn.ReLU(True), up_conv, nn.Tanh()]
        elif inner is None:  # innermost: no norm at the 1x1 bottleneck on the way down
            up_conv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True), up_conv, make_norm(outer_nc)]
        else:
            up_conv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [
                nn.LeakyReLU(0.2, True),
                down_conv,
                make_norm(inner_nc),
                inner,
                nn.ReLU(True),
                up_conv,
                make_norm(outer_nc),
            ]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` halvings (unet_256: 8, so 256x256 reaches 1x1 at the bottom)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        ngf, norm = cfg.ngf, cfg.norm
        block = UnetSkipBlock(ngf * 8, ngf * 8, norm)
        for _ in range(cfg.num_downs - 5):
            block = UnetSkipBlock(ngf * 8, ngf * 8, norm, inner=block, use_dropout=cfg.use_dropout)
        block = UnetSkipBlock(ngf * 4, ngf * 8, norm, inner=block)
        block = UnetSkipBlock(ngf * 2, ngf * 4, norm, inner=block)
        block = UnetSkipBlock(ngf, ngf * 2, norm, inner=block)
        self.model = UnetSkipBlock(cfg.output_nc, ngf, norm, input_nc=cfg.input_nc, inner=block, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: classifies overlapping patches (70x70 with 3 layers) as real or fake."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        make_norm, bias, ndf = norm_factory(cfg.norm), conv_bias(cfg.norm), cfg.ndf
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.input_nc, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        n_layers = cfg.effective_n_layers
        for n in range(1, n_layers + 1):
            prev_mult, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev_mult, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                make_norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """PixelGAN: a 1x1 PatchGAN that judges every pixel on its own."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        make_norm, bias, ndf = norm_factory(cfg.norm), conv_bias(cfg.norm), cfg.ndf
        self.net = nn.Sequential(
            nn.Conv2d(cfg.input_nc, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            make_norm(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


GENERATORS: dict[str, type[nn.Module]] = {"resnet": ResnetGenerator, "unet": UnetGenerator}
DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "basic": NLayerDiscriminator,
    "n_layers": NLayerDiscriminator,
    "pixel": PixelDiscriminator,
}


def build_generator(cfg: GeneratorConfig) -> nn.Module:
    try:
        cls = GENERATORS[cfg.arch]
    except KeyError:
        raise UsageError(f"unknown generator {cfg.arch!r}; valid: {', '.join(GENERATORS)}") from None
    return cls(cfg)


def build_discriminator(cfg: DiscriminatorConfig) -> nn.Module:
    try:
        cls = DISCRIMINATORS[cfg.arch]
    except KeyError:
        raise UsageError(f"unknown discriminator {cfg.arch!r}; valid: {', '.join(DISCRIMINATORS)}") from None
    return cls(cfg)


INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights as the reference does; batch norm gets N(1, gain), bias 0."""
    if init_type not in INIT_TYPES:
        raise UsageError(f"unknown init type {init_type!r}; valid: {', '.join(INIT_TYPES)}")

    def init_module(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                nn.init.normal_(module.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(module.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(module.weight, gain=gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)

    net.apply(init_module)
    return net


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


class PerImageBatchNorm(nn.Module):
    """Batch norm that normalises each image with its own statistics, then applies the learnt
    scale and shift: what a network trained at batch size 1 saw, independent of batching."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def use_per_image_batch_norm(net: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d for a PerImageBatchNorm sharing its parameters (in place)."""
    for name, child in net.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(net, name, PerImageBatchNorm(child))
        else:
            use_per_image_batch_norm(child)
    return net
