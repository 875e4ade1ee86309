"""Network layers whose results do not depend on the number of torch threads.

``img2img translate`` runs with one thread per core, a Ray actor with one thread per CPU it was
given (1 by default), a shard of a job array with whatever its host has; issue #15 asks for the
same bytes from all of them. Two kinds of layer in the generators give results that depend on the
thread count on the CPU (measured with torch 2.14 / oneDNN 3.12 on AVX2; see README "Same
bytes at any thread count"):

- **per-image normalisation** (instance norm, and batch norm with each image's own statistics,
  as translate runs pix2pix): torch's channels-last group-norm kernel splits each channel's sum
  over the threads, so the sums' rounding depends on their number. ``InstanceNormInference``
  computes the statistics with reductions that torch splits over the (image, channel) outputs
  only, each output summed by one thread in a fixed order.
- **transposed convolutions** (every up-sampling layer): oneDNN's ``brg_deconv`` kernel blocks its
  reduction according to the thread count (differences at 3, 4 and 8 threads measured).
  ``ConvTranspose2dInference`` runs torch's own transposed convolution
  (``slow_conv_transpose2d``: one GEMM, then col2im), with MKL's GEMM in its strict CNR mode
  (below), which Intel documents as bit-reproducible across thread counts.

Convolutions, padding, activations and eval-mode batch norm (a per-channel affine map) gave
bit-identical results at 1, 2, 3, 4 and 8 threads in the same measurements, so they are left alone.

Nothing here changes what is computed, only the order of the floating-point sums: outputs stay
within float32 rounding of the layers they replace (tested against the plain layers).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Iterator

# torch's transposed convolution multiplies with MKL's sgemm, which is bit-reproducible across
# thread counts only in MKL's strict CNR mode (Intel: "Reproducibility Conditions"; without it,
# small inputs differed at 2, 5, 8 and 16 threads). MKL reads this once, at its first call, so
# it is set on import, before torch has multiplied anything; a user's own setting is kept.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import torch  # noqa: E402
from torch import nn

from img2img.models.networks import PerImageBatchNorm


def instance_norm_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and biased variance of ``x`` (N, C, H, W), any layout, as
    (N, C, 1, 1) float32 tensors; the same bits whatever the number of torch threads.

    ``torch.var_mean`` (Welford's algorithm or two passes, never E[x²] - E[x]², so no
    cancellation), a torch reduction over H and W. torch's CPU reductions with more than one output split the work over
    the outputs (N x C of them), never over the reduced dimensions, so each channel is summed by
    one thread in an order fixed by the shape alone; ``torch.var_mean`` does exactly that (also
    measured for a single output, one image of one channel, at 1 to 4 threads)."""
    x = x.float()
    var, mean = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
    return mean, var


# How small a channel's variance may be, relative to its mean square, before normalising values
# of a reduced precision turns their rounding into the signal (issue #24 item 5). A value
# rounded to bfloat16 (8 significant bits) is off by about 2^-9 of itself, so the rounding noise
# has a variance of about 1.3e-6 of the mean square; below 1e-2 of it the normalised output is
# no longer within 40 dB of float32's. Measured on the shipped models (64 px, emulated bf16):
# near-white and near-flat inputs gave 0.7e-6 to 7.8e-4 and 19-32 dB; photos 1e-2 to 7e-2 and
# 54-56 dB. For float16 (11 bits) the bar is 2^6 lower, as its rounding noise is.
CONDITIONING_RATIO = {torch.bfloat16: 1e-2, torch.float16: 1e-2 / 64}
_watches: contextvars.ContextVar[list | None] = contextvars.ContextVar("img2img_conditioning", default=None)


class ConditioningWatch:
    """Which images of a forward pass in a reduced precision met an ill-conditioned
    normalisation (see ``watch_conditioning``)."""

    def __init__(self) -> None:
        self._flags: list[torch.Tensor] = []

    def note(self, flags: torch.Tensor) -> None:
        """Add (N,) bool flags, or (1,) for statistics shared by every image of the batch."""
        self._flags.append(flags.cpu())

    def images(self, count: int) -> torch.Tensor:
        """(count,) bool: True for the images of the batch to recompute in float32."""
        result = torch.zeros(count, dtype=torch.bool)
        for flags in self._flags:
            result |= flags.expand(count) if flags.numel() == 1 else flags
        return result


@contextlib.contextmanager
def watch_conditioning() -> Iterator[ConditioningWatch]:
    """Within the block, every per-image normalisation of values in bfloat16 or float16
    (``normalise``) notes the images where a channel's variance is below
    ``CONDITIONING_RATIO`` of its mean square (and not exactly zero throughout): there the
    rounding of the reduced precision, divided by the near-zero deviation, is a large part of
    the output, and those images must be computed in float32 to stay within 40 dB of it. A
    near-flat image (white, black, a faint grain) is the common case."""
    watch = ConditioningWatch()
    token = _watches.set([watch, *(_watches.get() or [])])
    try:
        yield watch
    finally:
        _watches.reset(token)


