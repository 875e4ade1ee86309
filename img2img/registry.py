"""Model names -> weights files (minimal: paths and shipped files; downloads being written)."""

from __future__ import annotations

from pathlib import Path

from img2img.errors import ModelNotFoundError

SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def resolve_model(spec: str) -> Path:
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    shipped = SHIPPED_WEIGHTS / f"{spec}.safetensors"
    if shipped.is_file():
        return shipped
    raise ModelNotFoundError(f"{spec}: no such model file or model name")
