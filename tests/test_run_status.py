"""A run's report says whether its training is in progress, how it stopped, or that its process
is gone (RUN/status.json, img2img.files.run_status): a report built on demand can tell a running run
from a killed one."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from img2img.data.synthetic import write_shapes_dataset
from img2img.files.run_status import process_start
from img2img.report.page import read_run
from img2img.testing.hold import hold_at, release, wait_until_held
from img2img.train import train_pix2pix
from img2img.train.config import Pix2PixConfig

TINY = dict(
    netg="unet_32",
    ngf=4,
    ndf=4,
    preprocess="resize_and_crop",
    load_size=36,
    crop_size=32,
    n_epochs=1,
    n_epochs_decay=0,
    seed=0,
    print_freq=1,
    val_size=1,
    n_samples=0,
    device="cpu",
)
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
    "0",
    "--n-epochs",
    "50",
    "--n-epochs-decay",
    "0",
    "--save-latest-freq",
    "1",
]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=3, n_val=1, size=32)


def _status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def test_a_finished_run_says_finished(shapes, tmp_path):
    run = tmp_path / "run"
    train_pix2pix(Pix2PixConfig(**TINY, data=str(shapes), out=str(run)), stream=io.StringIO())
    status = _status(run)
    assert status["state"] == "finished" and status["pid"] == os.getpid()
    assert status["host"] == socket.gethostname() and status["epoch"] == 1
    assert status["checkpoint"]["epoch"] == 1
    assert read_run(run).status == "finished"


def test_a_run_stopped_by_sigterm_says_so_and_a_running_one_is_in_progress(shapes, tmp_path):
    run, holds = tmp_path / "run", tmp_path / "holds"
    # Held before iteration 2: iteration 1's checkpoint (--save-latest-freq 1) and status are written.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **hold_at(holds, "iteration-2")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "img2img", "train", "pix2pix", "--data", str(shapes), "--out", str(run), *FLAGS],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_held(holds, "iteration-2", lambda: proc.poll() is None)
        during = read_run(run).status
        proc.send_signal(signal.SIGTERM)
        seen = ""
        while "SIGTERM: stopping after this iteration" not in seen:
            line = proc.stderr.readline()
            assert line, f"no log line ({proc.wait()}): {seen}"
            seen += line
        release(holds, "iteration-2")
        err = proc.communicate(timeout=120)[1]  # a hang guard
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert during.startswith(f"in progress (pid {proc.pid} on {socket.gethostname()}, last checkpoint: "), during
    assert proc.returncode == 143, seen + err
    status = read_run(run).status
    assert _status(run)["epoch"] == 0 and _status(run)["checkpoint"]["iteration"] == 2
    assert status.startswith("stopped: interrupted by SIGTERM at epoch 1 (last checkpoint: "), status


def _stopped_run(shapes: Path, run: Path, **changes) -> Path:
    """A run whose status.json is then edited to look like one of another process."""
    train_pix2pix(Pix2PixConfig(**TINY, data=str(shapes), out=str(run)), stream=io.StringIO())
    status = {**_status(run), "state": "running", **changes}
    (run / "status.json").write_text(json.dumps(status))
    return run


def test_a_run_whose_process_is_gone_ended_unexpectedly(shapes, tmp_path):
    """`kill -9` leaves "running" behind: the process id no longer exists on this host."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = _stopped_run(shapes, tmp_path / "run", pid=gone.pid)
    status = read_run(run).status
    assert status == "ended unexpectedly (the process is gone; last checkpoint: end of epoch 1, iteration 3)"


def test_a_live_process_that_reused_the_run_s_process_id_is_not_the_run(shapes, tmp_path):
    """After a kill -9 (or a container restart) another process can hold the run's id: the
    record's start time tells them apart where the system says when a process started."""
    run = _stopped_run(shapes, tmp_path / "run")
    ours = process_start(os.getpid())
    if ours is None:
        pytest.skip("this system does not say when a process started (/proc)")
    assert _status(run)["process_start"] == ours  # the trainer (this process) recorded its start
    # Alive until the test ends it (reads stdin until killed), however slow the machine.
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        start = process_start(other.pid)
        boot, ticks = start.rsplit(":", 1)

        def status_with(**changes) -> str:
            (run / "status.json").write_text(json.dumps({**_status(run), "pid": other.pid, **changes}))
            return read_run(run).status

        assert status_with(process_start=f"{boot}:{int(ticks) - 1}").startswith(
            "ended unexpectedly (the process is gone;"
        )
        assert status_with(process_start=f"{'1' if boot[0] == '0' else '0'}{boot[1:]}:{ticks}").startswith(
            "ended unexpectedly"
        )  # another boot
        assert status_with(process_start=start).startswith(f"in progress (pid {other.pid} on ")
        assert status_with(process_start=None).startswith(f"in progress (pid {other.pid} on ")  # older records
    finally:
        other.kill()
        other.wait()


def test_a_run_of_another_host_is_unknown(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": "pix2pix", "n_epochs": 2, "n_epochs_decay": 0}))
    record = {
        "schema": 1,
        "state": "running",
        "pid": os.getpid(),
        "host": socket.gethostname() + "-elsewhere",
        "epoch": 1,
        "iteration": 5,
        "checkpoint": {"epoch": 1, "epoch_iter": 3, "iteration": 5},
    }
    (run / "status.json").write_text(json.dumps(record))
    status = read_run(run).status
    assert status.startswith(f"unknown (running on {socket.gethostname()}-elsewhere, pid {os.getpid()}")
    assert "last checkpoint: epoch 2, iteration 5" in status
