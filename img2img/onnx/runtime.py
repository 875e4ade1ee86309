"""ONNX generators written by `img2img export`, run through onnxruntime.

An exported file carries img2img's metadata in the ONNX model's ``metadata_props`` (see
``ONNX_METADATA`` below and README.md, *Export to ONNX*), so it is self-describing like a weights
file: a consumer needs nothing else to feed it. ``OnnxGenerator`` wraps an onnxruntime session
behind the call the Translator makes on its network -- (N, C, H, W) float32 tensor in [-1, 1] in,
the same out -- so `translate --model model.onnx` shares translate's whole image path (reading,
padding, batching, writing) with the PyTorch models.

onnx, onnxscript and onnxruntime are the optional extra ``img2img[onnx]``; they are imported
lazily, and their absence is one line naming the install command (``MissingExtraError``).
Running an exported model needs onnxruntime only.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from img2img.errors import DeviceError, ImageError, MissingExtraError, UsageError, WeightsError, first_line
from img2img.models.weights import METADATA_KEY, LoadedGenerator, WeightsMetadata

ONNX_SUFFIX = ".onnx"
EXTRA_HINT = 'pip install "img2img[onnx]"'

# metadata_props keys, next to METADATA_KEY ("img2img": the weights format's JSON).
LAYOUT_KEY = "img2img.layout"
INPUT_RANGE_KEY = "img2img.input_range"
OUTPUT_RANGE_KEY = "img2img.output_range"
INPUT_CHANNELS_KEY = "img2img.input_channels"
OUTPUT_CHANNELS_KEY = "img2img.output_channels"
SIZE_MULTIPLE_KEY = "img2img.size_multiple"
MINIMUM_SIZE_KEY = "img2img.minimum_size"
STATIC_SIZE_KEY = "img2img.static_size"
PIXELS_KEY = "img2img.pixels"
QUANTIZATION_KEY = "img2img.quantization"  # set by export --quantize (img2img.onnx.quantize)
QUANTIZATION_PSNR_KEY = "img2img.quantization_psnr"
# Set on the ONNX copies translate caches (img2img.translate.engines): the SHA-256 of the weights file.
WEIGHTS_SHA256_KEY = "img2img.weights_sha256"
LOG_SEVERITY_FATAL = 4
# The output types an image generator may declare (float32; float16/bfloat16/double graphs too).
FLOAT_TENSOR_TYPES = ("tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)")


def import_extra(*modules: str) -> list[Any]:
    """Import the named modules of the ``img2img[onnx]`` extra; MissingExtraError naming the
    install command (and the missing module) when one is not installed. onnxruntime's default
    logger is set to fatal only, so sessions made by other code (onnxruntime.quantization's)
    print no coloured log records either."""
    loaded = []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError as exc:
            raise MissingExtraError(
                f"ONNX support needs the onnx extra ({name} is not installed: {exc})", hint=EXTRA_HINT
            ) from None
        if name == "onnxruntime":
            loaded[-1].set_default_logger_severity(LOG_SEVERITY_FATAL)
    return loaded


def is_onnx_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an ONNX model (by its suffix, as `translate --model` sees it)."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


def channel_order(channels: int) -> str:
    """How the channels of an image tensor are ordered: RGB for 3, L (grayscale) for 1."""
    return {1: "L", 3: "RGB"}.get(channels, f"{channels} channels")


def onnx_metadata_of(path: str | os.PathLike[str], properties: dict[str, str]) -> WeightsMetadata:
    """The weights format's metadata among an exported ONNX file's metadata_props. WeightsError
    when it is missing (a model exported elsewhere: its input range, channels and sizes are
    unknown) or invalid."""
    if METADATA_KEY not in properties:
        raise WeightsError(
            f"{path}: ONNX model has no img2img metadata, so its input range, channels and sizes are unknown",
            hint="export the model with `img2img export MODEL -o model.onnx`",
        )
    return WeightsMetadata.from_json(properties[METADATA_KEY], path)


def resolve_providers(device: str | torch.device) -> tuple[list[Any], str]:
    """onnxruntime execution providers for ``--device``: 'auto' is CUDA when onnxruntime has its
    CUDA provider, else the CPU; 'cuda[:N]' needs that provider (DeviceError otherwise); 'cpu'
    is the CPU. Returns (providers, the device's name)."""
    (ort,) = import_extra("onnxruntime")
    spec = str(device).strip().lower()
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if spec == "auto":
        spec = "cuda" if has_cuda else "cpu"
    if spec == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    if spec == "cuda" or spec.startswith("cuda:"):
        index = spec.partition(":")[2] or "0"
        if not index.isdigit():
            raise UsageError(f"unknown device {spec!r}; valid: auto, cpu, cuda, cuda:N")
        if not has_cuda:
            raise DeviceError(
                f"device {spec!r} requested but this onnxruntime has no CUDA execution provider",
                hint="install onnxruntime-gpu, or use --device cpu",
            )
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"], f"cuda:{index}"
    raise UsageError(f"device {spec!r} is not supported for ONNX models; valid: auto, cpu, cuda, cuda:N")


class OnnxGenerator:
    """An exported generator in an onnxruntime session, called like the PyTorch network:
    ``generator(x)`` with x a (N, input_nc, H, W) float32 CPU tensor in [-1, 1] -> (N, output_nc,
    H, W) float32 CPU tensor in [-1, 1]. H and W must be what the network accepts (multiples of
    the size multiple, at least the minimum size; the static size of a ``--static`` export, where
    a batch is run one image at a time if the model's batch is fixed at 1)."""

    def __init__(self, path: str | os.PathLike[str], *, device: str | torch.device = "auto"):
        (ort,) = import_extra("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise WeightsError(f"{self.path}: no such file")
        providers, self.device_name = resolve_providers(device)
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(), providers=providers)
        except Exception as exc:
            raise WeightsError(f"{self.path}: not an ONNX model onnxruntime can load ({first_line(exc)})") from None
        # Read through onnxruntime, so that running a model needs onnxruntime only.
        self.properties = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = onnx_metadata_of(self.path, self.properties)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4:
            raise WeightsError(f"{self.path}: expected one NCHW image input and one output")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.static_size = (shape[2], shape[3]) if all(isinstance(d, int) for d in shape[2:]) else None
        cfg = self.metadata.generator
        if isinstance(shape[1], int) and shape[1] != cfg.input_nc:
            raise WeightsError(f"{self.path}: the graph takes {shape[1]} channels, its metadata says {cfg.input_nc}")
        # What the graph declares about its output, checked before any image is read; what it
        # really returns is checked on every image (img2img.translate.translator.check_output).
        output = outputs[0]
        if output.type not in FLOAT_TENSOR_TYPES:
            raise WeightsError(f"{self.path}: the graph's output is {output.type}, not a float image tensor")
        out_shape = output.shape if isinstance(output.shape, list) else []
        if len(out_shape) not in (0, 4):
            raise WeightsError(f"{self.path}: the graph's output has {len(out_shape)} dimensions, not 4 (NCHW)")
        if len(out_shape) == 4 and isinstance(out_shape[1], int) and out_shape[1] != cfg.output_nc:
            raise WeightsError(
                f"{self.path}: the graph returns {out_shape[1]} channels, its metadata says {cfg.output_nc}"
            )

    def loaded(self) -> LoadedGenerator:
        """This generator as the Translator takes a loaded network."""
        return LoadedGenerator(net=self, metadata=self.metadata, path=self.path)  # type: ignore[arg-type]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.static_size is not None and tuple(x.shape[2:]) != self.static_size:
            height, width = self.static_size
            raise ImageError(
                f"this ONNX model was exported for {height}x{width} inputs only (--static); the padded "
                f"image is {x.shape[2]}x{x.shape[3]} (export without --static for any size)"
            )
        array = x.detach().float().cpu().contiguous().numpy()
        if self.fixed_batch is not None and array.shape[0] != self.fixed_batch:
            parts = [array[i : i + self.fixed_batch] for i in range(0, array.shape[0], self.fixed_batch)]
        else:
            parts = [array]
        try:
            outputs = [self.session.run(None, {self.input_name: part})[0] for part in parts]
        except Exception as exc:
            raise allocation_error(exc, self.path, array.shape) or exc
        return torch.from_numpy(np.concatenate(outputs) if len(outputs) > 1 else outputs[0])


class GraphAllocationError(MemoryError):
    """onnxruntime could not allocate a buffer the model's graph asked for. A MemoryError, so
    callers that treat running out of memory alike (translate's batch retry) still do;
    ``requested`` is the buffer's size in bytes (None when onnxruntime did not say)."""

    def __init__(self, message: str, requested: int | None):
        super().__init__(message)
        self.requested = requested


_ALLOCATION = re.compile(r"Failed to allocate memory for requested buffer of size (\d+)")


def allocation_error(
    exc: BaseException, path: str | os.PathLike[str], shape: tuple[int, ...]
) -> GraphAllocationError | None:
    """The one line for onnxruntime's allocation failures (its BFCArena message, a source path
    and C++ signature, is not for the user), or None when ``exc`` is another error. ``shape``:
    the input's (N, C, H, W), which the message gives, since a graph may ask for far more than
    the image needs (a hostile or wrong .onnx) and the image's size is then not the cause."""
    text = str(exc)
    if "onnxruntime" not in type(exc).__module__ or "Failed to allocate memory" not in text:
        return None
    found = _ALLOCATION.search(text)
    requested = int(found.group(1)) if found else None
    n, _, h, w = (tuple(shape) + (0, 0, 0, 0))[:4]
    asked = "more memory than is free"
    if requested is not None:
        # How it compares with the input says whether the image or the graph is the cause: a
        # generator's activations are tens to hundreds of times its input, not millions.
        times = requested / max(1, 4 * int(np.prod(shape)))
        asked = f"{requested} bytes ({requested / 2**30:.3g} GiB, {times:.3g} times the input's size)"
    return GraphAllocationError(
        f"out of memory: the model's graph ({Path(path).name}) asked onnxruntime for {asked} "
        f"to run a batch of {n} {w}x{h} image(s)",
        requested,
    )


def session_options():
    """onnxruntime SessionOptions for img2img's sessions: PyTorch's thread count (so
    OMP_NUM_THREADS and torch.set_num_threads apply), and its log kept off stderr: onnxruntime
    logs failures as coloured multi-line records before raising them, and img2img reports each
    failure itself, in one line (severity 4: fatal only, which ends the process anyway)."""
    (ort,) = import_extra("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = LOG_SEVERITY_FATAL
    return options


__all__ = [
    "EXTRA_HINT",
    "GraphAllocationError",
    "allocation_error",
    "session_options",
    "ONNX_SUFFIX",
    "OnnxGenerator",
    "channel_order",
    "import_extra",
    "is_onnx_file",
    "onnx_metadata_of",
    "resolve_providers",
]
