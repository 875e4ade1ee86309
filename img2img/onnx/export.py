"""`img2img export`: a generator as a self-describing ONNX model, checked against PyTorch.

    result = export_onnx("photo2night", "night.onnx")          # any model translate accepts
    result.parity                                              # [ParityCheck(shape, max_abs_diff)]

The network is the one translate runs (loaded by ``img2img.hub.registry.load_model``, in float32,
dropout off, batch norm as the weights' metadata says): a pix2pix model trained at batch size 1
normalises each image by its own statistics (``PerImageBatchNorm``), and instance norm is
instance norm; both become ONNX ``InstanceNormalization`` nodes, so an image's output never
depends on the other images of its batch.

Exporters (both tried on ResNet and U-Net generators, batch and instance norm; both give the same
outputs, to ~1e-6): the default is torch's ``torch.export``-based exporter (``dynamo=True``), for
three reasons. Its input shape states the size multiple the network needs (``4*h``, ``256*w``:
``torch.export.Dim`` derived dimensions), which the TorchScript exporter cannot express; its
graph is the plain network (Pad/Conv/InstanceNormalization/ConvTranspose, 35 nodes for a
2-block ResNet) where the TorchScript exporter wraps every reflection pad in
Reshape/Transpose/Slice/Cast scaffolding (149 nodes); and it is the exporter torch maintains.
It writes opset 18 or newer only, so an older ``opset`` (for older runtimes) is exported by
the TorchScript exporter (``dynamo=False``, ``dynamic_axes``), which handles the same layers.

Parity: the written file is loaded by onnxruntime and run on random inputs of two sizes the export
never saw (one of them a batch of 2 images with different statistics), and compared with the
PyTorch network; a maximum absolute difference above ``DEFAULT_TOLERANCE`` fails the export and
no file is left (the file is written under a temporary name and renamed only after the check).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from img2img.errors import ExportError, Img2ImgError, OutputError, UsageError, first_line
from img2img.files.atomic import atomic_path
from img2img.hub.registry import load_model
from img2img.models.config import GeneratorConfig, minimum_size, smallest_side, valid_side_near
from img2img.models.weights import METADATA_KEY
from img2img.onnx.quantize import (
    DEFAULT_CALIBRATION_COUNT,
    INT8_STATIC,
    QUANTIZE_CHOICES,
    quantization_images,
    quantize_checked,
)
from img2img.onnx.runtime import (
    INPUT_CHANNELS_KEY,
    INPUT_RANGE_KEY,
    LAYOUT_KEY,
    MINIMUM_SIZE_KEY,
    OUTPUT_CHANNELS_KEY,
    OUTPUT_RANGE_KEY,
    PIXELS_KEY,
    SIZE_MULTIPLE_KEY,
    STATIC_SIZE_KEY,
    channel_order,
    import_extra,
    is_onnx_file,
    session_options,
)

log = logging.getLogger(__name__)

# Outputs are in [-1, 1] and become 8-bit pixels as round((y + 1) * 127.5): 1e-3 is an eighth
# of a grey level, so a model within it writes the same image up to rare off-by-one roundings.
# fp32 onnxruntime vs fp32 PyTorch differ by ~1e-6 on these networks.
DEFAULT_TOLERANCE = 1e-3
# The lowest opset torch's dynamo exporter writes; below it, the TorchScript exporter.
DYNAMO_MIN_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "output"


@dataclass(frozen=True)
class ParityCheck:
    """One comparison: the input's shape (N, C, H, W) and max |onnxruntime - PyTorch|."""

    shape: tuple[int, ...]
    max_abs_diff: float


@dataclass
class ExportResult:
    """What ``export_onnx`` wrote: the file, its opset, the exporter ("dynamo" or "torchscript"),
    the input shape as the graph states it, the parity checks (empty with check=False), the
    export's wall time in seconds (without the check) and the file's size in bytes."""

    path: Path
    opset: int
    exporter: str
    input_shape: list[int | str]
    parity: list[ParityCheck] = field(default_factory=list)
    seconds: float = 0.0
    size_bytes: int = 0
    quantization: str | None = None
    psnr_db: float | None = None


