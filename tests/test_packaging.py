"""A wheel and an sdist built from the repository hold the shipped models and the registry, and an
installed copy (not a clone, not an editable install) finds them: `models list` and
`translate --model photo2sketch` work from outside the clone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
# What the build needs; the rest of a clone (tests, runs, caches) stays out of the copy.
NOT_BUILT = shutil.ignore_patterns(
    ".git", "build", "dist", "runs", "tests", "benchmarks", "examples", "__pycache__",
    ".pytest_cache", "*.egg-info", "venv", ".venv",
)  # fmt: skip
BUILD_TIMEOUT = 600  # a hang guard: a build takes seconds


def _shipped_files() -> dict[str, str]:
    """File name -> sha256 of every model the clone's registry names as shipped."""
    models = json.loads((REPO / "weights" / "registry.json").read_text())["models"]
    return {entry["file"]: entry["sha256"] for entry in models.values() if entry.get("file")}


def _run(*args: str, cwd: Path) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _pip_wheel(source: Path, out: Path) -> Path:
    # As `pip install .` builds it, without fetching a build backend (the suite runs offline).
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         str(source), "-w", str(out), cwd=out.parent)  # fmt: skip
    (wheel,) = out.glob("img2img-*.whl")
    return wheel


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """A wheel built from (a copy of) the repository, an sdist, and a wheel built from the sdist."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=NOT_BUILT)
    wheel = _pip_wheel(source, root / "wheel")
    sdist_dir = root / "sdist"
    _run(sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(sdist_dir)!r})",
         cwd=source)  # fmt: skip
    (sdist,) = sdist_dir.glob("img2img-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist, "wheel_from_sdist": _pip_wheel(sdist, root / "wheel_from_sdist")}


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("which", ["wheel", "wheel_from_sdist"])
def test_wheel_holds_the_registry_and_every_shipped_model(built, which):
    with zipfile.ZipFile(built[which]) as wheel:
        names = set(wheel.namelist())
        assert "img2img/shipped/registry.json" in names
        assert wheel.read("img2img/shipped/registry.json") == (REPO / "weights" / "registry.json").read_bytes()
        for name, sha256 in _shipped_files().items():
            assert f"img2img/shipped/{name}" in names
            assert _sha256(wheel.read(f"img2img/shipped/{name}")) == sha256
    # Every module of the package: pyproject.toml lists the packages, so a new subpackage that
    # is not added there would be missing from every install.
    modules = {path.relative_to(REPO).as_posix() for path in (REPO / "img2img").rglob("*.py")}
    assert modules - names == set(), "add the missing packages to [tool.setuptools] packages in pyproject.toml"


def test_sdist_holds_the_registry_and_every_shipped_model(built):
    with tarfile.open(built["sdist"]) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert "weights/registry.json" in members
    assert {f"weights/{name}" for name in _shipped_files()} <= members


def test_installed_wheel_lists_and_runs_the_shipped_models_from_outside_the_clone(built, tmp_path):
    """The wheel unpacked as an install puts it (what pip does for a pure-Python wheel), run from
    a folder that is not the clone, with nothing of the clone on the path."""
    site = tmp_path / "site"
    with zipfile.ZipFile(built["wheel"]) as wheel:
        wheel.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = elsewhere / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(source)
    env = {**os.environ, "PYTHONPATH": str(site), "IMG2IMG_CACHE": str(tmp_path / "cache")}

    def img2img(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "img2img", *args],
            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
        )  # fmt: skip

    where = subprocess.run(
        [sys.executable, "-c", "import img2img.hub.registry as r; print(r.__file__); print(r.shipped_dir())"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=True,
    ).stdout.split()  # fmt: skip
    assert Path(where[0]).is_relative_to(site) and Path(where[1]) == site / "img2img" / "shipped"

    listing = img2img("models", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in map(json.loads, listing.stdout.splitlines())}
    for name in ("photo2sketch", "photo2night", "night2photo"):
        assert rows[name]["status"] == "shipped"
        assert Path(rows[name]["path"]).is_relative_to(site)

    out = elsewhere / "out.png"
    translated = img2img("translate", str(source), "--model", "photo2sketch", "-o", str(out))
    assert translated.returncode == 0, translated.stderr
    with Image.open(out) as image:
        assert image.size == (96, 64)
