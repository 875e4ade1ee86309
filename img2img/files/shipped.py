"""Where the files img2img ships (models, the model and data registries) are, installed or in a clone."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def shipped_dir() -> Path:
    """The folder of the shipped models, ``registry.json`` and ``datasets.json``: the package's ``shipped/`` in an
    installed wheel or sdist (pyproject.toml maps the clone's ``weights/`` there), else the
    clone's ``weights/`` (a clone on the path, or an editable install).

    Found from the top-level package (wherever this module sits in it), as a plain path:
    safetensors opens files by name, and img2img is never run from a zip. Every path to a
    shipped file is made from this (through ``WEIGHTS_DIR``, which tests point elsewhere)."""
    package = Path(str(importlib.resources.files("img2img"))).resolve()
    installed = package / "shipped"
    return installed if installed.is_dir() else package.parent / "weights"


__all__ = ["shipped_dir"]
