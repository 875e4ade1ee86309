"""The optional libraries ``img2img eval`` stands on, imported lazily with one clear message."""

from __future__ import annotations

import importlib
from types import ModuleType

from img2img.errors import Img2ImgError

INSTALL = 'pip install "img2img[eval]"'

# import name -> the distribution pip knows it by
_DISTRIBUTIONS = {
    "torch_fidelity": "torch-fidelity",
    "torchmetrics": "torchmetrics",
    "skimage": "scikit-image",
    "scipy": "scipy",
}


class MissingExtraError(Img2ImgError):
    """An optional dependency of ``img2img eval`` is not installed."""


def require(module: str) -> ModuleType:
    """Import ``module`` (one of the eval extra's libraries) or raise MissingExtraError naming
    the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        dist = _DISTRIBUTIONS.get(top, top)
        missing = getattr(exc, "name", None) or top
        if missing.split(".")[0] != top:  # the library is there but one of its own needs is not
            dist = f"{dist} (it failed to import {missing})"
        raise MissingExtraError(f"img2img eval needs {dist}: {INSTALL}") from None


def version_of(distribution: str) -> str | None:
    """The installed version of a distribution, or None."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
