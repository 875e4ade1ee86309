"""Memory for tiled inference: a forward pass's peak estimated from a probe, and the budget
the automatic tiling mode (img2img.translate.tiling.TileSettings) plans with.

The budget is ``MEMORY_MARGIN`` of the free memory of a CUDA device, or on CPU of the least of
the available RAM (psutil or /proc/meminfo), the cgroup's free memory (v2 or v1) and what the
address-space limit (``ulimit -v``) leaves.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn

# The fraction of the measured free memory the automatic mode plans to use: the rest is for the
# allocator's slack, the output image, the blending strip and whatever else the process holds.
MEMORY_MARGIN = 0.6

# (1, C, h, w) float32 on the CPU -> (1, C', h, w), any device.
Forward = Callable[[torch.Tensor], torch.Tensor]


def estimate_forward_bytes(net: nn.Module, forward: Forward, probe: torch.Tensor) -> float:
    """Bytes per input pixel of a forward pass's peak, measured on ``probe`` ((1, C, h, w) at
    a size the network takes): the largest input + output of a single layer (with the column
    buffer of a transposed convolution run by torch's CPU kernel), plus the inputs that skip
    connections and residual blocks hold while their inner layers run."""
    from img2img.models.determinism import ConvTranspose2dInference
    from img2img.models.networks import ResnetBlock, UnetSkipBlock

    largest = 0
    held = 0
    hooks = []

    def on_leaf(module, inputs, output):
        nonlocal largest
        size = sum(t.numel() * t.element_size() for t in inputs if torch.is_tensor(t))
        if isinstance(module, ConvTranspose2dInference) and output.device.type == "cpu":
            # torch's kernel unfolds into a column buffer: C_out x kh x kw values per input pixel.
            x = inputs[0]
            kh, kw = module.kernel_size
            size += output.shape[1] * kh * kw * x.shape[0] * x.shape[-2] * x.shape[-1] * output.element_size()
        largest = max(largest, size + output.numel() * output.element_size())

    def on_block(module, inputs, output):
        nonlocal held
        if not getattr(module, "outermost", False):
            held += inputs[0].numel() * inputs[0].element_size()

    for module in net.modules():
        if isinstance(module, (ResnetBlock, UnetSkipBlock)):
            hooks.append(module.register_forward_hook(on_block))
        elif not list(module.children()):
            hooks.append(module.register_forward_hook(on_leaf))
    try:
        forward(probe)
    finally:
        for hook in hooks:
            hook.remove()
    # A residual block holds its input only while it runs, one block at a time.
    pixels = probe.shape[-2] * probe.shape[-1]
    resnet_blocks = [m for m in net.modules() if isinstance(m, ResnetBlock)]
    if resnet_blocks:
        held = held / len(resnet_blocks)
    return (largest + held) / pixels


def memory_budget(device: torch.device) -> int:
    """Bytes a forward pass may use: ``MEMORY_MARGIN`` of the device's free memory (CUDA), or on
    CPU of the least of MemAvailable, the cgroup's free memory and the address-space limit."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * MEMORY_MARGIN)
    candidates = [_meminfo_available(), _cgroup_free(), _address_space_free()]
    known = [c for c in candidates if c is not None]
    return int(min(known) * MEMORY_MARGIN) if known else 8 << 30


def _meminfo_available() -> int | None:
    try:
        import psutil  # optional; /proc/meminfo below is the same figure on Linux

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_free() -> int | None:
    for limit_path, usage_path in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = open(limit_path).read().strip()
            usage = int(open(usage_path).read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 1 << 60:
            return None
        return max(int(limit) - usage, 0)
    return None


def _address_space_free() -> int | None:
    """What ``ulimit -v`` (RLIMIT_AS) still allows, given the process's current virtual size."""
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return max(soft - int(line.split()[1]) * 1024, 0)
    except OSError:
        pass
    return None


__all__ = ["MEMORY_MARGIN", "estimate_forward_bytes", "memory_budget"]
