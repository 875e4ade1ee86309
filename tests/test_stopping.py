"""Every way a training run stops ends the process and its DataLoader workers, with the
documented exit code: SIGINT, a second SIGINT, SIGTERM, SIGHUP, an error inside a worker (an
image that does not decode), an error in the main loop (divergence).

Signals are sent while the run is held before its first iteration (img2img.testing.hold), so a
fast CPU cannot finish first and a busy one cannot be late; the timeouts are hang guards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from img2img.data.synthetic import write_shapes_dataset
from img2img.testing.hold import hold_at, release, wait_until_held

FLAGS = [
    "--netg",
    "unet_32",
    "--ngf",
    "4",
    "--ndf",
    "4",
    "--load-size",
    "36",
    "--crop-size",
    "32",
    "--seed",
    "0",
    "--val-size",
    "1",
    "--n-samples",
    "0",
    "--print-freq",
    "1",
    "--device",
    "cpu",
    "--num-workers",
    "1",
    "--n-epochs",
    "50",
    "--n-epochs-decay",
    "0",
]
GONE_WITHIN = 120  # seconds: a hang guard, generous for a loaded machine; a hang is forever
FIRST = "iteration-1"  # where the runs are held: the first batch is loaded, nothing trained yet


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=6, n_val=1, size=32)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start(args: list[str], cwd: Path, holds: Path) -> subprocess.Popen:
    """The trainer, held before its first iteration (``holds``: img2img.testing.hold's folder)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **hold_at(holds, FIRST)}
    return subprocess.Popen(
        [sys.executable, "-m", "img2img", "train", "pix2pix", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_training(proc: subprocess.Popen, holds: Path, count: int = 1) -> list[int]:
    """Wait until the run is held before its first iteration: its loader workers are up then
    (they loaded the first batch). Returns the run's child processes."""
    held = wait_until_held(holds, FIRST, lambda: proc.poll() is None, count=count)
    return [child for pid in held for child in children(pid)]


def read_until(proc: subprocess.Popen, text: str) -> str:
    """stderr up to the line that contains ``text``."""
    seen = ""
    while True:
        line = proc.stderr.readline()
        assert line, f"no line with {text!r} ({proc.wait()}): {seen}"
        seen += line
        if text in line:
            return seen


def finish(proc: subprocess.Popen, workers: list[int]) -> str:
    """The rest of stderr once the process has ended (it must, within seconds), workers gone."""
    try:
        err = proc.communicate(timeout=GONE_WITHIN)[1]
    except subprocess.TimeoutExpired:
        lingering = [pid for pid in [proc.pid, *workers] if alive(pid)]
        for pid in lingering:
            os.kill(pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"still running {GONE_WITHIN} s after being stopped: {lingering}") from None
    deadline = time.monotonic() + GONE_WITHIN  # a hang guard: an orphaned worker is reaped by init
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    lingering = [pid for pid in workers if alive(pid)]
    for pid in lingering:
        os.kill(pid, signal.SIGKILL)
    assert not lingering, f"loader workers outlived the run: {lingering}"
    return err


@pytest.mark.parametrize(
    "signals, code",
    [([signal.SIGINT], 130), ([signal.SIGTERM], 143), ([signal.SIGHUP], 129), ([signal.SIGINT, signal.SIGINT], 130)],
    ids=["SIGINT", "SIGTERM", "SIGHUP", "SIGINT twice"],
)
def test_a_signal_ends_the_run_and_its_loader_workers(shapes, tmp_path, signals, code):
    run = tmp_path / "run"
    proc = start(["--data", str(shapes), "--out", str(run), *FLAGS], tmp_path, tmp_path / "holds")
    workers = wait_for_training(proc, tmp_path / "holds")
    assert workers, "the run should have a loader worker"
    # Each signal lands while the run is held; the first is acknowledged before anything else.
    proc.send_signal(signals[0])
    seen = read_until(proc, f"{signal.Signals(signals[0]).name}: stopping after this iteration")
    if len(signals) == 1:
        release(tmp_path / "holds", FIRST)  # the iteration runs, then the stop
    else:  # the run stays held unless the second Ctrl-C stops it at once
        proc.send_signal(signals[1])
    err = finish(proc, workers)
    assert proc.returncode == code, seen + err
    assert "Traceback" not in err
    if len(signals) == 1:  # stopped after the iteration: checkpoint and how to resume
        assert (run / "checkpoints" / "latest.safetensors").exists()
        assert f"resume with: img2img train pix2pix --resume {run}" in err
        name = signal.Signals(signals[0]).name
        assert f"interrupted ({name}) at epoch 1, iteration 1; checkpoint written" in err, seen + err


def test_an_image_that_fails_to_decode_in_a_worker_ends_the_run_with_a_checkpoint(tmp_path):
    data = write_shapes_dataset(tmp_path / "shapes", n_train=6, n_val=1, size=32)
    broken = data / "train" / "0003.png"
    raw = broken.read_bytes()
    broken.write_bytes(raw[: len(raw) // 2])  # the header reads; the pixels do not
    run = tmp_path / "run"
    holds = tmp_path / "holds"
    proc = start(["--data", str(data), "--out", str(run), *FLAGS, "--save-latest-freq", "1000"], tmp_path, holds)
    workers = wait_for_training(proc, holds)
    release(holds, FIRST)
    err = finish(proc, workers)
    assert proc.returncode == 1, err
    assert str(broken) in err and "fix or remove the file" in err
    assert f"resume with: img2img train pix2pix --resume {run}" in err
    assert (run / "checkpoints" / "latest.safetensors").exists()
    assert "Traceback" not in err


def test_an_error_in_the_main_loop_ends_the_run_and_its_loader_workers(shapes, tmp_path):
    """A run that diverges (an absurd learning rate: within its first iterations) stops with
    exit code 1, and its loader worker goes with it."""
    run = tmp_path / "run"
    holds = tmp_path / "holds"
    proc = start(["--data", str(shapes), "--out", str(run), *FLAGS, "--lr", "1e38"], tmp_path, holds)
    workers = wait_for_training(proc, holds)
    assert workers, "the run should have a loader worker"
    release(holds, FIRST)
    err = finish(proc, workers)
    assert proc.returncode == 1, err
    assert "training diverged at epoch 1, iteration 1" in err and "Traceback" not in err
    assert not (run / "weights" / "pix2pix_AtoB.safetensors").exists()  # nothing non-finite exported


def descendants(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def test_ctrl_c_under_nproc_ends_every_process_and_worker(shapes, tmp_path):
    """`--nproc 2` with a loader worker each: Ctrl-C (SIGINT to the whole process group, as a
    terminal sends it) ends the launcher, both ranks and their workers, exit code 130."""
    run = tmp_path / "run"
    holds = tmp_path / "holds"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **hold_at(holds, FIRST)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "img2img",
            "train",
            "pix2pix",
            "--data",
            str(shapes),
            "--out",
            str(run),
            *FLAGS,
            "--nproc",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for_training(proc, holds, count=2)  # both ranks
    processes = descendants(proc.pid)
    assert len(processes) >= 4, processes  # two ranks, a worker each
    os.killpg(proc.pid, signal.SIGINT)
    seen = read_until(proc, "SIGINT: stopping after this iteration")  # rank 0 has it
    release(holds, FIRST)
    err = finish(proc, processes)
    assert proc.returncode == 130, seen + err
    assert f"resume with: img2img train pix2pix --resume {run}" in err
