"""The user cache folder: downloads, conversions, ONNX exports, eval features and weights, datasets."""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE = "IMG2IMG_CACHE"


def cache_dir() -> Path:
    """``$IMG2IMG_CACHE``, else ``$XDG_CACHE_HOME/img2img``, else ``~/.cache/img2img``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "img2img"


__all__ = ["ENV_CACHE", "cache_dir"]
