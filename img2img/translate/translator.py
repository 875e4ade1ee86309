"""Running a generator on images: devices, precision, padding to valid sizes, batching.

    translator = Translator("weights/horse2zebra.safetensors", device="auto", precision="auto")
    zebra = translator.translate_image(PIL.Image.open("horse.jpg"))

``Translator.translate_tensor`` is the batched tensor path ([-1, 1] in and out, any size);
``translate_images`` and ``translate_stream`` batch PIL images of equal padded size.

Speed (see benchmarks/bench_translate.py for the numbers behind these choices): the network is
prepared once for inference -- instance norm (and per-image batch norm) and transposed
convolutions run as the layers of img2img.models.determinism, whose results do not depend on the number
of torch threads (so translate, its shards and Ray actors write the same bytes); activations are
channels-last; the forward runs under ``torch.inference_mode``. With ``precision="auto"`` a CPU with native bfloat16 (AVX512-BF16 or
AMX) runs the whole network in bfloat16, and CUDA runs fp16 autocast; the output stays within
40 dB PSNR of fp32 on every image: normalisation is computed in float32, and an image that a
reduced precision cannot normalise faithfully (near-flat: white, black, a faint grain) is
computed in float32 instead (img2img.models.determinism.watch_conditioning).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Iterable, Iterator, Literal, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from img2img.errors import ImageError, UsageError
from img2img.files.imageio import ModelInput, from_model_output, to_model_input
from img2img.models.config import GeneratorConfig, minimum_size, smallest_side, valid_side_near
from img2img.models.determinism import make_thread_count_independent, watch_conditioning
from img2img.models.weights import LoadedGenerator, WeightsMetadata, load_generator
from img2img.onnx.runtime import GraphAllocationError
from img2img.runtime.devices import cpu_class, cpu_has_native_bf16, has_native_bf16, is_out_of_memory, resolve_device
from img2img.translate.engines import ENV_ENGINE, Engine, engine_from_environment, open_onnx_engine, resolve_engine
from img2img.translate.tiling import TilePlan, TileSettings, translate_tiled

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

K = TypeVar("K", bound=Hashable)


# --- devices and precision --------------------------------------------------------------------


def default_channels_last(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the network runs channels-last (NHWC) by default: on CUDA (cuDNN's tensor cores
    take NHWC without layout conversions) and on the CPU in every precision (oneDNN's
    convolutions are NHWC; measured not slower than NCHW in float32 on an AVX2-only CPU and
    faster in bf16 on a native-bf16 one: ``benchmarks/bench_translate.py``, README "Speed").
    MPS gains nothing from it."""
    return device.type in ("cuda", "cpu")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the network computes in. 'auto' is the fastest choice measured to stay within
    40 dB PSNR of fp32: bf16 on CPUs with native bf16 (img2img.runtime.devices.cpu_class, which
    ``$IMG2IMG_CPU_CLASS`` overrides), fp16 on CUDA, fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16  # tensor cores on every CUDA GPU; more mantissa than bf16
        if device.type == "cpu" and has_native_bf16(cpu_class()):
            return torch.bfloat16
        return torch.float32  # MPS: unmeasured, so full precision
    dtype = _DTYPES[precision]
    if dtype == torch.float16 and device.type == "cpu":
        raise UsageError("fp16 is not supported on CPU (no fast kernels)", hint="use --precision bf16 or fp32")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"{device} does not support bf16", hint="use --precision fp16 or fp32")
    return dtype


# --- padding -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Padding:
    """Where the original image sits inside the padded one."""

    top: int
    left: int
    height: int
    width: int

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.top : self.top + self.height, self.left : self.left + self.width]


