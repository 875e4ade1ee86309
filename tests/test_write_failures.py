"""Every file a training run writes that cannot be written (full disk, read-only folder, a size
limit) ends the run with one line naming the file, the operating system's reason and which
checkpoint is intact, read back from the file; nothing half-written replaces a good checkpoint.

How each test makes the write fail, and what that stands for:
- a real full file system (a small tmpfs: ENOSPC from the kernel), where the sandbox lets root
  mount one;
- a file-size limit (RLIMIT_FSIZE in a subprocess: EFBIG from the kernel, through the real
  safetensors writer), which needs no privilege;
- the safetensors writer raising the exception it raises on a full disk (SafetensorError with
  the Rust I/O error's text, not an OSError);
- the final rename of one chosen file failing with ENOSPC: every run file goes through
  img2img.files.atomic.atomic_path, so this reaches each writer (checkpoints, kept copies, exported
  weights, samples, metrics.csv, config.json, status.json) by name.
"""

from __future__ import annotations

import errno
import io
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
from safetensors import SafetensorError

from img2img.data.synthetic import write_shapes_dataset
from img2img.errors import RunFolderError
from img2img.files.atomic import TEMP_PREFIX
from img2img.train import load_run_config, train_pix2pix
from img2img.train.checkpoint import read_checkpoint_info
from img2img.train.config import Pix2PixConfig

TINY = dict(
    netg="unet_32", ngf=4, ndf=4, load_size=36, crop_size=32, n_epochs=2, n_epochs_decay=0, seed=0,
    print_freq=2, val_size=1, n_samples=1, device="cpu", save_epoch_freq=1,
)  # fmt: skip
HANG_GUARD = 600  # seconds; a resumed epoch of this tiny run takes a few


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> Path:
    """A run stopped after the first of its two epochs: latest and epoch_001 are intact."""
    data = write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=4, n_val=1, size=32)
    run = tmp_path_factory.mktemp("runs") / "run"
    train_pix2pix(Pix2PixConfig(**TINY, data=str(data), out=str(run)), stream=io.StringIO(), stop_after_epochs=1)
    return run


def resume(run: Path) -> None:
    config = load_run_config(run, Pix2PixConfig, {}, world_size=1)
    train_pix2pix(config, resume=True, stream=io.StringIO())


def intact_words(run: Path) -> str:
    """What the message must say is intact: the checkpoint on disk now, as its metadata says."""
    latest = run / "checkpoints" / "latest.safetensors"
    info = read_checkpoint_info(latest)
    assert info["epoch_iter"] == 0  # these runs fail at or before an epoch's end
    return f"the last checkpoint, {latest} from the end of epoch {info['epoch']} (iteration {info['iteration']}), is intact"


def no_temporaries(run: Path) -> list[Path]:
    return [path for path in run.rglob("*") if path.name.startswith(TEMP_PREFIX)]


# Each file of the run, by its path in the run folder; every one is written when a run resumes
# and finishes its second epoch.
RUN_FILES = [
    "config.json",
    "status.json",
    "metrics.csv",
    "samples/epoch_002.png",
    "checkpoints/latest.safetensors",
    "checkpoints/epoch_002.safetensors",
    "weights/pix2pix_AtoB.safetensors",
]


@pytest.mark.parametrize("name", RUN_FILES)
def test_each_run_file_that_cannot_be_written_is_named_with_the_intact_checkpoint(
    one_epoch, tmp_path, monkeypatch, name
):
    run = shutil.copytree(one_epoch, tmp_path / "run")
    latest = run / "checkpoints" / "latest.safetensors"
    before = latest.read_bytes()
    target = run / name
    real_replace = os.replace

    def full_at(src, dst, *args, **kwargs):
        if Path(dst) == target:
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_at)
    with pytest.raises(RunFolderError) as info:
        resume(run)
    monkeypatch.undo()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{target}: cannot write (No space left on device); {intact_words(run)}; ")
    assert f"--resume {run}" in message
    if name == "checkpoints/latest.safetensors":
        assert latest.read_bytes() == before
    assert no_temporaries(run) == []