def parse_static_size(text: str) -> tuple[int, int]:
    """'256x512' -> (256, 512) as (height, width); UsageError otherwise."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise UsageError(f"--static takes HEIGHTxWIDTH in pixels, e.g. 256x256, not {text!r}")
    return int(parts[0]), int(parts[1])


def check_static_size(size: tuple[int, int], cfg: GeneratorConfig) -> None:
    """UsageError unless the network runs on a (height, width) input as it is."""
    multiple, smallest = cfg.size_multiple, smallest_side(cfg)
    for side, value in zip(("height", "width"), size):
        if value % multiple or value < smallest:
            raise UsageError(
                f"--static {size[0]}x{size[1]}: the {side} must be a multiple of {multiple} and at "
                f"least {smallest} for {cfg.reference_name} (e.g. {valid_side_near(value, cfg)})"
            )


def onnx_metadata(metadata_json: str, cfg: GeneratorConfig, static: tuple[int, int] | None) -> dict[str, str]:
    """The metadata_props an export carries: the weights format's JSON and how to feed the model."""
    props = {
        METADATA_KEY: metadata_json,
        LAYOUT_KEY: "NCHW",
        INPUT_RANGE_KEY: "[-1, 1]",
        OUTPUT_RANGE_KEY: "[-1, 1]",
        INPUT_CHANNELS_KEY: channel_order(cfg.input_nc),
        OUTPUT_CHANNELS_KEY: channel_order(cfg.output_nc),
        SIZE_MULTIPLE_KEY: str(cfg.size_multiple),
        MINIMUM_SIZE_KEY: str(minimum_size(cfg)),
        PIXELS_KEY: "input = pixel / 127.5 - 1 (8-bit pixels); pixel = round((output + 1) * 127.5)",
    }
    if static is not None:
        props[STATIC_SIZE_KEY] = f"{static[0]}x{static[1]}"
    return props


def export_onnx(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    opset: int | None = None,
    static: tuple[int, int] | None = None,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    report: Callable[[str], None] | None = None,
    quantize: str | None = None,
    calibration: str | os.PathLike[str] | None = None,
    calibration_count: int | None = None,
    extra_metadata: dict[str, str] | None = None,
    replace: bool = True,
) -> ExportResult:
    """Export the generator ``model`` names (a weights file, a model name, ``hf:...``: whatever
    ``translate --model`` takes) to ONNX at ``output``.

    Batch, height and width are dynamic (height and width multiples of the network's size
    multiple) unless ``static`` = (height, width) fixes all three (batch 1). ``opset``: the ONNX
    opset (default: the exporter's). With ``check``, parity with PyTorch is checked as described
    in the module docstring; ``report`` receives one line per check. Raises UsageError (bad
    static size, an ONNX model as input), ExportError (the exporter failed, the opset could not
    be written, parity over ``tolerance``), WeightsError/ModelNotFoundError (the model),
    MissingExtraError (no onnx extra); on any error no file is left at ``output``.

    ``quantize="int8"`` quantises the checked fp32 model (img2img.onnx.quantize: static,
    QOperator, per-channel) with ``calibration_count`` images of the ``calibration`` folder (every
    other one held out), or procedural scenes without a folder, and keeps it only if its PSNR
    against fp32 on the held-out images reaches 35 dB (ExportError otherwise); ``tolerance``
    applies to the fp32 model, PSNR to the int8 one. ``extra_metadata``: more metadata_props
    (translate's cache records the weights file's SHA-256 there: img2img.translate.engines).

    ``replace=False``: a file at ``output`` when the export is moved into place (another process
    may have written it meanwhile) is left alone and FileExistsError raised (img2img.files.atomic)."""
    import_extra("onnx", "onnxscript", "onnxruntime")
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise UsageError(f"--quantize takes {', '.join(QUANTIZE_CHOICES)}, not {quantize!r}")
    if quantize is None and (calibration is not None or calibration_count is not None):
        raise UsageError("--calibration and --calibration-count need --quantize int8")
    report = report or (lambda line: None)
    loaded = load_model(model, "cpu")
    if is_onnx_file(loaded.path):
        raise UsageError(f"{loaded.path}: is already an ONNX model")
    cfg = loaded.metadata.generator
    if static is not None:
        check_static_size(static, cfg)
    net = loaded.net.float().eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    props = {**onnx_metadata(loaded.metadata.to_json(), cfg, static), **(extra_metadata or {})}
    if quantize is not None:  # read (and refuse) the images before the slow export
        images = quantization_images(calibration, cfg, static, calibration_count or DEFAULT_CALIBRATION_COUNT)

    with atomic_path(output, replace=replace) as tmp, _scratch_folder(quantize is not None) as scratch:
        # A quantised export keeps its fp32 and int8 models in a temporary folder (TMPDIR): the
        # fp32 one is parity-checked and quantised, the int8 one measured, then copied to output.
        fp32 = tmp if scratch is None else scratch / "fp32.onnx"
        with _scratch_errors(scratch):
            result = _export_checked(
                net, loaded.path, cfg, fp32, output, opset, static, check, tolerance, props, report
            )
            if quantize is not None:
                result.psnr_db = quantize_checked(fp32, scratch / "int8.onnx", props, *images, output, report)
                result.quantization = INT8_STATIC
        if scratch is not None:
            shutil.copyfile(scratch / "int8.onnx", tmp)
        result.size_bytes = tmp.stat().st_size
    return result


