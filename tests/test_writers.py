"""One writer per target, and what a failure or a stop leaves: run folders are locked by their
process (a second run, a resume beside it or --overwrite over it is refused, naming the live
one), every command that writes a file refuses to replace one that appeared meanwhile, and a
failure after training did work keeps what it wrote. Two processes are synchronised by the
lines they print, never by sleeps."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from img2img.testing.synthetic import write_shapes_dataset

TRAIN = [
    "--netg", "unet_32", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32",
    "--seed", "0", "--val-size", "1", "--n-samples", "0", "--print-freq", "1", "--device", "cpu",
    "--num-workers", "0",
]  # fmt: skip
HANG_GUARD = 300  # seconds: generous for a loaded machine; only a hang reaches it


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=4, n_val=1, size=32)


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def img2img(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "img2img", *args], cwd=cwd, env=_env(), capture_output=True, text=True,
        timeout=HANG_GUARD,
    )


def start_training(args: list[str], cwd: Path) -> subprocess.Popen:
    """A run that trains until stopped, read up to its first iteration's log line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "img2img", "train", "pix2pix", *TRAIN, *args, "--n-epochs", "100000",
         "--n-epochs-decay", "0"],
        cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    guard = threading.Timer(HANG_GUARD, proc.kill)  # only a hang reaches it
    guard.start()
    seen = ""
    try:
        while True:
            line = proc.stderr.readline()
            if not line:
                proc.wait(HANG_GUARD)
                pytest.fail(f"the run ended before training ({proc.returncode}): {seen}")
            seen += line
            if line.startswith("epoch "):  # the log line of an iteration: the run is live
                return proc
    finally:
        guard.cancel()


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=HANG_GUARD)[1]


def test_a_live_run_folder_is_refused_to_a_second_run_a_resume_and_overwrite(shapes, tmp_path):
    first = start_training(["--data", str(shapes), "--out", "run"], tmp_path)
    try:
        status = json.loads((tmp_path / "run" / "status.json").read_text())
        assert status["state"] == "running" and status["pid"] == first.pid
        before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "run").rglob("*"))
        # The same command again, --overwrite over it: refused, naming the live run, nothing touched.
        for extra in ([], ["--overwrite"]):
            second = img2img("train", "pix2pix", *TRAIN, "--data", str(shapes), "--out", "run", *extra, cwd=tmp_path)
            assert second.returncode == 2, second.stderr
            (line,) = second.stderr.splitlines()
            assert f"--out run: in use by a live run (pid {first.pid} on " in line and "started " in line
            assert (tmp_path / "run").is_dir()
            assert {"config.json", "status.json"} <= {p.name for p in (tmp_path / "run").iterdir()}
        assert first.poll() is None  # the first run goes on
    finally:
        stop(first)
    # Stopped (a checkpoint written): now a resume may go on; while it is live, another may not.
    resumed = start_training(["--resume", "run"], tmp_path)
    try:
        again = img2img("train", "pix2pix", "--resume", "run", cwd=tmp_path)
        assert again.returncode == 2, again.stderr
        assert f"--resume run: in use by a live run (pid {resumed.pid} on " in again.stderr
    finally:
        stop(resumed)
    assert before  # the folder was there all along
    assert not (tmp_path / "run" / "run.lock").exists()  # released at the end


def test_the_lock_of_a_killed_run_is_gone_with_its_process(shapes, tmp_path):
    first = start_training(["--data", str(shapes), "--out", "run"], tmp_path)
    first.kill()  # SIGKILL: no handler runs; the kernel drops the lock with the process
    first.communicate(timeout=HANG_GUARD)
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "running"
    again = img2img("train", "pix2pix", *TRAIN, "--data", str(shapes), "--out", "run", "--n-epochs", "1",
                    "--n-epochs-decay", "0", cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_a_failure_after_training_did_work_keeps_the_run_folder(shapes, tmp_path, monkeypatch):
    from img2img.config import Pix2PixConfig
    from img2img.errors import UsageError
    from img2img.train import evaluation, train_pix2pix

    def failing_score(trainer):
        raise UsageError("FID needs at least 2 images")

    monkeypatch.setattr(evaluation, "score", failing_score)
    config = Pix2PixConfig(
        netg="unet_32", ngf=4, ndf=4, load_size=36, crop_size=32, seed=0, val_size=1, n_samples=0,
        n_epochs=1, n_epochs_decay=0, data=str(shapes), out=str(tmp_path / "run"),
    )  # fmt: skip
    with pytest.raises(UsageError, match="FID needs"):
        train_pix2pix(config, stream=io.StringIO(), live=False)
    run = tmp_path / "run"
    assert (run / "config.json").is_file() and (run / "metrics.csv").is_file()
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
    assert not (run / "run.lock").exists()


def test_a_failure_while_setting_up_leaves_no_folder(shapes, tmp_path):
    failed = img2img("train", "pix2pix", *TRAIN, "--data", str(tmp_path / "nowhere"), "--out", "run", cwd=tmp_path)
    assert failed.returncode != 0
    assert not (tmp_path / "run").exists()
