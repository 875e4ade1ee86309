"""Which device to run on: the one place `--device` is turned into a torch.device, for
translate and training alike; and the one place that decides the CPU's class
(``cpu_class()``, overridable by ``$IMG2IMG_CPU_CLASS``), which every speed default follows."""

from __future__ import annotations

import functools
import os
import platform

import torch

from img2img.errors import DeviceError, UsageError
from img2img.runtime.cpu_classes import ENV_CPU_CLASS, NATIVE_BF16_CLASSES, cpu_class_from_environment

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
            raise DeviceError(
                f"device {spec!r} requested but Apple MPS is not available", hint="use --device cpu or auto"
            )
        return device
    raise UsageError(f"unsupported device {spec!r}; valid: {VALID}")


# --- what the CPU can do ---------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def cpu_features() -> dict[str, bool]:
    """The CPU features the CPU class is made of, as PyTorch detects them (read them through
    ``cpu_class()``, which the environment can override):
    ``{"avx2", "avx512", "avx512_bf16", "amx"}`` -> bool. ``avx512`` means PyTorch dispatches to
    its AVX-512 kernels (``torch.backends.cpu.get_cpu_capability()``)."""
    capability = torch.backends.cpu.get_cpu_capability()

    def probe(name: str) -> bool:
        try:
            return bool(getattr(torch.cpu, name)())
        except (AttributeError, RuntimeError):
            return False

    return {
        "avx2": capability in ("AVX2", "AVX512"),
        "avx512": capability == "AVX512",
        "avx512_bf16": probe("_is_avx512_bf16_supported"),
        "amx": probe("_is_amx_tile_supported"),
    }


def detected_cpu_class() -> str:
    """The class of this machine's CPU as PyTorch detects it (one of ``CPU_CLASSES``),
    whatever ``$IMG2IMG_CPU_CLASS`` says: 'amx' (AMX tiles), 'avx512_bf16' (AVX512-BF16),
    'avx512' (PyTorch's AVX-512 kernels), 'avx2', or 'other' (none of these: ARM, old x86)."""
    features = cpu_features()
    if features["amx"]:
        return "amx"
    if features["avx512_bf16"]:
        return "avx512_bf16"
    if features["avx512"]:
        return "avx512"
    return "avx2" if features["avx2"] else "other"


def cpu_class() -> str:
    """The CPU class every class-dependent default reads (precision auto, channels-last, engine
    auto, the trainers' AMP and layout): ``$IMG2IMG_CPU_CLASS`` when set (to diagnose a
    report from another machine, and for the tests), else ``detected_cpu_class()``. A class
    the machine lacks only changes the defaults: bf16 on a CPU without it runs emulated (slow,
    numerically the same). Raises UsageError naming the variable for a value that is no class."""
    return cpu_class_from_environment() or detected_cpu_class()


def has_native_bf16(cls: str) -> bool:
    """True for the classes whose bfloat16 convolutions have hardware support (AVX512-BF16 or
    AMX). On the others oneDNN emulates them (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``
    is still True on plain AVX-512 CPUs) and bf16 is far slower than float32: every bf16
    default depends on this, not on whether bf16 merely runs."""
    return cls in NATIVE_BF16_CLASSES


def cpu_has_native_bf16() -> bool:
    """``has_native_bf16(cpu_class())``: the CPU class in effect has native bfloat16."""
    return has_native_bf16(cpu_class())


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_summary() -> str:
    """One line for benchmark output: CPU model, its features and class, cores, threads and the
    torch build (version, CPU kernels, oneDNN), so a figure says where it holds."""
    features = cpu_features()
    flags = " ".join(f"{name.upper()}{'+' if on else '-'}" for name, on in features.items())
    cls = cpu_class()
    if cls != detected_cpu_class():  # a figure measured under a simulated class must say so
        cls = f"{cls} (simulated by {ENV_CPU_CLASS}; detected {detected_cpu_class()})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    onednn = getattr(torch.backends.mkldnn, "version", lambda: None)()
    return (
        f"{cpu_model_name()} | {flags} | class {cls} | {cores} cores, {torch.get_num_threads()} torch threads | "
        f"torch {torch.__version__} (CPU kernels {torch.backends.cpu.get_cpu_capability()}"
        + (f", oneDNN {'.'.join(map(str, onednn))}" if onednn else "")
        + f"{', CUDA ' + torch.version.cuda if torch.version.cuda else ''})"
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the device (or the host) ran out of memory, whatever raised it."""
    # CUDA and MPS raise OutOfMemoryError; torch's CPU allocator a plain RuntimeError
    # ("DefaultCPUAllocator: can't allocate memory" on Linux, "not enough memory" on Windows);
    # numpy and Python a MemoryError.
    return (
        isinstance(exc, (torch.OutOfMemoryError, MemoryError))
        or (
            isinstance(exc, RuntimeError)
            and any(text in str(exc) for text in ("can't allocate memory", "not enough memory", "DefaultCPUAllocator"))
        )
        or (
            # onnxruntime's allocator (its exceptions are RuntimeError subclasses of its own); its
            # arena says "BFCArena ... Available memory of N is smaller than requested bytes" too
            "onnxruntime" in type(exc).__module__
            and any(text in str(exc) for text in ("Failed to allocate memory", "BFCArena"))
        )
    )