def _export_checked(
    net: torch.nn.Module,
    source: Path,
    cfg: GeneratorConfig,
    fp32: Path,
    output: str | os.PathLike[str],
    opset: int | None,
    static: tuple[int, int] | None,
    check: bool,
    tolerance: float,
    props: dict[str, str],
    report: Callable[[str], None],
) -> ExportResult:
    """Export ``net`` into ``fp32`` with ``props`` and check its parity (``export_onnx``)."""
    start = time.perf_counter()
    exporter = "dynamo" if opset is None or opset >= DYNAMO_MIN_OPSET else "torchscript"
    example = _example_input(cfg, static)
    try:
        if exporter == "dynamo":
            _export_dynamo(net, example, fp32, cfg, opset, static)
        else:
            _export_torchscript(net, example, fp32, opset, static)
    except (RuntimeError, ValueError, TypeError, torch.onnx.errors.OnnxExporterError) as exc:
        raise ExportError(f"{source}: the ONNX export failed ({first_line(exc)})") from None
    written_opset, input_shape = _finish(fp32, props, opset)
    seconds = time.perf_counter() - start
    result = ExportResult(Path(output), written_opset, exporter, input_shape, seconds=seconds)
    if check:
        result.parity = check_parity(net, fp32, cfg, static)
        for item in result.parity:
            n, _, h, w = item.shape
            report(f"parity: batch {n}, {h}x{w}: max abs diff {item.max_abs_diff:.2e} (tolerance {tolerance:g})")
        worst = max(result.parity, key=lambda item: item.max_abs_diff)
        if not worst.max_abs_diff <= tolerance:  # `not <=` so that NaN fails too
            raise ExportError(
                f"{output}: parity check failed: onnxruntime differs from PyTorch by "
                f"{worst.max_abs_diff:.3g} > {tolerance:g} (batch {worst.shape[0]}, "
                f"{worst.shape[2]}x{worst.shape[3]}); no file written",
                hint="--no-check writes it anyway",
            )
    return result


@contextlib.contextmanager
def _scratch_folder(needed: bool):
    """A temporary folder (in TMPDIR) for a quantised export's intermediate models, or None."""
    if not needed:
        yield None
        return
    with _scratch_errors(Path(tempfile.gettempdir()) / "img2img-export-*"):
        scratch = tempfile.TemporaryDirectory(prefix="img2img-export-")
    with scratch as folder:
        yield Path(folder)


@contextlib.contextmanager
def _scratch_errors(scratch: Path | None):
    """An OSError while the temporary folder ``scratch`` is written (full, read-only, over
    quota) is an OutputError naming that folder and TMPDIR, not the output: a full /tmp was
    blamed on an output file on a disk with 58 GB free."""
    if scratch is None:
        yield
        return
    try:
        yield
    except OSError as exc:
        if isinstance(exc, Img2ImgError):
            raise
        tmpdir = os.environ.get("TMPDIR")
        where = f"TMPDIR={tmpdir}" if tmpdir else "TMPDIR is not set"
        raise OutputError(
            f"{scratch.parent}: the temporary folder the export writes its intermediate models to "
            f"cannot be written ({exc.strerror or exc}; {where})",
            hint="free space there, or set TMPDIR to a folder with room for about three copies of the model",
        ) from None


def parity_shapes(cfg: GeneratorConfig, static: tuple[int, int] | None) -> list[tuple[int, int, int, int]]:
    """Input shapes the parity check runs: two sizes the export's example input does not have
    (one a batch of 2), or the static size twice (batch 1, different images)."""
    c = cfg.input_nc
    if static is not None:
        return [(1, c, *static), (1, c, *static)]
    unit = probe_side(cfg)
    step = cfg.size_multiple
    return [(2, c, unit, 2 * unit + step), (1, c, 3 * unit, unit)]


