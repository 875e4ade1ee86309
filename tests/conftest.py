"""Shared test fixtures: the reference fixtures folder and small generator weights files."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

# translate's forward pass runs in PyTorch throughout the suite, also on CPUs where --engine
# auto would pick onnxruntime (and export every tiny model it meets): the onnxruntime engine has
# its own tests (test_engines.py), which unset this. Set IMG2IMG_ENGINE to run the suite otherwise.
os.environ.setdefault("IMG2IMG_ENGINE", "torch")

# Every default that depends on the CPU's class (precision auto, engine auto, the trainers' AMP
# and layout) reads img2img.runtime.devices.cpu_class, which this variable overrides: the suite runs as
# on an AVX2 CPU whatever the machine (AVX-512, native bf16, AMX), and the tests of
# class-dependent behaviour simulate each class they cover with the ``cpu_class`` fixture
# (monkeypatch.setenv, which the processes a test starts inherit).
os.environ.setdefault("IMG2IMG_CPU_CLASS", "avx2")
SIMULATED_CLASSES = ("avx2", "avx512", "avx512_bf16", "amx")

# Under pytest-xdist (pyproject's addopts run a worker per core) each worker and the processes
# its tests start get an equal share of the cores: more threads than cores makes OpenMP's
# waiting threads spin against each other, which costs more than the parallel workers gain.
# Read before any test module imports torch, so torch's thread pool takes it.
MAX_WORKERS = 8


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


def _stop_signals_as_from_a_terminal() -> None:
    """The tests that stop a run with SIGINT, SIGTERM or SIGHUP (sent to a process they start, or
    to pytest itself) need those signals to reach it. A shell starts a background job (`pytest &`
    in a script) with SIGINT ignored, `nohup` starts it with SIGHUP ignored, and an ignored
    signal stays ignored in every process started from it, which img2img honours (documented):
    the tests would then see a run that does not stop. pytest takes the signals back as a
    terminal gives them: SIGINT raises KeyboardInterrupt; SIGTERM and SIGHUP, if they were
    ignored, get a handler that still ignores them in pytest (so `nohup pytest` survives a
    hang-up), and the processes the tests start get the default action back."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is signal.SIG_IGN:
            signal.signal(signum, _still_ignored)


def _still_ignored(signum, frame) -> None:
    pass


_stop_signals_as_from_a_terminal()


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: a worker per core this process may use, at most MAX_WORKERS."""
    return min(MAX_WORKERS, _cores())


REPO_ROOT = Path(__file__).resolve().parent.parent
# Checkpoints written by the reference implementation (tests/fixtures/reference/README.md says how
# and from which commit). Only the copy inside the repository is read: the suite must pass in a
# clone with nothing beside it.
REFERENCE_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "reference"


@pytest.fixture(scope="session")
def reference_fixtures() -> Path:
    if not (REFERENCE_FIXTURES / "manifest.json").is_file():
        pytest.fail(f"reference fixtures missing from the repository: {REFERENCE_FIXTURES}")
    return REFERENCE_FIXTURES


@pytest.fixture(scope="session")
def reference_manifest(reference_fixtures: Path) -> dict:
    return json.loads((reference_fixtures / "manifest.json").read_text())


def make_generator_file(path: Path, *, seed: int = 0, **config_options) -> Path:
    """Write a small randomly initialised generator in the weights format and return its path."""
    import torch

    from img2img.models.config import GeneratorConfig
    from img2img.models.networks import build_generator, init_weights
    from img2img.models.weights import WeightsMetadata, save_generator

    options = {"arch": "resnet", "ngf": 4, "n_blocks": 1, **config_options}
    metadata_options = {key: options.pop(key) for key in ("task", "direction", "eval_mode", "source") if key in options}
    config = GeneratorConfig(**options)
    torch.manual_seed(seed)
    net = init_weights(build_generator(config))
    save_generator(path, net.state_dict(), WeightsMetadata(generator=config, **metadata_options))
    return path


@pytest.fixture
def tiny_generator(tmp_path: Path) -> Path:
    """A 1-block ResNet generator with ngf 4: fast enough for plumbing tests."""
    return make_generator_file(tmp_path / "tiny.safetensors")


@pytest.fixture(params=SIMULATED_CLASSES)
def cpu_class(request, monkeypatch) -> str:
    """Each CPU class in turn, simulated through $IMG2IMG_CPU_CLASS (bf16 runs emulated on a
    CPU without it: slow, numerically the same, so keep the images tiny)."""
    monkeypatch.setenv("IMG2IMG_CPU_CLASS", request.param)
    return request.param
