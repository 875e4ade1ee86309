"""The networks' size constraints, checked before anything is written.

Rather than a table of rules per architecture (which would miss some: the discriminator's
depth against the crop, batch norm over a single value, instance norm or reflection padding
on a 1x1 map, a U-Net's bottleneck), every network runs once, in training mode, on an input
of the smallest size and the batch size training will give it, on PyTorch's ``meta`` device:
shapes are computed and checked by the same layers that will train, with no memory and no
arithmetic. A failure becomes a usage error naming the option to change and the smallest size
that works.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from torch.func import functional_call

from img2img.errors import UsageError
from img2img.train.config import TrainConfig

_LARGEST_TRIED = 4096  # the search for the smallest size that works stops here


def input_channels(net: nn.Module) -> int:
    """Channels of ``net``'s input: those of its first convolution."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError(f"{type(net).__name__}: no convolution to take the input channels from")


def shape_error(net: nn.Module, batch: int, height: int, width: int) -> str | None:
    """What goes wrong when ``net`` (in training mode) takes a (batch, C, height, width) input,
    or None when it works; computed on the meta device (``net`` itself is not touched)."""
    tensors = {name: torch.empty_like(t, device="meta") for name, t in (*net.named_parameters(), *net.named_buffers())}
    x = torch.empty(batch, input_channels(net), height, width, device="meta")
    was_training = net.training
    net.train()
    try:
        functional_call(net, tensors, (x,))
    except (RuntimeError, ValueError, IndexError) as exc:
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    finally:
        net.train(was_training)
    return None


def smallest_working_side(net: nn.Module, batch: int, step: int) -> int | None:
    """The smallest square side (a multiple of ``step``) that ``net`` takes, if any up to 4096."""
    side = step
    while side <= _LARGEST_TRIED:
        if shape_error(net, batch, side, side) is None:
            return side
        side += step
    return None


def check_network_sizes(
    networks: Mapping[str, nn.Module],
    config: TrainConfig,
    size: tuple[int, int],
    *,
    size_note: str,
    step: int = 1,
) -> None:
    """Raise a UsageError if a network cannot take a batch of ``config.batch_size`` inputs of
    ``size`` (width, height): the smallest the data gives it (``size_note`` says where that
    size comes from, e.g. ``--crop-size 16``). Generators are named by the key starting with G,
    discriminators by D; ``step`` is the generator's size multiple."""
    width, height = size
    for name, net in networks.items():
        problem = shape_error(net, config.batch_size, height, width)
        if problem is None:
            continue
        smallest = smallest_working_side(net, config.batch_size, step)
        need = f"it needs sides of at least {smallest}" if smallest else "no size up to 4096 works"
        if name.startswith("D"):
            layers = 3 if config.netd == "basic" else config.n_layers_d
            options = f"--netd {config.netd}" + (
                f" --n-layers-d {config.n_layers_d}" if config.netd == "n_layers" else f" ({layers} layers)"
            )
            change = "a larger --crop-size, fewer layers (--netd n_layers --n-layers-d N) or --netd pixel"
        else:
            options = f"--netg {config.netg}"
            change = "a larger --crop-size or another --netg"
        if config.batch_size == 1 and shape_error(net, 2, height, width) is None:
            change += ", or --batch-size 2 or more (batch norm needs more than one value)"
        raise UsageError(
            f"{options} ({name}) cannot train on {width}x{height} inputs ({size_note}): {problem}; {need}; use {change}"
        )


__all__ = ["check_network_sizes", "input_channels", "shape_error", "smallest_working_side"]