def padded_size(height: int, width: int, multiple: int, minimum: int = 1) -> tuple[int, int]:
    """The smallest multiple of ``multiple`` that is at least the size and at least ``minimum``."""
    height, width = max(height, minimum), max(width, minimum)
    return height + (-height) % multiple, width + (-width) % multiple


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 1) -> tuple[torch.Tensor, Padding]:
    """Pad (N, C, H, W) on all sides, evenly, to multiples of ``multiple`` (and ``minimum``): by
    reflection, which the networks' own padding uses too, or by repeating the border where the
    image is smaller than the padding (reflection cannot reach further than the image)."""
    height, width = x.shape[-2:]
    target_h, target_w = padded_size(height, width, multiple, minimum)
    pad_h, pad_w = target_h - height, target_w - width
    top, left = pad_h // 2, pad_w // 2
    padding = Padding(top, left, height, width)
    if pad_h == 0 and pad_w == 0:
        return x, padding
    pads = (left, pad_w - left, top, pad_h - top)  # F.pad order: left, right, top, bottom
    reflectable = max(pads[0], pads[1]) < width and max(pads[2], pads[3]) < height
    return nn.functional.pad(x, pads, mode="reflect" if reflectable else "replicate"), padding


# --- the network, prepared for inference ---------------------------------------------------


# --- the translator --------------------------------------------------------------------------


class BadOutputError(ImageError):
    """The network's output for an input breaks what a generator promises (its shape, channels,
    dtype, range or finiteness; see ``check_output``): that input fails, nothing is written."""


class NonFiniteOutputError(BadOutputError):
    """The network's output for an input holds NaN or infinity (diverged weights, or an input
    that overflows them): that input fails, nothing is written for it."""


# A generator ends in tanh: its outputs are in [-1, 1]. One grey level (1/127.5) of slack for
# runtimes whose tanh rounds a little past 1; an output beyond it is not a generator's (an ONNX
# graph returning pixels in [0, 255] or [0, 1]'s logits) and clamping it would write garbage.
OUTPUT_RANGE_SLACK = 1 / 127.5


def check_output(y: Any, x: torch.Tensor, output_nc: int, *, model: str, computed: str) -> torch.Tensor:
    """The one check every network output passes before it becomes pixels, whatever computed it
    (PyTorch, onnxruntime, an ONNX file, a tile, a Ray actor's or eval's translator).

    ``y``: what the network returned for the input batch ``x`` (N, C, H, W); ``output_nc``: the
    model's output channels (its metadata); ``model`` (a file name) and ``computed`` (precision
    and engine, e.g. "fp32, onnxruntime") are for the message. Returns ``y`` as float32, shape
    (N, output_nc, H, W), every value finite and in [-1, 1] (within OUTPUT_RANGE_SLACK).

    Raises BadOutputError (NonFiniteOutputError for NaN or infinity) saying what was wrong: a
    network that is not a generator's -- an ONNX graph that averages the image away, enlarges it,
    returns integers -- must fail the image, not write a 1x1, cropped or clamped picture."""
    expected = (x.shape[0], output_nc, *x.shape[2:])
    where = f"the model ({model}, {computed})"
    if not isinstance(y, torch.Tensor):
        raise BadOutputError(f"{where} returned {type(y).__name__}, not an image tensor; nothing was written")
    if not y.dtype.is_floating_point:
        raise BadOutputError(
            f"{where} returned {str(y.dtype).removeprefix('torch.')} values, not floats in [-1, 1]; nothing was written"
        )
    if tuple(y.shape) != expected:

        def size(shape: tuple[int, ...]) -> str:
            if len(shape) != 4:
                return f"{len(shape)}-D {'x'.join(map(str, shape))}"
            return f"{shape[3]}x{shape[2]} with {shape[1]} channel(s), batch {shape[0]}"

        raise BadOutputError(
            f"{where} returned a {size(tuple(y.shape))} output for a {size(expected)} input; nothing was written"
        )
    y = y.float()
    if not bool(torch.isfinite(y).all()):
        # Never an image from it: NaN rounds to 0, a black image written with exit 0.
        raise NonFiniteOutputError(f"{where} produced NaN or infinite values for this input; nothing was written")
    low, high = float(y.min()), float(y.max())
    if low < -1 - OUTPUT_RANGE_SLACK or high > 1 + OUTPUT_RANGE_SLACK:
        raise BadOutputError(
            f"{where} returned values in [{low:.4g}, {high:.4g}], outside a generator's [-1, 1]; nothing was written"
        )
    return y


