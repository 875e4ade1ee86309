"""Which device to run on: the one place `--device` is turned into a torch.device, for
translate and training alike."""

from __future__ import annotations

import torch

from img2img.errors import DeviceError, UsageError

VALID = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(spec: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """'auto' (CUDA if available, else the CPU), 'cpu', 'cuda', 'cuda:N' or 'mps' -> a device
    this machine has. Under torchrun, 'auto' and 'cuda' mean the GPU of the process's
    ``local_rank``. DeviceError for a device this machine lacks, UsageError for a name that is
    no device at all."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r}; valid: {VALID}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise DeviceError(f"device {spec!r} requested but {why}", hint="use --device cpu or auto")
        count = torch.cuda.device_count()
        index = device.index if device.index is not None else local_rank % count
        if index >= count:
            raise DeviceError(
                f"device {spec!r} requested but this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"device {spec!r} requested but Apple MPS is not available", hint="use --device cpu or auto")
        return device
    raise UsageError(f"unsupported device {spec!r}; valid: {VALID}")