def check_parity(
    net: torch.nn.Module, path: str | os.PathLike[str], cfg: GeneratorConfig, static: tuple[int, int] | None
) -> list[ParityCheck]:
    """Run the ONNX file at ``path`` in a fresh onnxruntime CPU session and ``net`` in PyTorch
    (fp32) on the same random inputs in [-1, 1]; the images of a batch get different means and
    contrasts, so a batch statistic shared across images would show. Returns one ParityCheck
    per input (see ``parity_shapes``)."""
    (ort,) = import_extra("onnxruntime")
    session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    checks = []
    for shape in parity_shapes(cfg, static):
        x = torch.rand(shape, generator=generator) * 2 - 1
        for i in range(shape[0]):  # a different mean and contrast per image
            x[i] = (x[i] * (0.9 - 0.3 * i) + 0.1 * i - 0.05).clamp(-1, 1)
        with torch.inference_mode():
            expected = net(x).float()
        got = torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0])
        if got.shape != expected.shape:
            diff = math.inf
        else:
            diff = float((got - expected).abs().max())
        checks.append(ParityCheck(tuple(shape), diff))
    return checks


# --- the exporters -------------------------------------------------------------------------------


def probe_side(cfg: GeneratorConfig) -> int:
    """The side of the square image the parity checks run on: the smallest valid side (a
    multiple of the size multiple) that is at least 32 pixels, so every layer sees more than a
    pixel or two."""
    multiple = cfg.size_multiple
    return multiple * math.ceil(max(32, minimum_size(cfg)) / multiple)


def _example_input(cfg: GeneratorConfig, static: tuple[int, int] | None) -> torch.Tensor:
    if static is not None:
        return torch.zeros(1, cfg.input_nc, *static)
    # Batch 2 and sides of 2 and 3 units: torch.export specialises dimensions of size 0 or 1.
    unit = probe_side(cfg)
    return torch.rand(2, cfg.input_nc, 2 * unit, 3 * unit) * 2 - 1


def _export_dynamo(
    net: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    cfg: GeneratorConfig,
    opset: int | None,
    static: tuple[int, int] | None,
) -> None:
    from torch.export import Dim

    dynamic_shapes = None
    if static is None:
        multiple = cfg.size_multiple
        low = max(1, math.ceil(minimum_size(cfg) / multiple))
        height, width = Dim("h", min=low), Dim("w", min=low)
        # Derived dimensions: the graph's input shape reads (batch, C, 4*h, 4*w).
        dynamic_shapes = ({0: Dim("batch", min=1), 2: multiple * height, 3: multiple * width},)
    with _quiet_exporter():
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)


def _export_torchscript(
    net: torch.nn.Module, example: torch.Tensor, path: Path, opset: int | None, static: tuple[int, int] | None
) -> None:
    dynamic_axes = None
    if static is None:
        axes = {0: "batch", 2: "height", 3: "width"}
        dynamic_axes = {INPUT_NAME: axes, OUTPUT_NAME: axes}
    with _quiet_exporter():
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
        )


@contextlib.contextmanager
def _quiet_exporter():
    # The exporters print progress ("[torch.onnx] Obtain model graph...") and deprecation
    # warnings on stdout/stderr; export reports its own progress.
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _finish(path: Path, props: dict[str, str], opset: int | None) -> tuple[int, list[int | str]]:
    """Add img2img's metadata to the written model, check it, and return its opset and input
    shape. ExportError when the exporter wrote another opset than the one asked for."""
    (onnx,) = import_extra("onnx")
    model = onnx.load(str(path))
    written = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)
    if opset is not None and written != opset:
        raise ExportError(f"opset {opset} was asked for, but the exporter could only write opset {written}")
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    from img2img import __version__

    model.producer_name, model.producer_version = "img2img", __version__
    model.doc_string = (
        "img2img generator: input NCHW float32 in [-1, 1] (RGB or L, see metadata "
        "img2img.input_channels), output the same; metadata 'img2img' is the weights format's JSON."
    )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported model is not valid ONNX ({first_line(exc)})") from None
    onnx.save(model, str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [dim.dim_param if dim.dim_param else dim.dim_value for dim in dims]
    return written, shape


__all__ = [
    "probe_side",
    "DEFAULT_TOLERANCE",
    "DYNAMO_MIN_OPSET",
    "ExportResult",
    "ParityCheck",
    "check_parity",
    "check_static_size",
    "export_onnx",
    "onnx_metadata",
    "parity_shapes",
    "parse_static_size",
]