@dataclass
class TranslateResult:
    """One image from ``translate_stream``: the output image, or the error that stopped it."""

    key: Any
    image: Image.Image | None
    error: ImageError | None
    seconds: float  # this image's share of the compute time
    tiling: TilePlan | None = None  # how the image was tiled; None: one pass
    engine: str | None = None  # what ran the network for it: "torch" or "onnxruntime" (None: failed)


class Translator:
    """A generator ready to translate images: loaded on a device, in a precision, batched.

    ``model`` is a weights file, a model name (resolved by img2img.hub.registry) or a
    LoadedGenerator (copied, not changed). ``direction``, when given, must be the one the
    weights map; a CycleGAN run exports one file per direction.

    Tiling (img2img.translate.tiling): ``tile`` is "auto" (tile an image only when one pass would not fit
    ``memory_budget`` bytes, default: measured free memory), "off", or a tile side in pixels;
    ``tile_overlap`` in pixels (default: a quarter of the tile, at most 128, and for U-Nets at
    least three size multiples: tiling.default_overlap); ``tile_stats``
    "thumbnail", "exact" or "tile" (how tiles get their normalisation statistics).

    ``thread_count_independent`` (default True): on the CPU the output's bits do not depend on
    the number of torch threads (img2img.models.determinism), so translate, its shards and Ray actors
    agree byte for byte; False uses torch's group norm and oneDNN's transposed convolution,
    faster on large images of ResNets (up to about 1.15x, README "Same bytes at any thread
    count") but not reproducible across thread counts.

    ``engine``: "auto", "torch" or "onnxruntime" (img2img.translate.engines; default ``$IMG2IMG_ENGINE``,
    else "auto"): which library runs whole images. "auto" is onnxruntime for a ResNet
    generator's float32 forward on a CPU without native bf16 (img2img.runtime.devices.cpu_class) when
    the onnx extra is installed (the weights are exported once and cached), PyTorch otherwise;
    never dependent on ``expected_images`` (the run's image count; None: unknown), except that
    0 (nothing to translate) exports nothing. Tiles always run in PyTorch. ``self.engine``
    says what was chosen and why.
    Raises UsageError/MissingExtraError for an explicit "onnxruntime"
    that cannot apply.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | LoadedGenerator,
        *,
        device: str | torch.device = "auto",
        precision: Precision | str = "auto",
        direction: str | None = None,
        channels_last: bool | None = None,
        tile: int | str = "auto",
        tile_overlap: int | None = None,
        tile_stats: str = "thumbnail",
        memory_budget: int | None = None,
        thread_count_independent: bool = True,
        engine: str | None = None,
        expected_images: int | None = None,
    ):
        self.channels_last = channels_last
        self.thread_count_independent = thread_count_independent
        self.precision_requested = precision
        path = None if isinstance(model, LoadedGenerator) else _resolve(model, direction)
        if _is_onnx(path):
            # An exported ONNX model runs in onnxruntime, in the graph's float32, behind the same
            # call as the PyTorch network; tensors stay on the CPU (onnxruntime copies to a GPU).
            from img2img.onnx.runtime import OnnxGenerator

            if precision not in ("auto", "fp32"):
                raise UsageError(
                    f"{path}: ONNX models run in float32, not {precision}", hint="use --precision auto or fp32"
                )
            if engine is None:
                engine_from_environment()  # only a default here, but a typo in it is still one
            elif engine.strip().lower() == "torch":  # $IMG2IMG_ENGINE is only a default
                raise UsageError(f"{path}: an ONNX model runs in onnxruntime, not torch", hint="leave out --engine")
            loaded = OnnxGenerator(path, device=device).loaded()
            self.device, self.dtype = torch.device("cpu"), torch.float32
            self.engine, requested = Engine("onnxruntime", "an ONNX model"), "onnxruntime"
        else:
            requested = engine_from_environment() if engine is None else engine
            if requested.strip().lower() == "onnxruntime":
                # The engine asked for runs float32 on the CPU: 'auto' follows it there, rather
                # than picking bf16 (native-bf16 CPUs) or CUDA and refusing the engine.
                device = "cpu" if str(device).strip().lower() == "auto" else device
                precision = "fp32" if precision == "auto" else precision
            self.device = resolve_device(device)
            self.dtype = resolve_precision(precision, self.device)
            if isinstance(model, LoadedGenerator):
                loaded = LoadedGenerator(copy.deepcopy(model.net).to(self.device), model.metadata, model.path)
            else:
                loaded = load_generator(path, self.device)
            self.engine = resolve_engine(
                requested, self.device, self.dtype, weights=path, expected_images=expected_images,
                arch=loaded.metadata.generator.arch,
                asked_as="--engine onnxruntime" if engine is not None else f"{ENV_ENGINE}={requested.strip()}",
            )  # fmt: skip
        self.metadata: WeightsMetadata = loaded.metadata
        self.path = loaded.path
        check_direction(self.metadata, direction, self.path, given=None if path is None else model)
        if self.config.input_nc not in (1, 3) or self.config.output_nc not in (1, 3):
            raise UsageError(
                f"{self.path}: translate supports 1 or 3 channels, this model has "
                f"{self.config.input_nc} in and {self.config.output_nc} out"
            )
        if self.device.type == "cuda":
            # Lets cuDNN pick the fastest convolution per input shape; the first image of each
            # new (padded) size pays for the search.
            torch.backends.cudnn.benchmark = True
        self.net = self._prepare(loaded.net)
        engine_required = path is not None and not _is_onnx(path) and requested.strip().lower() == "onnxruntime"
        # onnxruntime runs whole images when it is the engine for a weights file; PyTorch keeps
        # the tiles (they share normalisation statistics through its norm layers).
        self._onnx = None
        if self.engine.name == "onnxruntime" and isinstance(self.net, nn.Module):
            self._onnx = open_onnx_engine(self.path, required=engine_required, reference=self._forward)
            if self._onnx is None:
                self.engine = Engine("torch", "onnxruntime failed")
        if not isinstance(self.net, nn.Module):  # an ONNX session
            # Shared-statistics tiles work through the PyTorch norm layers; an ONNX graph runs
            # each image in one pass (onnxruntime manages its own memory).
            if str(tile) != "auto" and str(tile) != "off":
                raise UsageError(
                    f"{self.path}: --tile needs a PyTorch model (tiles share normalisation statistics "
                    "through its norm layers)",
                    hint="translate with the .safetensors or .pth the ONNX file was exported from",
                )
            tile = "off"
        self.tiling = TileSettings(tile, tile_overlap, tile_stats, memory_budget)
        self.tiling.check(self.config)
        self._bytes_per_pixel: float | None = None

    # -- properties

    @property
    def config(self) -> GeneratorConfig:
        return self.metadata.generator

    @property
    def size_multiple(self) -> int:
        return self.config.size_multiple

    @property
    def minimum_size(self) -> int:
        return minimum_size(self.config)

    @property
    def _model_name(self) -> str:
        return Path(self.path).name if self.path else "in-memory network"

    @property
    def precision(self) -> str:
        """The precision actually used: fp32, bf16 or fp16."""
        return {v: k for k, v in _DTYPES.items()}[self.dtype]

    # -- preparation

    def _prepare(self, net: nn.Module) -> nn.Module:
        if not isinstance(net, nn.Module):  # an ONNX session: its graph is already optimised
            self._memory_format, self._cast_network = torch.contiguous_format, False
            self.channels_last = False
            return net
        net = make_thread_count_independent(net.eval(), self.thread_count_independent)
        if self.channels_last is None:
            self.channels_last = default_channels_last(self.device, self.dtype)
        self._memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        net = net.to(memory_format=self._memory_format)
        # On CPU the whole network runs in bf16: autocast would cast every weight again on every
        # call (54M parameters for unet_256) and round-trip the norms through fp32. bf16 has
        # fp32's range, so nothing overflows. On CUDA autocast is the well-trodden path and keeps
        # reductions in fp32, which fp16's small range needs.
        self._cast_network = self.device.type == "cpu" and self.dtype != torch.float32
        # The float32 network, for the images a reduced precision cannot compute within 40 dB
        # of it (near-flat ones: img2img.models.determinism.watch_conditioning). Under autocast it is
        # the same network run without autocast; a cast network keeps a float32 copy.
        self._net32 = net
        if self._cast_network:
            net = copy.deepcopy(net).to(self.dtype)
        for parameter in [*net.parameters(), *self._net32.parameters()]:
            parameter.requires_grad_(False)
        return net

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32 or self._cast_network:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    # -- tensors

    def translate_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) in [-1, 1], any H and W -> (N, output_nc, H, W) float32 in [-1, 1]
        on this translator's device: padded to the network's size multiple and cropped back.
        Raises NonFiniteOutputError when the output holds NaN or infinity."""
        if batch.ndim != 4 or batch.shape[1] != self.config.input_nc:
            raise ValueError(f"expected a (N, {self.config.input_nc}, H, W) tensor, got {tuple(batch.shape)}")
        x = batch.to(self.device, non_blocking=True)
        x, padding = pad_to_multiple(x.float(), self.size_multiple, self.minimum_size)
        return padding.crop(self._forward_whole(x))

    def _forward_whole(self, x: torch.Tensor) -> torch.Tensor:
        """Whole padded images in one pass, by the engine (img2img.translate.engines); tiles and memory
        probes call ``_forward``, PyTorch's."""
        if self._onnx is None:
            return self._forward(x)
        try:
            y = self._onnx(x)
            return check_output(y, x, self.config.output_nc, model=self._model_name, computed="fp32, onnxruntime")
        except NonFiniteOutputError:
            raise  # the network's own weights overflow: PyTorch would not do better
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            # Never a failed image for the engine's sake: PyTorch runs the same network. An
            # output of the wrong shape, dtype or range means the cached copy is not this
            # network's export (its check at opening missed it).
            log.warning(
                "onnxruntime failed (%s); PyTorch runs the model from now on",
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            )
            self._onnx, self.engine = None, Engine("torch", "onnxruntime failed")
            return self._forward(x)

    def _forward(self, x: torch.Tensor, *, fallback: bool = True) -> torch.Tensor:
        """PyTorch's forward of padded images, float32 out. In bf16/fp16 the images whose
        normalisation is ill-conditioned in that precision (img2img.models.determinism.
        watch_conditioning) are computed again in float32, alone or together, so that each
        image's output is the same whatever else is in the batch; ``fallback=False`` skips
        that (memory probes, tiles: ``_run_tiled`` decides for the whole image)."""
        x = x.contiguous(memory_format=self._memory_format)
        computed = self.precision if isinstance(self.net, nn.Module) else "fp32, onnxruntime"
        try:
            if self.dtype == torch.float32 or not fallback:
                y = self._run_network(x)
            else:
                with watch_conditioning() as watch:
                    y = self._run_network(x)
                redo = watch.images(x.shape[0])
                if bool(redo.any()):
                    log.debug(
                        "%d image(s) of %d recomputed in fp32 (near-flat for %s)",
                        int(redo.sum()),
                        len(redo),
                        self.precision,
                    )
                    y = y.float().clone()  # a normal tensor: an inference-mode one takes no in-place update
                    y[redo.to(y.device)] = self._run_float32(x[redo.to(x.device)])
            return check_output(y, x, self.config.output_nc, model=self._model_name, computed=computed)
        except NonFiniteOutputError:
            if self.dtype == torch.float16 and self.precision_requested == "auto":
                # fp16 overflowed somewhere in this network: fp32 from now on, for this batch too.
                log.warning("fp16 overflowed (inf/nan in the output); using fp32 from now on")
                self.dtype = torch.float32
                return self._forward(x)
            raise

    def _run_network(self, x: torch.Tensor) -> torch.Tensor:
        # What the network returned, as it returned it: check_output judges its dtype and shape.
        with torch.inference_mode(), self._autocast():
            return self.net(x.to(self.dtype) if self._cast_network else x)

    def _run_float32(self, x: torch.Tensor) -> torch.Tensor:
        # The layout of a float32 translator's input, which indexing a batch may have lost.
        x = x.contiguous(memory_format=self._memory_format)
        with torch.inference_mode():
            return self._net32(x.float())

    # -- images

    def to_input(self, image: Image.Image) -> ModelInput:
        """Convert a PIL image (any mode) to what this model takes."""
        return to_model_input(image, self.config.input_nc)

    def translate_image(self, image: Image.Image) -> Image.Image:
        """One PIL image (any mode; EXIF orientation is the caller's, see imageio.read_image) ->
        the translated image, same size, L or RGB (LA/RGBA when the input has alpha)."""
        return self.translate_images([image])[0]

    def translate_images(self, images: Iterable[Image.Image], batch_size: int = 1) -> list[Image.Image]:
        """Translate images in order; images of equal padded size are batched together."""
        results: dict[int, Image.Image] = {}
        items = ((i, self.to_input(image)) for i, image in enumerate(images))
        for result in self.translate_stream(items, batch_size=batch_size):
            if result.error is not None:
                raise result.error
            results[result.key] = result.image
        return [results[i] for i in range(len(results))]

    def translate_stream(
        self, items: Iterable[tuple[K, ModelInput]], batch_size: int = 1, max_pending: int | None = None
    ) -> Iterator[TranslateResult]:
        """Translate (key, ModelInput) pairs as they come, batching inputs of equal padded size.

        Results come in completion order (input order when batch_size is 1). At most
        ``max_pending`` inputs (default 4 x batch_size) wait for a full batch; then the largest
        waiting group runs. A batch that runs out of memory is retried one image at a time, and
        an image that still does not fit is reported as an error; the others go on."""
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        max_pending = max(max_pending or 4 * batch_size, batch_size)
        groups: dict[tuple[int, int], list[tuple[K, ModelInput]]] = {}
        pending = 0
        for key, item in items:
            width, height = item.size
            shape = padded_size(height, width, self.size_multiple, self.minimum_size)
            try:
                plan = self.tile_plan(height, width)
            except BadOutputError as exc:  # the network's memory probe (--tile) broke the promises
                yield TranslateResult(key, None, exc, 0.0)
                continue
            if plan is not None:  # too large for one pass: alone, in tiles
                yield self._run_tiled(key, item, plan)
                continue
            groups.setdefault(shape, []).append((key, item))
            pending += 1
            if len(groups[shape]) >= batch_size:
                ready = groups.pop(shape)
            elif pending > max_pending:
                ready = groups.pop(max(groups, key=lambda s: len(groups[s])))
            else:
                continue
            pending -= len(ready)
            yield from self._run_batch(ready)
        for ready in groups.values():
            yield from self._run_batch(ready)

    def _run_batch(self, batch: list[tuple[K, ModelInput]]) -> Iterator[TranslateResult]:
        start = time.perf_counter()
        try:
            outputs = self._translate_inputs([item for _, item in batch])
        except NonFiniteOutputError as exc:
            if len(batch) > 1:  # which of them? one at a time, as the output would be alone
                for single in batch:
                    yield from self._run_batch([single])
                return
            yield TranslateResult(batch[0][0], None, exc, 0.0)
            return
        except ImageError as exc:  # the network refuses these inputs (an ONNX model's static size)
            for key, _ in batch:
                yield TranslateResult(key, None, exc, 0.0)
            return
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) > 1:
                for single in batch:
                    yield from self._run_batch([single])
                return
            key, item = batch[0]
            width, height = item.size
            plan = self._plan_after_out_of_memory(height, width)
            if plan is not None:  # the estimate was too optimistic: tiles a quarter the size
                yield self._run_tiled(key, item, plan)
                return
            if isinstance(exc, GraphAllocationError):  # what the graph asked for, not the image's fault alone
                yield TranslateResult(key, None, ImageError(str(exc)), 0.0)
                return
            hint = (
                "try a smaller --batch-size"
                if self.device.type != "cpu"
                else "the image is too large for this machine's memory"
            )
            if not isinstance(self.net, nn.Module):  # an ONNX session: one pass, no tiles
                hint = (
                    "an ONNX model runs whole images, not tiles; translate with the .safetensors it was "
                    "exported from, which tiles large images (--tile auto)"
                )
            yield TranslateResult(
                key, None, ImageError(f"out of memory translating a {width}x{height} image ({hint})"), 0.0
            )
            return
        seconds = (time.perf_counter() - start) / len(batch)
        for (key, item), pixels in zip(batch, outputs):
            # self.engine is read after the batch ran: an onnxruntime failure in it switched to torch.
            yield TranslateResult(
                key, from_model_output(pixels, item.alpha, item.icc_profile), None, seconds, engine=self.engine.name
            )

    def _translate_inputs(self, inputs: list[ModelInput]) -> list[np.ndarray]:
        """ModelInputs of one padded size -> uint8 H x W x C arrays, each at its own size."""
        padded, paddings = [], []
        for item in inputs:
            # Each image is padded on its own, exactly as it would be alone, so batching never
            # changes a result; all of them then have the same padded size.
            # [0, 1] -> [-1, 1], as the reference's Normalize(0.5, 0.5): the same two float ops
            # as torchvision's normalize, without its import (a second at every command start).
            x = torch.from_numpy(item.pixels).permute(2, 0, 1).sub(0.5).div(0.5)
            x, padding = pad_to_multiple(x.unsqueeze(0), self.size_multiple, self.minimum_size)
            padded.append(x)
            paddings.append(padding)
        batch = torch.cat(padded)
        if self.device.type == "cuda":
            batch = batch.pin_memory()  # so that the copy to the GPU runs asynchronously
        y = self._forward_whole(batch.to(self.device, non_blocking=True))
        # [-1, 1] -> [0, 255], rounded rather than truncated as the reference's tensor2im does.
        pixels = ((y + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8).cpu()
        return [
            np.ascontiguousarray(padding.crop(pixels[i]).permute(1, 2, 0).numpy()) for i, padding in enumerate(paddings)
        ]

    # -- tiling (img2img.translate.tiling)

    def tile_plan(self, height: int, width: int) -> TilePlan | None:
        """How an image of this size is tiled under this translator's settings; None: one pass."""
        padded = padded_size(height, width, self.size_multiple, self.minimum_size)
        return self.tiling.plan(height, width, padded, self.size_multiple, self._forward_bytes_per_pixel, self.device)

    def _plan_after_out_of_memory(self, height: int, width: int) -> TilePlan | None:
        """With --tile auto, tiles of a quarter of the area that just did not fit."""
        if self.tiling.tile != "auto":
            return None
        padded = padded_size(height, width, self.size_multiple, self.minimum_size)
        try:
            budget = int(self._forward_bytes_per_pixel() * padded[0] * padded[1] / 4)
        except Exception as exc:
            if is_out_of_memory(exc):  # not even the small probe fits
                return None
            raise
        return self.tiling.plan(
            height, width, padded, self.size_multiple, self._forward_bytes_per_pixel, self.device, budget
        )

    def _forward_bytes_per_pixel(self) -> float:
        """Peak memory of a forward pass per input pixel, estimated once on a small probe."""
        if self._bytes_per_pixel is None:
            from img2img.models.memory import estimate_forward_bytes

            side = max(self.size_multiple, 64 // self.size_multiple * self.size_multiple, self.minimum_size)
            probe = torch.zeros(1, self.config.input_nc, side, side, device=self.device)
            self._bytes_per_pixel = estimate_forward_bytes(self.net, lambda x: self._forward(x, fallback=False), probe)
        return self._bytes_per_pixel

    def _run_tiled(self, key: Any, item: ModelInput, plan: TilePlan) -> TranslateResult:
        """One image in tiles; an image whose tiles still do not fit is reported as an error."""
        start = time.perf_counter()

        def pad(x: torch.Tensor):  # for the thumbnail
            return pad_to_multiple(x, self.size_multiple, self.minimum_size)

        def forward(x: torch.Tensor) -> torch.Tensor:
            return self._forward(x.to(self.device, non_blocking=True), fallback=False)

        def forward32(x: torch.Tensor) -> torch.Tensor:
            x = x.to(self.device, non_blocking=True)
            return check_output(self._run_float32(x), x, self.config.output_nc, model=self._model_name, computed="fp32")

        try:
            if self.dtype == torch.float32:
                pixels = translate_tiled(self.net, forward, pad, item.pixels, plan, self.config.output_nc)
            else:
                # The whole image in float32 when any tile's normalisation (or the thumbnail's,
                # whose statistics every tile uses) is ill-conditioned in the reduced precision.
                with watch_conditioning() as watch:
                    pixels = translate_tiled(self.net, forward, pad, item.pixels, plan, self.config.output_nc)
                if bool(watch.images(1).any()):
                    pixels = translate_tiled(self._net32, forward32, pad, item.pixels, plan, self.config.output_nc)
        except BadOutputError as exc:  # a tile's output broke the promises: the image fails
            return TranslateResult(key, None, exc, 0.0, plan)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            width, height = item.size
            message = (
                f"out of memory translating a {width}x{height} image in {plan.tile_width}x{plan.tile_height} tiles"
            )
            return TranslateResult(key, None, ImageError(message, hint="try a smaller --tile"), 0.0, plan)
        image = from_model_output(pixels, item.alpha, item.icc_profile)
        return TranslateResult(key, image, None, time.perf_counter() - start, plan, engine="torch")  # tiles: PyTorch


def _resolve(model: str | os.PathLike[str], direction: str | None = None) -> Path:
    from img2img.hub.registry import resolve_model

    return resolve_model(os.fspath(model), direction=direction)


def _is_onnx(path: os.PathLike[str] | str | None) -> bool:
    return path is not None and Path(path).suffix.lower() == ".onnx"


def check_direction(
    metadata: WeightsMetadata,
    direction: str | None,
    path: os.PathLike[str] | str,
    *,
    given: os.PathLike[str] | str | None = None,
) -> None:
    """A UsageError when the user asks for a direction the weights do not map. ``given``: the
    file the user named, when ``path`` is its conversion (a reference checkpoint)."""
    if direction is None or direction == metadata.direction:
        return
    from img2img.hub.registry import reference_direction

    named = Path(os.fspath(given)) if given is not None else None
    if named is None or named.resolve() == Path(path).resolve() or not named.is_file():
        named = None
    if named is not None and reference_direction(named):
        partner = re.sub(r"G_[AB]$", "G_A" if direction == "AtoB" else "G_B", named.stem) + named.suffix
        hint = (
            f"its name says it is the reference CycleGAN's {named.stem[-3:]} generator; "
            f"{partner} maps {direction}, or leave out --direction"
        )
    elif metadata.task == "pix2pix":  # no file for the other direction exists anywhere
        hint = (
            f"a pix2pix run trains one direction only: {direction} needs a run of its own "
            f"(img2img train pix2pix --direction {direction}), or leave out --direction"
        )
    elif metadata.task == "cyclegan":
        hint = (
            f"a cyclegan run exports one weights file per direction; pass the {direction} file "
            f"(weights/cyclegan_{direction}.safetensors of the run), or leave out --direction"
        )
    else:
        hint = f"these weights map {metadata.direction} only; leave out --direction"
    path = named if named is not None else path
    raise UsageError(f"{path} maps {metadata.direction}, not {direction}", hint=hint)


__all__ = [
    "BadOutputError",
    "NonFiniteOutputError",
    "check_output",
    "PRECISIONS",
    "Padding",
    "TranslateResult",
    "Translator",
    "check_direction",
    "cpu_has_native_bf16",
    "default_channels_last",
    "minimum_size",
    "smallest_side",
    "valid_side_near",
    "pad_to_multiple",
    "padded_size",
    "resolve_precision",
]
