"""Divergence: a run whose losses, gradients or network state stop being finite numbers stops
at once and says where, instead of training on and exporting a generator of NaNs.

Checked at every iteration: each loss the step returns, each optimizer's gradients before its
update (unless a gradient scaler is in charge: fp16 autocast skips steps with inf gradients
and lowers its scale, which is normal), and the networks' buffers (batch-norm running
statistics). Before a checkpoint or weights file is written every parameter and buffer is
checked too, so a non-finite state is never saved over the last good one.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn


class NonFinite(Exception):
    """Raised where a non-finite value is found; the trainer turns it into a
    :class:`~img2img.errors.TrainingDiverged` naming the epoch and iteration. ``what`` says
    which value: ``loss G_L1``, ``gradients of optimizer D``, ``batch-norm running statistics
    of G`` ..."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every element of every floating-point tensor is finite, with one device
    synchronisation for all: through their norms (one fused pass; a NaN or inf element makes
    the norm NaN or inf; a finite tensor's norm overflows only past ~1e19 per element, which
    is divergence too)."""
    floats = [t.detach() for t in tensors if t.is_floating_point() and t.numel()]
    if not floats:
        return True
    norms = torch._foreach_norm(floats) if hasattr(torch, "_foreach_norm") else [t.norm() for t in floats]
    return bool(torch.isfinite(torch.stack([n.float() for n in norms])).all())


def check_losses(losses: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`NonFinite` naming the first non-finite loss (0-dim tensors or floats)."""
    values = [torch.as_tensor(v).detach() for v in losses.values()]
    if not values or all_finite(values):
        return
    for name, value in zip(losses, values):
        if not bool(torch.isfinite(value).all()):
            raise NonFinite(f"loss {name} is {float(value)}")


def check_iteration(losses: Mapping[str, torch.Tensor], networks: Mapping[str, nn.Module]) -> None:
    """After an iteration: the losses and the networks' buffers (batch-norm running
    statistics), with one device synchronisation when all is well."""
    values = [torch.as_tensor(v).detach() for v in losses.values()]
    buffers = [b for net in networks.values() for b in net.buffers()]
    if all_finite([*values, *buffers]):
        return
    check_losses(losses)
    check_buffers(networks)


def check_gradients(optimizer: torch.optim.Optimizer, name: str) -> None:
    """Raise :class:`NonFinite` if a gradient of ``optimizer``'s parameters is not finite
    (before the update, so that the parameters stay as they were)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not all_finite(grads):
        raise NonFinite(f"gradients of {name} are not finite")


def check_buffers(networks: Mapping[str, nn.Module]) -> None:
    """Raise :class:`NonFinite` if a network's buffers (batch-norm running statistics) hold
    a non-finite value."""
    for name, net in networks.items():
        if not all_finite(net.buffers()):
            raise NonFinite(f"batch-norm running statistics of {name} are not finite")


def check_state(networks: Mapping[str, nn.Module]) -> None:
    """Raise :class:`NonFinite` if a network's parameters or buffers hold a non-finite value."""
    for name, net in networks.items():
        if not all_finite(net.parameters()):
            raise NonFinite(f"weights of {name} are not finite")
    check_buffers(networks)


__all__ = [
    "NonFinite",
    "all_finite",
    "check_buffers",
    "check_gradients",
    "check_iteration",
    "check_losses",
    "check_state",
]
