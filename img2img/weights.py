"""The weights format: a generator's state dict in safetensors, with its config in the metadata.

Tensors keep the reference implementation's key names, so a converted ``latest_net_G.pth`` and a
network trained here give the same keys. The ``img2img`` metadata entry is one JSON string that
holds everything needed to rebuild the network, so loading needs no architecture options.
"""

from __future__ import annotations

import json
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
from img2img.atomic import atomic_path
from img2img.config import GeneratorConfig
from img2img.errors import Img2ImgError, WeightsError
from img2img.networks import build_generator, count_parameters, use_per_image_batch_norm

SCHEMA_VERSION = 1
METADATA_KEY = "img2img"
DIRECTIONS = ("AtoB", "BtoA")


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
        try:
            data = json.loads(text)
            schema = int(data.get("schema", 0))
        except (ValueError, TypeError, AttributeError) as exc:
            raise WeightsError(f"{path}: the img2img metadata is not valid JSON ({exc})") from None
        if schema > SCHEMA_VERSION:
            raise WeightsError(
                f"{path}: weights schema {schema} is newer than this img2img understands "
                f"({SCHEMA_VERSION})",
                hint="upgrade img2img",
            )
        try:
            generator = GeneratorConfig.from_dict(data["generator"])
            return cls(
                generator=generator,
                task=str(data.get("task", "cyclegan")),
                direction=str(data.get("direction", "AtoB")),
                preprocess=dict(data.get("preprocess") or {}),
                eval_mode=bool(data.get("eval_mode", True)),
                source=str(data.get("source", "unknown")),
                img2img_version=str(data.get("img2img_version", "unknown")),
                schema=schema,
                validation=data.get("validation") if isinstance(data.get("validation"), dict) else None,
            )
        except (KeyError, TypeError, Img2ImgError) as exc:
            raise WeightsError(f"{path}: the img2img metadata does not describe a generator ({exc})") from None


@dataclass
class LoadedGenerator:
    net: nn.Module
    metadata: WeightsMetadata
    path: Path


def save_generator(
    path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor], metadata: WeightsMetadata
) -> None:
    """Write ``state_dict`` (reference key names) and ``metadata`` atomically to ``path``."""
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt", METADATA_KEY: metadata.to_json()})


def read_metadata(path: str | os.PathLike[str]) -> WeightsMetadata:
    with _open_safetensors(path, "cpu") as handle:
        return _metadata_of(handle, path)


def load_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedGenerator:
    """Rebuild the generator that ``path`` describes, with its weights put straight on ``device``,
    ready for inference (dropout off; batch norm as the metadata says)."""
    device = torch.device(device)
    with _open_safetensors(path, device) as handle:
        metadata = _metadata_of(handle, path)
        state_dict = {key: handle.get_tensor(key) for key in handle.keys()}
    with torch.device("meta"):
        net = build_generator(metadata.generator)
    check_state_dict(state_dict, net, path)
    net.load_state_dict(state_dict, strict=True, assign=True)
    net.eval()
    if not metadata.eval_mode:
        use_per_image_batch_norm(net)
    return LoadedGenerator(net=net, metadata=metadata, path=Path(path))


def check_state_dict(
    state_dict: Mapping[str, torch.Tensor], net: nn.Module, path: str | os.PathLike[str]
) -> None:
    """Raise a WeightsError that says what differs when ``state_dict`` does not fit ``net``."""
    expected = net.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state_dict[key].shape)} != {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)
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
            hint="check the architecture options (--arch, --ngf, --norm, --input-nc, --output-nc)",
        )


# --- reference checkpoints ------------------------------------------------------------------


def load_reference_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a reference ``.pth`` state dict without running any code it may contain."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
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
        raise WeightsError(
            f"{path}: not a readable PyTorch checkpoint (safe loader: {reason})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise WeightsError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    return dict(loaded)


def clean_reference_state_dict(
    state_dict: Mapping[str, torch.Tensor], net: nn.Module
) -> dict[str, torch.Tensor]:
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
    metadata: WeightsMetadata,
) -> WeightsMetadata:
    """Convert the reference's ``latest_net_G.pth`` into the weights format, checking every
    tensor against the architecture in ``metadata``."""
    state_dict = load_reference_state_dict(checkpoint)
    net = build_generator(metadata.generator)
    state_dict = clean_reference_state_dict(state_dict, net)
    check_state_dict(state_dict, net, checkpoint)
    save_generator(output, state_dict, metadata)
    return metadata


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``models info`` shows about a weights file."""
    metadata = read_metadata(path)
    with _open_safetensors(path, "cpu") as handle:
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
        raise WeightsError(f"{path}: no such file")
    try:
        return safe_open(str(path), framework="pt", device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        hint = "a reference .pth checkpoint needs `img2img convert` first" if path.suffix in (".pth", ".pt") else None
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(exc)})", hint=hint) from None


def _metadata_of(handle: Any, path: str | os.PathLike[str]) -> WeightsMetadata:
    raw = (handle.metadata() or {}).get(METADATA_KEY)
    if raw is None:
        raise WeightsError(
            f"{path}: safetensors file has no img2img metadata, so its architecture is unknown",
            hint="convert the original checkpoint with `img2img convert ... --arch ...`",
        )
    return WeightsMetadata.from_json(raw, path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "DIRECTIONS",
    "LoadedGenerator",
    "WeightsMetadata",
    "check_state_dict",
    "clean_reference_state_dict",
    "convert_reference_checkpoint",
    "count_parameters",
    "describe",
    "load_generator",
    "load_reference_state_dict",
    "read_metadata",
    "save_generator",
]
