"""The weights format: a generator's state dict in safetensors, with its config in the metadata.

Tensors keep the reference implementation's key names, so a converted ``latest_net_G.pth`` and a
network trained here give the same keys. The ``img2img`` metadata entry is one JSON string that
holds everything needed to rebuild the network, so loading needs no architecture options.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from img2img import __version__
from img2img.errors import Img2ImgError, WeightsError, first_line
from img2img.files import filetypes
from img2img.files.atomic import atomic_path
from img2img.models.config import GeneratorConfig, preprocess_problem
from img2img.models.networks import build_generator, count_parameters, use_per_image_batch_norm
from img2img.models.reference import (
    InferredGenerator,
    check_declared,
    infer_generator,
    strip_prefixes,
    what_object_is,
    with_options,
)

SCHEMA_VERSION = 1
METADATA_KEY = "img2img"
DIRECTIONS = ("AtoB", "BtoA")
TASKS = ("cyclegan", "pix2pix")


@dataclass(frozen=True)
class WeightsMetadata:
    generator: GeneratorConfig
    task: str = "cyclegan"
    direction: str = "AtoB"
    preprocess: Mapping[str, Any] = field(default_factory=dict)
    # True: batch norm uses its running statistics (model.eval()). False: each image is
    # normalised with its own statistics, as in training at batch size 1. Dropout is always off.
    eval_mode: bool = True
    source: str = "trained"
    img2img_version: str = __version__
    schema: int = SCHEMA_VERSION
    # Validation scores of the epoch these weights come from (``--val-metrics``): epoch, and per
    # direction the scores with their settings and sample counts, as ``img2img eval`` gives them.
    validation: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        # The same checks as reading a file, so that no file is written that would be refused.
        data = {
            "generator": {}, "task": self.task, "direction": self.direction,
            "eval_mode": self.eval_mode, "source": self.source,
            "img2img_version": self.img2img_version, "preprocess": dict(self.preprocess),
            "schema": self.schema, "validation": self.validation,
        }  # fmt: skip
        problem = _metadata_problem(data)
        if problem or not isinstance(self.generator, GeneratorConfig):
            raise WeightsError(f"invalid weights metadata: {problem or 'generator must be a GeneratorConfig'}")

    def to_json(self) -> str:
        extra = {"validation": self.validation} if self.validation else {}
        return json.dumps(
            {
                "schema": self.schema,
                "task": self.task,
                "direction": self.direction,
                "generator": self.generator.to_dict(),
                "preprocess": dict(self.preprocess),
                "eval_mode": self.eval_mode,
                "source": self.source,
                "img2img_version": self.img2img_version,
                **extra,
            }
        )

    @classmethod
    def from_json(cls, text: str, path: str | os.PathLike[str]) -> WeightsMetadata:
        """Parse and validate the metadata JSON: strict types (no "9" for 9 nor "false" for
        false), enums and ranges, all before any network is built. Raises WeightsError naming
        ``path`` and the offending field."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
            raise WeightsError(f"{path}: the img2img metadata is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise WeightsError(f"{path}: the img2img metadata is not a JSON object")
        schema = data.get("schema", 0)
        if not _is_int(schema):
            raise WeightsError(
                f"{path}: invalid img2img metadata: schema must be an integer (0 or more), got {schema!r}"
            )
        if schema > SCHEMA_VERSION:
            raise WeightsError(
                f"{path}: weights schema {schema} is newer than this img2img understands ({SCHEMA_VERSION})",
                hint="upgrade img2img",
            )
        problem = _metadata_problem(data)
        if problem:
            raise WeightsError(f"{path}: invalid img2img metadata: {problem}")
        try:
            generator = GeneratorConfig.from_dict(data["generator"])
        except (TypeError, Img2ImgError) as exc:
            raise WeightsError(f"{path}: invalid img2img metadata: generator: {exc}") from None
        return cls(
            generator=generator,
            task=data.get("task", "cyclegan"),
            direction=data.get("direction", "AtoB"),
            preprocess=dict(data.get("preprocess") or {}),
            eval_mode=data.get("eval_mode", True),
            source=data.get("source", "unknown"),
            img2img_version=data.get("img2img_version", "unknown"),
            schema=schema,
            validation=data.get("validation"),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: Every top-level key of the metadata JSON (``to_json``); any other is refused, so that a
#: mistyped one (``eval_mod``) is not silently ignored.
METADATA_FIELDS = (
    "schema", "task", "direction", "generator", "preprocess", "eval_mode", "source",
    "img2img_version", "validation",
)  # fmt: skip


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metadata_problem(data: Mapping[str, Any]) -> str | None:
    """What is wrong with the metadata's fields (other than the generator's own), or None.

    Every field is checked, whether or not anything reads it: strict JSON types, enums and
    ranges. The problem names the field (``preprocess.crop_size``, ``validation.epoch``)."""
    unknown = sorted(set(data) - set(METADATA_FIELDS))
    if unknown:
        return f"unknown fields {', '.join(map(repr, unknown))} (valid: {', '.join(METADATA_FIELDS)})"
    try:
        problem = _non_finite_problem(data)
    except RecursionError:  # json.loads stops at its own depth, which a deeper caller may not reach
        problem = "fields nested too deep"
    if problem:
        return problem
    if "schema" in data and not (_is_int(data["schema"]) and data["schema"] >= 0):
        return f"schema must be an integer (0 or more), got {data['schema']!r}"
    if not isinstance(data.get("generator"), dict):
        return "generator must be a JSON object of architecture options"
    choices = {"task": TASKS, "direction": DIRECTIONS}
    for name, valid in choices.items():
        if name in data and data[name] not in valid:
            return f"{name} must be one of {', '.join(valid)}, got {data[name]!r}"
    if "eval_mode" in data and not isinstance(data["eval_mode"], bool):
        return f"eval_mode must be true or false, got {data['eval_mode']!r}"
    for name in ("source", "img2img_version"):
        if name in data and not isinstance(data[name], str):
            return f"{name} must be a string, got {data[name]!r}"
    problem = preprocess_problem(data.get("preprocess"))
    if problem:
        return problem
    return _validation_problem(data.get("validation"))


def _non_finite_problem(value: Any, where: str = "") -> str | None:
    """The first field, anywhere in the metadata (free-form settings included), that holds NaN or
    an infinity, or None. Python's json module reads and writes them, but they are no JSON: a
    file holding one is refused, and WeightsMetadata refuses to write one (img2img eval writes a
    score that is not finite as null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} must be a finite number or null, got {value!r}"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        problem = _non_finite_problem(item, f"{where}.{key}" if where else str(key))
        if problem:
            return problem
    return None


def _validation_problem(validation: Any) -> str | None:
    """What is wrong with the ``validation`` record (``--val-metrics``: ``{"epoch": N,
    "directions": {AtoB|BtoA: {"scores": {METRIC: {"value": x, "std": x, ...}}, "samples":
    {KIND: count}, "settings": {...}}}}``), or None."""
    if validation is None:
        return None
    if not isinstance(validation, dict):
        return f"validation must be a JSON object of scores, got {validation!r}"
    unknown = sorted(set(validation) - {"epoch", "directions"})
    if unknown:
        return f"validation has unknown keys {', '.join(map(repr, unknown))} (valid: epoch, directions)"
    epoch = validation.get("epoch", 1)
    if not (_is_int(epoch) and epoch >= 1):
        return f"validation.epoch must be an integer, at least 1, got {epoch!r}"
    directions = validation.get("directions", {})
    if not isinstance(directions, dict):
        return f"validation.directions must be a JSON object, got {directions!r}"
    for direction, record in directions.items():
        where = f"validation.directions.{direction}"
        if direction not in DIRECTIONS:
            return f"validation.directions has {direction!r}, not one of {', '.join(DIRECTIONS)}"
        if not isinstance(record, dict):
            return f"{where} must be a JSON object, got {record!r}"
        unknown = sorted(set(record) - {"scores", "samples", "settings"})
        if unknown:
            return f"{where} has unknown keys {', '.join(map(repr, unknown))} (valid: scores, samples, settings)"
        for part in ("scores", "samples", "settings"):
            if not isinstance(record.get(part, {}), dict):
                return f"{where}.{part} must be a JSON object, got {record[part]!r}"
        for metric, score in record.get("scores", {}).items():
            if not isinstance(score, dict):
                return f"{where}.scores.{metric} must be a JSON object, got {score!r}"
            for name in ("value", "std"):
                value = score.get(name)
                # null: not finite or not measured (img2img eval writes inf/nan as null)
                if value is not None and not _is_number(value):
                    return f"{where}.scores.{metric}.{name} must be a number or null, got {value!r}"
            if score.get("std") is not None and score["std"] < 0:
                return f"{where}.scores.{metric}.std must be 0 or more, or null, got {score['std']!r}"
        for kind, count in record.get("samples", {}).items():
            if not (_is_int(count) and count >= 0):
                return f"{where}.samples.{kind} must be a count (an integer, 0 or more), got {count!r}"
    return None


@dataclass
class LoadedGenerator:
    net: nn.Module
    metadata: WeightsMetadata
    path: Path


def save_generator(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, torch.Tensor],
    metadata: WeightsMetadata,
    *,
    replace: bool = True,
) -> None:
    """Write ``state_dict`` (reference key names) and ``metadata`` atomically to ``path``.
    ``replace=False``: raise FileExistsError if ``path`` exists when the file is moved into place.

        Raises WeightsError, writing nothing, when a tensor holds NaN or infinity (a diverged
        network is never exported)."""
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in state_dict.items()}
    check_finite(tensors, path, action="refusing to write")
    with atomic_path(path, replace=replace) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt", METADATA_KEY: metadata.to_json()})


def read_metadata(path: str | os.PathLike[str]) -> WeightsMetadata:
    """The validated img2img metadata of a weights file (no tensor is read)."""
    with _open_safetensors(path, "cpu") as handle:
        return _metadata_of(handle, path)


def load_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedGenerator:
    """Rebuild the generator that ``path`` describes, with its weights put straight on ``device``,
    ready for inference (dropout off; batch norm as the metadata says).

    Before any tensor is read or any layer built, the metadata is validated and the architecture
    it declares is compared with the tensors' names, shapes and dtypes in the file's header.
    Raises WeightsError naming the file: not a safetensors file (and what it is instead),
    invalid metadata, an architecture the tensors contradict, non-finite (NaN/inf) weights."""
    device = torch.device(device)
    with _open_safetensors(path, device) as handle:
        metadata = _metadata_of(handle, path)
        check_header(handle, metadata.generator, path)
        state_dict = {key: handle.get_tensor(key) for key in handle.keys()}
    check_finite(state_dict, path)
    # Half-precision or float64 weights (a converted fp16 checkpoint) compute in float32 like
    # the rest; the translator chooses its own precision.
    state_dict = {
        key: value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
        for key, value in state_dict.items()
    }
    with torch.device("meta"):
        net = build_generator(metadata.generator)
    check_state_dict(state_dict, net, path)
    net.load_state_dict(state_dict, strict=True, assign=True)
    net.eval()
    if not metadata.eval_mode:
        use_per_image_batch_norm(net)
    return LoadedGenerator(net=net, metadata=metadata, path=Path(path))


_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def check_header(handle: Any, declared: GeneratorConfig, path: str | os.PathLike[str]) -> None:
    """Compare the architecture ``declared`` with the tensor names, shapes and dtypes of an open
    safetensors file (its header only: nothing is read or allocated). Raises WeightsError."""
    shapes, dtypes = {}, {}
    for key in handle.keys():
        tensor_slice = handle.get_slice(key)
        shapes[key], dtypes[key] = tuple(tensor_slice.get_shape()), tensor_slice.get_dtype()
    try:
        inferred = infer_generator(shapes, path)
    except WeightsError:
        # Not a generator layout: say how it differs from the declared one (the declared config
        # passed the range checks, so building it on the meta device is cheap).
        with torch.device("meta"):
            check_state_dict(shapes, build_generator(declared), path)
        raise
    check_declared(declared, inferred, path)
    for key, dtype in dtypes.items():
        expected = ("I64",) if key.endswith("num_batches_tracked") else _FLOAT_DTYPES
        if dtype not in expected:
            raise WeightsError(f"{path}: tensor {key} has dtype {dtype}; expected {' or '.join(expected)}")


def find_non_finite(tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """{name: number of NaN or infinite values} for the floating-point tensors that have any."""
    found = {}
    for key, value in tensors.items():
        if value.is_floating_point():
            bad = int(value.numel() - torch.isfinite(value).sum().item())
            if bad:
                found[key] = bad
    return found


def check_finite(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str], *, action: str = "refused") -> None:
    """Raise WeightsError when a floating-point tensor holds NaN or infinity (a diverged
    training run): ``{path}: {action}: ...`` naming the first such tensor and how many there are.
    Training exports and conversions call this before writing, loading after reading."""
    found = find_non_finite(tensors)
    if found:
        first = next(iter(found))
        others = f" and {len(found) - 1} other tensors" if len(found) > 1 else ""
        raise WeightsError(
            f"{path}: {action}: tensor {first}{others} hold{'s' if not others else ''} NaN or "
            f"infinite values ({found[first]} in {first}); the network diverged or the file is "
            "corrupt"
        )


def check_state_dict(
    state_dict: Mapping[str, torch.Tensor | tuple[int, ...]],
    net: nn.Module,
    path: str | os.PathLike[str],
) -> None:
    """Raise a WeightsError that says what differs when ``state_dict`` (tensors, or their
    shapes) does not fit ``net``."""
    expected = net.state_dict()
    shapes = {key: tuple(getattr(value, "shape", value)) for key, value in state_dict.items()}
    missing = [key for key in expected if key not in shapes]
    unexpected = [key for key in shapes if key not in expected]
    wrong_shape = [
        f"{key} {shapes[key]} != {tuple(value.shape)}"
        for key, value in expected.items()
        if key in shapes and shapes[key] != tuple(value.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} of the wrong shape (e.g. {wrong_shape[0]})")
    if problems:
        raise WeightsError(
            f"{path}: tensors do not fit the architecture: {'; '.join(problems)}",
            hint="the file's architecture and its tensors disagree: a corrupt or hand-edited file?",
        )


# --- reference checkpoints ------------------------------------------------------------------


def load_reference_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a generator state dict without running any code the file may contain.

    Takes a reference ``.pth`` (``torch.save`` zip or legacy pickle, read by torch's
    weights-only unpickler; a ``{"state_dict": ...}`` wrapper is opened) or a plain safetensors
    state dict, whatever the file's name. Raises WeightsError naming the file and saying what it
    is when it is neither (an HTML page, a Git LFS pointer, an archive...) or holds something
    other than a state dict (an optimizer state, a training checkpoint, a pickle that imports
    code)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        kind = filetypes.sniff(path)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if kind == filetypes.SAFETENSORS:
        return _safetensors_state_dict(path)
    if kind not in filetypes.PYTORCH_KINDS:
        what, hint = filetypes.describe_kind(kind)
        raise WeightsError(f"{path}: looks like {what}, not a PyTorch checkpoint", hint=hint or None)
    try:
        with warnings.catch_warnings():
            # Old pickle protocols make torch warn; the weights-only unpickler still guards us.
            warnings.simplefilter("ignore", UserWarning)
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's weights-only unpickler names any global it will not import; anything else it
        # rejects is simply not a pickle.
        if forbidden := re.search(r"GLOBAL ([\w.]+)", str(exc)):
            raise WeightsError(
                f"{path}: refused: the file would import {forbidden[1]} (a pickle that could run "
                "code); only plain state dicts of tensors are loaded"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        reason = detail[1].strip() if detail else "not a pickle the safe loader accepts"
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint (safe loader: {reason})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if (
        isinstance(loaded, Mapping)
        and "state_dict" in loaded
        and isinstance(loaded["state_dict"], Mapping)
        and _is_tensor_dict(loaded["state_dict"])
    ):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not _is_tensor_dict(loaded):
        raise WeightsError(f"{path}: {what_object_is(loaded)}")
    return dict(loaded)


def _is_tensor_dict(value: Mapping[Any, Any]) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _safetensors_state_dict(path: Path) -> dict[str, torch.Tensor]:
    with _open_safetensors(path, "cpu") as handle:
        metadata = handle.metadata() or {}
        if METADATA_KEY in metadata:
            raise WeightsError(f"{path}: already an img2img weights file; use it as it is (translate --model {path})")
        if "img2img_checkpoint" in metadata:
            raise WeightsError(
                f"{path}: an img2img training checkpoint (for --resume), not a generator; its "
                "generators are exported to the run's weights/ folder"
            )
        return {key: handle.get_tensor(key) for key in handle.keys()}


def read_reference_checkpoint(
    path: str | os.PathLike[str], options: Mapping[str, Any] | None = None
) -> tuple[dict[str, torch.Tensor], InferredGenerator]:
    """A reference generator checkpoint's state dict (``module.`` prefixes removed) and the
    architecture read from its keys and shapes (see img2img.models.reference).

    ``options`` (GeneratorConfig field names, None = not given) may set what the tensors cannot
    decide; one that contradicts the tensors raises a WeightsError naming what the checkpoint
    holds."""
    state_dict = strip_prefixes(load_reference_state_dict(path))
    inferred = infer_generator({key: tuple(value.shape) for key, value in state_dict.items()}, path)
    if options:
        inferred = with_options(inferred, options, path)
    return state_dict, inferred


def metadata_for_reference(
    inferred: InferredGenerator,
    *,
    direction: str = "AtoB",
    eval_mode: bool | None = None,
    task: str | None = None,
    source: str = "converted from a reference checkpoint",
) -> WeightsMetadata:
    """Weights metadata for a converted reference generator. Defaults follow the reference:
    a U-Net is a pix2pix generator, a ResNet a CycleGAN one; batch norm is used with each
    image's own statistics (the reference's test.py runs pix2pix without --eval), other norms
    have no statistics to choose."""
    config = inferred.config
    return WeightsMetadata(
        generator=config,
        task=task or ("pix2pix" if config.arch == "unet" else "cyclegan"),
        direction=direction,
        eval_mode=eval_mode if eval_mode is not None else config.norm != "batch",
        source=source,
    )


def clean_reference_state_dict(state_dict: Mapping[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Strip DataParallel/DDP ``module.`` prefixes, drop the InstanceNorm running statistics
    that checkpoints from PyTorch < 0.4 carry (the reference patches them away the same way) and
    add the batch-norm counters that checkpoints older than PyTorch 0.4.1 lack."""
    cleaned = {}
    for key, value in state_dict.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        cleaned[key] = value
    instance_norms, batch_norms = set(), set()
    for name, module in net.named_modules():
        if isinstance(module, nn.InstanceNorm2d):
            instance_norms.add(name)
        elif isinstance(module, nn.BatchNorm2d):
            batch_norms.add(name)
    stale_suffixes = ("running_mean", "running_var", "num_batches_tracked")
    cleaned = {
        key: value
        for key, value in cleaned.items()
        if not (key.rsplit(".", 1)[0] in instance_norms and key.endswith(stale_suffixes))
    }
    # Batch norm gained num_batches_tracked in PyTorch 0.4.1; older checkpoints lack it and
    # torch itself fills it with 0 when loading them.
    for name in batch_norms:
        cleaned.setdefault(f"{name}.num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return cleaned


def convert_reference_checkpoint(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    metadata: WeightsMetadata | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    replace: bool = True,
    declared_by: str = "the architecture given is",
    **metadata_options: Any,
) -> WeightsMetadata:
    """Convert a reference generator checkpoint (``latest_net_G.pth``) into the weights format.

    The architecture is read from the checkpoint's keys and shapes. ``metadata`` (e.g. from a
    registry entry) must agree with it; without it, the metadata is made by
    ``metadata_for_reference`` from what was read, ``options`` (checked against the tensors) and
    ``metadata_options`` (direction, eval_mode, task, source). Every tensor is checked (shapes,
    NaN/inf) before anything is written, atomically. ``replace=False``: raise FileExistsError
    if ``output`` exists when it is written (see img2img.files.atomic). Raises WeightsError naming the
    checkpoint."""
    state_dict, inferred = read_reference_checkpoint(checkpoint, options)
    if metadata is None:
        metadata = metadata_for_reference(inferred, **metadata_options)
    else:
        check_declared(metadata.generator, inferred, checkpoint, declared_by=declared_by)
    with torch.device("meta"):
        net = build_generator(metadata.generator)
    state_dict = clean_reference_state_dict(state_dict, net)
    check_state_dict(state_dict, net, checkpoint)
    check_finite(state_dict, checkpoint)
    save_generator(output, state_dict, metadata, replace=replace)
    return metadata


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``models info`` shows about a weights file (validated as ``load_generator`` does,
    from the header alone)."""
    with _open_safetensors(path, "cpu") as handle:
        metadata = _metadata_of(handle, path)
        check_header(handle, metadata.generator, path)
        n_params = sum(
            _numel(handle.get_slice(key).get_shape())
            for key in handle.keys()
            if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))
        )
    return {
        "path": str(path),
        "architecture": metadata.generator.reference_name,
        "generator": metadata.generator.to_dict(),
        "parameters": n_params,
        "size_bytes": Path(path).stat().st_size,
        "task": metadata.task,
        "direction": metadata.direction,
        "eval_mode": metadata.eval_mode,
        "preprocess": dict(metadata.preprocess),
        "source": metadata.source,
        "img2img_version": metadata.img2img_version,
        **({"validation": _validation_summary(metadata.validation)} if metadata.validation else {}),
    }


def _validation_summary(validation: Mapping[str, Any]) -> dict[str, Any]:
    """The validation record, flattened for ``models info``: epoch, then metric[_direction]
    -> value (KID and IS as "mean ± std"); the full record stays in the file's metadata."""
    out: dict[str, Any] = {"epoch": validation.get("epoch")}
    directions = validation.get("directions") or {}
    for direction, result in directions.items():
        suffix = f"_{direction}" if len(directions) > 1 else ""
        for metric, score in (result.get("scores") or {}).items():
            value = score.get("value")
            text = "-" if value is None else f"{value:.6g}"
            if score.get("std") is not None and value is not None:
                text += f" ± {score['std']:.2g}"
            out[f"{metric}{suffix}"] = text
    return out


def _numel(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def _open_safetensors(path: str | os.PathLike[str], device: str | torch.device):
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        kind = filetypes.sniff(path)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if kind in filetypes.PYTORCH_KINDS:
        raise WeightsError(
            f"{path}: is a PyTorch checkpoint (pickle), not a safetensors weights file",
            hint="translate and convert read it as a reference checkpoint when it is named .pth: "
            f"rename it, or run `img2img convert {path} -o OUT.safetensors`"
            if path.suffix == ".safetensors"
            else f"run `img2img convert {path} -o OUT.safetensors`",
        )
    if kind != filetypes.SAFETENSORS:
        what, hint = filetypes.describe_kind(kind)
        raise WeightsError(f"{path}: looks like {what}, not a safetensors weights file", hint=hint or None)
    try:
        return safe_open(str(path), framework="pt", device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({first_line(exc)})") from None


def _metadata_of(handle: Any, path: str | os.PathLike[str]) -> WeightsMetadata:
    raw = (handle.metadata() or {}).get(METADATA_KEY)
    if raw is None:
        raise WeightsError(
            f"{path}: safetensors file has no img2img metadata, so its architecture is unknown",
            hint="convert the original checkpoint with `img2img convert CHECKPOINT.pth -o OUT.safetensors`",
        )
    return WeightsMetadata.from_json(raw, path)


__all__ = [
    "DIRECTIONS",
    "LoadedGenerator",
    "WeightsMetadata",
    "check_finite",
    "check_header",
    "check_state_dict",
    "clean_reference_state_dict",
    "convert_reference_checkpoint",
    "count_parameters",
    "describe",
    "load_generator",
    "find_non_finite",
    "load_reference_state_dict",
    "metadata_for_reference",
    "read_reference_checkpoint",
    "read_metadata",
    "save_generator",
]
