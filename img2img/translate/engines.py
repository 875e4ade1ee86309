"""Which library runs a generator's forward pass in translate: PyTorch or onnxruntime.

    engine = resolve_engine("auto", device, dtype, has_file=True)   # -> Engine("onnxruntime", why)
    onnx_path = cached_export(weights_path)                          # exported once, then reused

``--engine auto`` (the default) is chosen by measurement, per CPU class (img2img.runtime.devices.cpu_class,
which ``$IMG2IMG_CPU_CLASS`` overrides) and architecture (README "Speed",
``benchmarks/bench_engine.py``): on CPUs without native bfloat16 (AVX2, and AVX-512 without
BF16, whose defaults follow AVX2's) the network computes in float32, and onnxruntime's CPU
kernels ran whole `translate` runs of ResNet generators (CycleGAN's) 0.80-0.88x PyTorch's time
per image; for U-Net generators (pix2pix's) the gain was 2-8 %, within the noise, against an
export of about 10 s and a slower start (the larger session), so they stay in PyTorch. A ResNet
generator's float32 forward on such a CPU therefore goes to onnxruntime when the
``img2img[onnx]`` extra is installed, **whatever the number of images in the job** (issue #23:
the same input, model, options and CPU class give the same bytes alone or in any batch). The
export is paid once per weights file, by the first job that needs it, and then read from the
cache: measured for photo2night and one 600x400 photo on a busy AVX2 machine (load 15-27 on 2
cores), a first job took 44-48 s against 23-29 s for PyTorch, a job with the export cached
25-28 s, the same as PyTorch's within the noise. Only a job with nothing to translate
(``expected_images=0``) exports nothing. Everywhere else -- CUDA, MPS, CPUs with native bf16
(where PyTorch's bf16 path is the fastest measured), lower precisions asked for explicitly,
U-Nets, an in-memory network without a weights file -- PyTorch runs it.

The ONNX model is the one ``img2img export --opset 17`` writes (same parity check against
PyTorch: max |difference| <= 1e-3 in [-1, 1], an eighth of a grey level), made on first use and
kept in the cache, ``$IMG2IMG_CACHE/onnx/`` (default ``~/.cache/img2img/onnx``), under a name
holding the SHA-256 of the weights file: changed weights never reuse a stale export, and the
export is paid once per weights file (seconds; README "ONNX speed and export cost"). The cache
is input like any file: a copy is used only if its bytes match the digest recorded beside it when
it was written, its graph and metadata are this weights file's, and it matches PyTorch on two
probes of different sizes (``check_cached_copy``); otherwise it is exported again, with a note.
That guards against damage and stale or misplaced entries, not against someone who can write the
cache (and so the digest): whatever computes an image, its output is checked before it is written
(img2img.translate.translator.check_output). With ``auto``, an export or a cached file that fails is a note
on stderr and PyTorch runs instead; with ``--engine onnxruntime`` it is an error.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from img2img.errors import (
    ExportError,
    Img2ImgError,
    MissingExtraError,
    OutputError,
    UsageError,
    WeightsError,
    first_line,
)
from img2img.runtime.devices import cpu_class

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnxruntime")
ENV_ENGINE = "IMG2IMG_ENGINE"
# The CPU classes (img2img.runtime.devices.cpu_class) where onnxruntime's fp32 beat PyTorch's fp32 when
# measured (AVX2); AVX-512 without BF16 follows AVX2 as the other speed defaults do.
ONNXRUNTIME_CPU_CLASSES = ("avx2", "avx512")
# The generator architectures (GeneratorConfig.arch) onnxruntime ran measurably faster in whole
# runs on those CPUs (benchmarks/bench_engine.py).
ONNXRUNTIME_ARCHS = ("resnet",)
# Bumped when the way translate's ONNX copies are made changes, so older copies are not reused.
# 2: the copy records its weights file's SHA-256, and a sidecar records the copy's own digest.
CACHE_FORMAT = 2
DIGEST_SUFFIX = ".sha256"
# The copies are made by torch's TorchScript exporter (opset 17), which `img2img export` uses for
# opsets below 18: measured 5-8x faster to export than the dynamo exporter (resnet_9blocks 1.2 s
# against 9.3 s, unet_256 5.3 s against 14.7 s, AVX2 CPU, idle), and onnxruntime ran both graphs
# at the same speed with identical outputs (max difference 0.0). The dynamo exporter is the
# fallback where the TorchScript one fails.
CACHE_OPSET = 17
EXTRA_MODULES = ("onnx", "onnxscript", "onnxruntime")
EXTRA_HINT = 'pip install "img2img[onnx]"'


@dataclass(frozen=True)
class Engine:
    """The engine chosen ("torch" or "onnxruntime") and why, in a few words for --json/--debug."""

    name: str
    reason: str


def has_onnx_extra() -> bool:
    """Whether the img2img[onnx] extra is installed (found, not imported: importing onnxruntime
    and onnxscript costs about a second, which a PyTorch run should not pay)."""
    return all(importlib.util.find_spec(name) is not None for name in EXTRA_MODULES)


def resolve_engine(
    engine: str,
    device: torch.device,
    dtype: torch.dtype,
    *,
    weights: str | os.PathLike[str] | None,
    expected_images: int | None = None,
    arch: str,
    asked_as: str = "--engine onnxruntime",
) -> Engine:
    """The engine for ``--engine`` on ``device`` computing in ``dtype``. ``weights``: the model's
    weights file (None for an in-memory network, which cannot be exported and cached);
    ``expected_images``: how many images the run has (None: unknown); only 0 (nothing to
    translate) changes the choice, so that no job's size decides an image's bytes; ``arch``: the generator's architecture
    ("resnet" or "unet"); ``asked_as``: how the user asked for onnxruntime, for the errors
    (the option, or ``IMG2IMG_ENGINE=onnxruntime`` when the environment set it).

    Raises UsageError for an unknown name or an explicit 'onnxruntime' that cannot apply (a
    device other than the CPU, a precision other than fp32, no weights file) and
    MissingExtraError when 'onnxruntime' is asked for without the onnx extra."""
    engine = (engine or "auto").strip().lower()
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    if engine == "torch":
        return Engine("torch", "asked for")
    if engine == "onnxruntime":
        if device.type != "cpu":
            raise UsageError(
                f"{asked_as} runs on the CPU only, not {device}",
                hint="use --device cpu, or translate an exported .onnx model (img2img export)",
            )
        if dtype != torch.float32:
            raise UsageError(f"{asked_as} runs in float32", hint="use --precision fp32 or auto")
        if weights is None:
            raise UsageError(f"{asked_as} needs a weights file (an in-memory network is not exported)")
        if not has_onnx_extra():
            raise MissingExtraError(f"{asked_as} needs the onnx extra", hint=EXTRA_HINT)
        return Engine("onnxruntime", "asked for")
    # auto
    if device.type != "cpu":
        return Engine("torch", f"device {device.type}")
    if dtype != torch.float32:
        return Engine("torch", f"precision {str(dtype).removeprefix('torch.')}")
    cls = cpu_class()
    if cls not in ONNXRUNTIME_CPU_CLASSES:
        return Engine("torch", f"CPU class {cls}")
    if arch not in ONNXRUNTIME_ARCHS:
        return Engine("torch", f"{arch} generator (onnxruntime measured no faster)")
    if weights is None:
        return Engine("torch", "no weights file")
    if not has_onnx_extra():
        return Engine("torch", "onnx extra not installed")
    if expected_images == 0:
        return Engine("torch", "nothing to translate (no export)")
    return Engine("onnxruntime", f"fp32 on a {cls} CPU")


def engine_from_environment(default: str = "auto") -> str:
    """``$IMG2IMG_ENGINE`` when set (a pipeline can pin one engine for every process), else
    ``default``. UsageError naming the variable when it holds no engine's name, whatever the
    model (an ONNX model ignores the value, but a typo must not pass unseen)."""
    value = os.environ.get(ENV_ENGINE, "").strip()
    if value and value.lower() not in ENGINES:
        raise UsageError(f"{ENV_ENGINE}={value!r} is no engine; valid: {', '.join(ENGINES)}")
    return value or default


def onnx_cache_dir() -> Path:
    """Where translate keeps the ONNX copies of weights files: ``<img2img cache>/onnx``."""
    from img2img.files.cache import cache_dir

    return cache_dir() / "onnx"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_export_path(weights: str | os.PathLike[str], *, sha256: str | None = None) -> Path:
    """The cache file for the ONNX copy of ``weights`` (named by its contents' SHA-256, which
    ``sha256`` gives when the caller has it)."""
    return onnx_cache_dir() / f"{(sha256 or file_sha256(weights))[:32]}-v{CACHE_FORMAT}.onnx"


def digest_path(copy: Path) -> Path:
    """The sidecar holding the SHA-256 of the ONNX copy ``copy`` as img2img wrote it."""
    return copy.with_name(copy.name + DIGEST_SUFFIX)


def cached_export(weights: str | os.PathLike[str], *, refresh: bool = False, sha256: str | None = None) -> Path:
    """The ONNX copy of the weights file ``weights``, exported and parity-checked by
    img2img.onnx.export on first use (or when ``refresh``), else read from the cache. The copy
    records the weights' SHA-256 (``sha256``, computed when not given) in its metadata, and a
    sidecar (``digest_path``) records the copy's own SHA-256, which ``open_onnx_engine`` checks.
    The file appears atomically, so processes exporting the same weights at once (shards, Ray
    actors) each find a whole file. Raises ExportError/MissingExtraError, or OutputError (the
    cache folder cannot be made or written: read-only, full, a file in the way), when it cannot
    be made."""
    from img2img.files.atomic import atomic_write_bytes
    from img2img.hub.registry import remove_stale_cache_temporaries
    from img2img.onnx.runtime import WEIGHTS_SHA256_KEY

    sha256 = sha256 or file_sha256(weights)
    target = cached_export_path(weights, sha256=sha256)
    # Exports killed by SIGKILL leave their temporaries (up to the model's size) behind; the
    # next export into the folder would remove them, but a cache that holds the file never has one.
    remove_stale_cache_temporaries()
    if target.is_file() and not refresh:
        return target
    from img2img.onnx.export import export_onnx

    _make_cache_folder(target.parent)
    log.warning(
        "exporting %s to ONNX for onnxruntime, once per weights file; kept in %s (--engine torch skips this)",
        Path(weights).name,
        target.parent,
    )
    recorded = {WEIGHTS_SHA256_KEY: sha256}
    try:
        try:
            export_onnx(weights, target, opset=CACHE_OPSET, extra_metadata=recorded)
        except Exception as exc:  # e.g. a torch without the TorchScript exporter
            _stop_if_signalled()
            if not isinstance(exc, ExportError):
                raise
            log.debug("opset %s export failed (%s); trying torch's default exporter", CACHE_OPSET, exc)
            export_onnx(weights, target, extra_metadata=recorded)
        # After the copy: a reader that finds the copy before its sidecar exports it again
        # (a wasted export, never a wrong one).
        atomic_write_bytes(digest_path(target), (file_sha256(target) + "\n").encode("ascii"))
    except Exception:
        _stop_if_signalled()
        raise
    _stop_if_signalled()
    return target


def _make_cache_folder(folder: Path) -> None:
    # Without this, a read-only or full cache, or a file where the folder should be, was an
    # unexpected error ("OSError: [Errno 30] ...", a hint to run with --debug).
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocked = isinstance(exc, (FileExistsError, NotADirectoryError))
        reason = "a file is in the way" if blocked else exc.strerror or str(exc)
        raise OutputError(
            f"{folder}: cannot make the ONNX cache folder ({reason})",
            hint="set IMG2IMG_CACHE to a writable folder, or use --engine torch",
        ) from None


def _stop_if_signalled() -> None:
    # torch's exporters trace the network in C++, which turns the Interrupted a stop signal
    # raises (img2img.runtime.signals) into another error or loses it: Ctrl-C during an export
    # would be a fallback to PyTorch, or nothing at all. The CLI's record of the signal decides.
    from img2img.runtime.signals import raise_if_received

    raise_if_received()


def open_onnx_engine(
    weights: str | os.PathLike[str],
    *,
    required: bool,
    reference: Callable[[torch.Tensor], torch.Tensor] | None = None,
):
    """An OnnxGenerator (img2img.onnx.runtime) running the cached ONNX copy of ``weights`` on the
    CPU, checked before it is used (``check_cached_copy``): its bytes against the digest
    recorded when it was written, its graph and metadata against the weights file, and, with
    ``reference`` (the PyTorch network of ``weights``: (N, C, H, W) float32 in [-1, 1] -> the
    same), its outputs against PyTorch's on two random inputs of different sizes and aspects.
    A copy that fails any of them (truncated, damaged, from another version, another model's,
    planted) is exported again once, with a note. When ``required`` is False, any failure is a
    note and None (PyTorch runs the model); when True it is raised.

    What this guards against: accidental damage and stale or misplaced entries. Whoever can
    write the cache can also write a matching sidecar and a graph that computes the right thing
    on the probes only; against that, every output is still checked for its shape, channels,
    dtype, range and finiteness (img2img.translate.translator.check_output), and ``--engine torch`` does
    not read the cache at all."""
    from img2img.onnx.runtime import OnnxGenerator

    try:
        sha256 = file_sha256(weights)
        path = cached_export(weights, sha256=sha256)
        try:
            generator = OnnxGenerator(path, device="cpu")
            check_cached_copy(generator, weights, sha256, reference)
            return generator
        except WeightsError as exc:  # the file; a missing extra or a signal is no reason to export
            log.warning(
                "the cached ONNX copy of %s is unusable (%s); exporting it again", Path(weights).name, first_line(exc)
            )
            return OnnxGenerator(cached_export(weights, refresh=True, sha256=sha256), device="cpu")
    except (Img2ImgError, OSError) as exc:
        if required:
            raise
        log.warning("onnxruntime cannot run %s (%s); PyTorch runs it", Path(weights).name, first_line(exc))
        return None


def check_cached_copy(
    generator,
    weights: str | os.PathLike[str],
    sha256: str,
    reference: Callable[[torch.Tensor], torch.Tensor] | None,
) -> None:
    """WeightsError unless the OnnxGenerator ``generator`` is the copy img2img exported from the
    weights file ``weights`` (SHA-256 ``sha256``): the file's digest is the one its sidecar
    recorded; its one input is "input" and its one output "output" (the exporter's names); its
    metadata is the weights' own (the img2img JSON, the weights' SHA-256); and, with
    ``reference``, it computes what ``reference`` does (max |difference| <=
    img2img.onnx.export.DEFAULT_TOLERANCE) on two random inputs: the smallest square the
    export's parity check uses and a batch of 2 of another, non-square size. A few
    milliseconds for the probes, and the copy's hash (about 0.1 s per 50 MB)."""
    from img2img.models.weights import METADATA_KEY, read_metadata
    from img2img.onnx.export import DEFAULT_TOLERANCE, INPUT_NAME, OUTPUT_NAME, probe_side
    from img2img.onnx.runtime import WEIGHTS_SHA256_KEY

    path = Path(generator.path)
    try:
        recorded = digest_path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        recorded = None
    if recorded is None:
        raise WeightsError(
            f"{path}: no record of its digest ({digest_path(path).name}); not known to be img2img's copy"
        )
    if file_sha256(path) != recorded:
        raise WeightsError(f"{path}: its bytes differ from those img2img wrote (digest mismatch); damaged or replaced")
    inputs, outputs = generator.session.get_inputs(), generator.session.get_outputs()
    names = ([i.name for i in inputs], [o.name for o in outputs])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise WeightsError(f"{path}: its graph's inputs and outputs are {names}, not the exporter's")
    if generator.properties.get(WEIGHTS_SHA256_KEY) != sha256:
        raise WeightsError(f"{path}: made from other weights than {Path(weights).name} (its recorded SHA-256 differs)")
    if generator.properties.get(METADATA_KEY) != read_metadata(weights).to_json():
        raise WeightsError(f"{path}: its img2img metadata is not {Path(weights).name}'s")
    if reference is None:
        return
    cfg = generator.metadata.generator
    unit, step = probe_side(cfg), cfg.size_multiple
    probes = torch.Generator().manual_seed(0)
    for shape in ((1, cfg.input_nc, unit, unit), (2, cfg.input_nc, unit + step, 2 * unit + 3 * step)):
        x = torch.rand(shape, generator=probes) * 2 - 1
        got, expected = generator(x), reference(x)
        same_shape = isinstance(got, torch.Tensor) and got.shape == expected.shape
        difference = float((got.float() - expected).abs().max()) if same_shape else math.inf
        if not difference <= DEFAULT_TOLERANCE:  # `not <=` so that NaN fails too
            raise WeightsError(
                f"{path}: computes something else than {Path(weights).name} on a {shape[3]}x{shape[2]} "
                f"input (max difference {difference:.3g} > {DEFAULT_TOLERANCE:g}); damaged or not its export"
            )


__all__ = [
    "CACHE_FORMAT",
    "ENGINES",
    "ENV_ENGINE",
    "ONNXRUNTIME_CPU_CLASSES",
    "ONNXRUNTIME_ARCHS",
    "Engine",
    "cached_export",
    "cached_export_path",
    "check_cached_copy",
    "digest_path",
    "engine_from_environment",
    "file_sha256",
    "has_onnx_extra",
    "onnx_cache_dir",
    "open_onnx_engine",
    "resolve_engine",
]