def _note_conditioning(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> None:
    watches = _watches.get()
    ratio = CONDITIONING_RATIO.get(x.dtype)
    if not watches or ratio is None:
        return
    square = var + mean * mean
    flags = ((var < ratio * square) & (square > 0)).flatten(1).any(1)
    for watch in watches:
        watch.note(flags)


def normalise(
    x: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    eps: float,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias, per channel (elementwise: independent of
    the thread count); keeps x's dtype and memory layout. ``mean``/``var`` (N or 1, C, 1, 1)
    float32; one multiply-add over x. bfloat16/float16 input: the mean is taken off first --
    the plain multiply-add ``x * scale - mean * scale`` rounded both terms, each off by up to
    2^-9 of a value that ``scale`` (up to 1/sqrt(eps), 316) has made large, which wiped out the
    result of a near-flat channel. Notes ill-conditioned images to an active
    ``watch_conditioning``."""
    if x.dtype != torch.float32:
        _note_conditioning(x, mean, var)
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight.float().view(1, -1, 1, 1)
    if x.dtype != torch.float32:
        # x minus the mean rounded to x's dtype is exact where it matters (values close to the
        # mean: Sterbenz), and what rounding the mean left out comes back, scaled, in float32:
        # as accurate as a float32 normalisation, at the speed of two passes in x's dtype
        # (a float32 pass measured 3x slower on an AVX2 CPU).
        centre = mean.to(x.dtype)
        shift = (centre.float() - mean) * scale
        if bias is not None:
            shift = shift + bias.float().view(1, -1, 1, 1)
        return torch.addcmul(shift.to(x.dtype), x - centre, scale.to(x.dtype))
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias.float().view(1, -1, 1, 1)
    return torch.addcmul(shift, x, scale)


class InstanceNormInference(nn.Module):
    """Instance norm (and per-image batch norm) for inference: each image normalised by its own
    per-channel statistics (Ulyanov et al., *Instance Normalization*, 2016), then the optional
    affine ``weight``/``bias`` (C,). Input (N, C, H, W) float32, bfloat16 or float16, any
    layout; output the same. Statistics from ``instance_norm_statistics``, so the result does
    not depend on the number of torch threads."""

    def __init__(self, channels: int, eps: float, weight: torch.Tensor | None, bias: torch.Tensor | None):
        super().__init__()
        self.channels, self.eps = channels, eps
        self.weight = weight if weight is None else nn.Parameter(weight.detach(), requires_grad=False)
        self.bias = bias if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = instance_norm_statistics(x)
        return normalise(x, mean, var, self.eps, self.weight, self.bias)


class ConvTranspose2dInference(nn.Module):
    """A ``nn.ConvTranspose2d`` (groups 1) computed by torch's own kernel instead of oneDNN's,
    whose accumulation order depends on the thread count. Same weights (shared, not copied),
    same output: (N, C_in, H, W) -> (N, C_out, H', W') in the input's layout."""

    def __init__(self, conv: nn.ConvTranspose2d):
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError(f"only groups=1, zero padding is supported, got {conv}")
        self.weight, self.bias = conv.weight, conv.bias
        self.kernel_size, self.stride, self.padding = conv.kernel_size, conv.stride, conv.padding
        self.output_padding, self.dilation = conv.output_padding, conv.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":  # cuDNN/MPS: not the CPU kernels this works around
            return nn.functional.conv_transpose2d(
                x, self.weight, self.bias, self.stride, self.padding, self.output_padding, 1, self.dilation
            )
        return torch.ops.aten.slow_conv_transpose2d(
            x, self.weight, self.kernel_size, self.bias, self.stride, self.padding, self.output_padding, self.dilation
        )


class GroupNormInference(InstanceNormInference):
    """The same normalisation through torch's group norm (one group per channel): faster on
    large channels-last inputs (resnet_9blocks at 512²: the thread-count independent path took
    1.08-1.16x its time, README), but its sums depend on the number of threads. Used only when
    a Translator is asked for ``thread_count_independent=False``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:  # the float32 normalisation and its conditioning check
            return super().forward(x)
        return nn.functional.group_norm(x, self.channels, self.weight, self.bias, self.eps)


def make_thread_count_independent(net: nn.Module, enabled: bool = True) -> nn.Module:
    """Swap (in place) every per-image norm -- ``nn.InstanceNorm2d`` without running statistics,
    ``PerImageBatchNorm`` -- for ``InstanceNormInference`` and every ``nn.ConvTranspose2d`` for
    ``ConvTranspose2dInference``, sharing their parameters. For inference only (no backward).
    ``enabled=False``: the faster thread-count dependent forms instead (``GroupNormInference``,
    oneDNN's transposed convolution left in place)."""
    norm = InstanceNormInference if enabled else GroupNormInference
    for name, child in net.named_children():
        if isinstance(child, nn.InstanceNorm2d) and not child.track_running_stats:
            setattr(net, name, norm(child.num_features, child.eps, child.weight, child.bias))
        elif isinstance(child, PerImageBatchNorm):
            setattr(net, name, norm(child.weight.shape[0], child.eps, child.weight, child.bias))
        elif isinstance(child, nn.ConvTranspose2d) and enabled:
            setattr(net, name, ConvTranspose2dInference(child))
        else:
            make_thread_count_independent(child, enabled)
    return net
