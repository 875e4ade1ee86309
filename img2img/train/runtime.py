"""How the networks run: the process's place in a torchrun job, device-dependent defaults
(loader workers, AMP, channels-last) and mixed precision."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from img2img.errors import DeviceError, UsageError
from img2img.models.config import GeneratorConfig
from img2img.runtime.devices import cpu_class, has_native_bf16
from img2img.train import distributed
from img2img.train.divergence import check_gradients


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (torchrun) job; a plain run is rank 0 of 1."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistInfo:
        def read(name: str, default: int) -> int:
            try:
                return int(os.environ.get(name, default))
            except ValueError:
                return default

        return cls(read("RANK", 0), read("LOCAL_RANK", 0), read("WORLD_SIZE", 1))


def default_num_workers(device: torch.device) -> int:
    """DataLoader workers when --num-workers is not given. On the CPU the training step already
    uses every core and decoding one 256x256 pair costs ~1% of a step, so loading in the main
    process is fastest (workers only compete for the cores; the reference's 4 workers on a
    2-core machine also stall every epoch start). With a GPU the cores are free for loading."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cpu":
        return 0
    cores //= max(1, distributed.local_world_size())  # the processes on this machine share them
    return max(1, min(8, cores - 1))


def default_amp(device: torch.device, dtype_name: str) -> bool:
    """bf16 autocast measured 0.73x the time per iteration of float32 for the default pix2pix on
    a CPU with native bf16 (AVX512-BF16/AMX), with the same validation L1 (see the README).
    Without native support (AVX2, or AVX-512 without BF16) bf16 is emulated and many times
    slower, so it is off there, whatever oneDNN would accept; on CUDA it is left to --amp.
    The class is img2img.runtime.devices.cpu_class (``$IMG2IMG_CPU_CLASS`` overrides it)."""
    return device.type == "cpu" and dtype_name == "bf16" and has_native_bf16(cpu_class())


def default_channels_last(device: torch.device, generator: GeneratorConfig | None = None, *, amp: bool = False) -> bool:
    """On the CPU, channels-last only pays with bf16 autocast on a native-bf16 CPU: there it
    measured 0.67-0.68x the float32 time per iteration against 0.69-0.73x for bf16 alone
    (default pix2pix). In float32 it was within noise on that CPU (0.94-1.10x) and 18% slower
    for the U-Net on an AVX2-only one (1.37 vs 1.16 s/iter), so it follows ``amp``. Never for
    the ResNet generators (CycleGAN's default): reflection padding and instance norm copy
    channels-last tensors to the standard layout and back, a quarter of the step's time.
    See benchmarks/bench_train.py and the README."""
    return device.type == "cpu" and amp and (generator is None or generator.arch != "resnet")


class Amp:
    """Automatic mixed precision: bf16 autocast (CPU and CUDA), or fp16 autocast with a
    gradient scaler (CUDA only). Disabled, it is a no-op with the same interface."""

    def __init__(self, enabled: bool, dtype_name: str, device: torch.device):
        self.enabled, self.device_type = enabled, device.type
        self.dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float16
        if enabled and self.dtype == torch.float16 and device.type != "cuda":
            raise UsageError("--amp-dtype fp16 needs a CUDA device; on the CPU use bf16")
        if enabled and self.dtype == torch.bfloat16 and device.type == "cuda":
            if not torch.cuda.is_bf16_supported():
                raise DeviceError(f"{device}: no bfloat16 support; use --amp-dtype fp16")
        use_scaler = enabled and self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler) if use_scaler else None
        self.optimizer_names: dict[int, str] = {}  # for the divergence message

    def name_optimizers(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        """Name the optimizers for the message that says whose gradients stopped being finite."""
        self.optimizer_names = {id(opt): name for name, opt in optimizers.items()}

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and update: zero the gradients, backpropagate ``loss``, step ``optimizer``."""
        optimizer.zero_grad(set_to_none=True)
        self.backward(loss)
        self.step_optimizer(optimizer)

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss`` (scaled for fp16), adding to the gradients. Several calls
        before one ``step_optimizer`` free each part's graph as soon as it is done."""
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()

    def step_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Update the parameters. Without a gradient scaler, non-finite gradients raise
        :class:`~img2img.train.divergence.NonFinite` first, so the parameters stay as they were
        (with one, the scaler skips such a step and lowers its scale, which is normal)."""
        if self.scaler is None:
            check_gradients(optimizer, self.optimizer_names.get(id(optimizer), "the networks"))
            optimizer.step()
        else:
            self.scaler.step(optimizer)

    def end_iteration(self) -> None:
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(dict(state))


@dataclass
class Runtime:
    """How the networks run: what a model's ``setup`` and ``train_step`` need from the trainer."""

    device: torch.device
    amp: Amp
    channels_last: bool = False
    compile: bool = False
    dist: DistInfo = field(default_factory=DistInfo)
    sync_bn: bool = False  # SyncBatchNorm when several processes train (CUDA)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def place(self, net: nn.Module) -> nn.Module:
        """Move ``net`` to the device (and layout), with SyncBatchNorm layers if asked for;
        keep the returned module in ``networks`` (it shares ``net``'s parameters)."""
        if self.sync_bn and distributed.active():
            net = distributed.convert_sync_batchnorm(net)
        return net.to(self.device, memory_format=self.memory_format)

    def wrap(self, net: nn.Module) -> nn.Module:
        """What the step should call: ``net`` wrapped in DistributedDataParallel when several
        processes train (torchrun), compiled when asked for; its parameters are those of
        ``net``, which stays unwrapped in ``networks`` (checkpoints and exports hold its state
        dict, without DDP's ``module.`` prefixes)."""
        if distributed.active():
            net = distributed.data_parallel(net, self.device)
        return torch.compile(net) if self.compile else net

    def to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        non_blocking = self.device.type == "cuda"
        moved = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                fmt = self.memory_format if value.dim() == 4 else torch.preserve_format
                value = value.to(self.device, non_blocking=non_blocking, memory_format=fmt)
            moved[key] = value
        return moved
