"""Training checkpoints: every state dict (networks, optimizers, schedulers, AMP scaler, a
trainer's extra state such as image pools) and the RNG states, in one safetensors file.

Nested state (``optimizer.state_dict()`` and the like) is flattened: tensors go into the file
under path-like names, everything else into a JSON metadata entry that records the structure.
Nothing is pickled, so loading runs no code. Files are written atomically (temporary file,
fsync, rename): the previous checkpoint stays valid until the new one is complete.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from img2img.errors import WeightsError, first_line
from img2img.files.atomic import atomic_path

CHECKPOINT_SCHEMA = 1
METADATA_KEY = "img2img_checkpoint"
_TENSOR, _TUPLE, _DICT = "__tensor__", "__tuple__", "__dict__"


# --- flattening -------------------------------------------------------------------------------


def pack(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Return a JSON-able description of ``obj``; its tensors are added to ``tensors`` under
    names that start with ``prefix``. Dicts with non-string keys and tuples keep their types."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu").contiguous().clone()
        return {_TENSOR: prefix}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: pack(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        return {_DICT: [[k, pack(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [pack(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [pack(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def unpack(desc: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The inverse of :func:`pack`."""
    if isinstance(desc, dict):
        if _TENSOR in desc:
            return tensors[desc[_TENSOR]]
        if _TUPLE in desc:
            return tuple(unpack(v, tensors) for v in desc[_TUPLE])
        if _DICT in desc:
            return {_key(k): unpack(v, tensors) for k, v in desc[_DICT]}
        return {k: unpack(v, tensors) for k, v in desc.items()}
    if isinstance(desc, list):
        return [unpack(v, tensors) for v in desc]
    return desc


def _key(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


# --- RNG states -------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and every CUDA device's generator state (tensors where binary)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].to(torch.uint8))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        states = [s.to(torch.uint8) for s in cuda]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- files ------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """What a checkpoint holds; ``state`` is the nested training state (tensors inside)."""

    state: dict[str, Any]
    info: dict[str, Any]  # small JSON facts: schema, task, epoch, iteration, config


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """Write ``state`` (nested dicts/lists of tensors and plain values) and ``info`` atomically."""
    tensors: dict[str, torch.Tensor] = {}
    structure = pack(dict(state), "s", tensors)
    metadata = {
        "format": "pt",
        METADATA_KEY: json.dumps({"schema": CHECKPOINT_SCHEMA, **info, "structure": structure}),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
            if raw is None:
                raise WeightsError(f"{path}: not an img2img training checkpoint")
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: not a readable checkpoint ({first_line(exc)})") from None
    info = _parse_info(path, raw)
    if "structure" not in info:
        raise WeightsError(f"{path}: damaged checkpoint (its metadata has no 'structure')")
    structure = info.pop("structure")
    try:
        state = unpack(structure, tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: damaged checkpoint (its structure does not match its tensors: {exc!r})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: damaged checkpoint (its state is not a mapping)")
    return Checkpoint(state=state, info=info)


def _parse_info(path: str | os.PathLike[str], raw: str) -> dict[str, Any]:
    """The checkpoint's JSON facts, refused with one line naming the file when malformed."""
    try:
        info = json.loads(raw)
    except ValueError as exc:
        raise WeightsError(f"{path}: damaged checkpoint (its metadata is not valid JSON: {exc})") from None
    if not isinstance(info, dict):
        raise WeightsError(f"{path}: damaged checkpoint (its metadata is not a JSON object)")
    try:
        schema = int(info.get("schema", 0))
    except (TypeError, ValueError):
        raise WeightsError(f"{path}: damaged checkpoint (schema {info.get('schema')!r} is not a number)") from None
    if schema > CHECKPOINT_SCHEMA:
        raise WeightsError(f"{path}: checkpoint schema {schema} is newer than this img2img")
    return info


def read_checkpoint_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON facts of a checkpoint (epoch, iteration, config) without loading its tensors."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: not a readable checkpoint ({first_line(exc)})") from None
    if raw is None:
        raise WeightsError(f"{path}: not an img2img training checkpoint")
    info = _parse_info(path, raw)
    info.pop("structure", None)
    return info


def link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` a copy of the finished file ``source`` (a hard link where possible),
    atomically."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            import shutil

            shutil.copyfile(source, tmp)


__all__ = [
    "Checkpoint",
    "load_checkpoint",
    "pack",
    "read_checkpoint_info",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "unpack",
]