def test_the_safetensors_writer_on_a_full_disk_is_one_line_and_latest_is_intact(one_epoch, tmp_path, monkeypatch):
    """safetensors raises SafetensorError, not OSError, on a full disk: the text it gives."""
    run = shutil.copytree(one_epoch, tmp_path / "run")
    latest = run / "checkpoints" / "latest.safetensors"
    before = latest.read_bytes()

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "serialize_file", full_disk)
    with pytest.raises(RunFolderError) as info:
        resume(run)
    monkeypatch.undo()
    assert str(info.value).startswith(
        f"{latest}: cannot write (No space left on device); {intact_words(run)}; make room or make the folder writable"
    )
    assert latest.read_bytes() == before
    assert no_temporaries(run) == []


def run_cli(args: list[str], *, limit: int | None = None) -> subprocess.CompletedProcess:
    def set_limit() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "img2img", *args], capture_output=True, text=True, timeout=HANG_GUARD,
        preexec_fn=set_limit, check=False,
    )  # fmt: skip


def error_line(stderr: str) -> str:
    """The one error line that ends training's log on stderr (no traceback, nothing after it)."""
    assert "Traceback" not in stderr and stderr.endswith("\n"), stderr
    lines = stderr.splitlines()
    assert [line for line in lines if line.startswith("img2img: error:")] == lines[-1:], stderr
    return lines[-1]


def test_a_file_size_limit_stops_training_with_one_line_and_latest_intact(one_epoch, tmp_path):
    """A kernel error through the real writers: every file under the limit is written, the
    first checkpoint over it is refused (EFBIG)."""
    run = shutil.copytree(one_epoch, tmp_path / "run")
    latest = run / "checkpoints" / "latest.safetensors"
    before = latest.read_bytes()
    # report.html is left out: one that cannot be written is a note, never the end of a run.
    small = max(
        path.stat().st_size
        for path in run.rglob("*")
        if path.is_file() and path.suffix not in (".safetensors", ".html")
    )
    big = min(path.stat().st_size for path in run.rglob("*.safetensors"))
    assert 4 * small < big  # the limit between them lets the small files grow
    result = run_cli(["train", "pix2pix", "--resume", str(run)], limit=big // 2)
    assert result.returncode == 1, result.stderr
    assert error_line(result.stderr).startswith(
        f"img2img: error: {latest}: cannot write (File too large); {intact_words(run)}; make room"
    ), result.stderr
    assert latest.read_bytes() == before
    assert no_temporaries(run) == []


@pytest.fixture
def small_file_system(tmp_path):
    """A function that mounts a tmpfs of the size it is given (bytes) at tmp_path/fs and returns
    that folder (as root, where the sandbox allows it); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        folder = tmp_path / "fs"
        folder.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip() or result.returncode}); "
                        "the file-size-limit test covers the kernel's refusal without it")  # fmt: skip
        mounted.append(folder)
        return folder

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8); the file-size-limit test covers the rest")
    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True, check=False)


def test_training_into_a_full_file_system_names_the_file_and_latest_is_intact(one_epoch, small_file_system):
    """The issue's case: a run folder on a file system with room for everything but one more
    checkpoint beside the last."""
    used = sum(path.stat().st_size for path in one_epoch.rglob("*") if path.is_file())
    checkpoint = (one_epoch / "checkpoints" / "latest.safetensors").stat().st_size
    # tmpfs counts whole pages per file: room for the files (page-rounded), a little growth of
    # the small ones, and less than a new checkpoint.
    pages = sum(-(-path.stat().st_size // 4096) for path in one_epoch.rglob("*") if path.is_file())
    size = pages * 4096 + 16 * 4096 + checkpoint // 2
    assert checkpoint > 64 * 4096 and size < used + checkpoint
    run = shutil.copytree(one_epoch, small_file_system(size) / "run")
    latest = run / "checkpoints" / "latest.safetensors"
    before = latest.read_bytes()
    result = run_cli(["train", "pix2pix", "--resume", str(run)])
    assert result.returncode == 1, result.stderr
    named = (
        error_line(result.stderr).removeprefix("img2img: error: ").split(": cannot write (No space left on device); ")
    )
    assert len(named) == 2 and Path(named[0]).is_relative_to(run), result.stderr
    assert named[1].startswith(f"{intact_words(run)}; make room"), result.stderr
    assert latest.read_bytes() == before
    assert no_temporaries(run) == []
