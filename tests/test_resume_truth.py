"""Resume and checkpoints tell the truth: exact hints, a fallback to the newest readable kept
checkpoint, one line for a damaged checkpoint or an edited config.json, the kept copy a kill
lost written on resume, one line for a file that cannot be written, and whole-epoch figures in
metrics.csv after a resume."""

from __future__ import annotations

import csv
import errno
import io
import json
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from img2img.data.synthetic import write_shapes_dataset
from img2img.errors import Img2ImgError, RunFolderError, TrainingInterrupted, UsageError
from img2img.train import Trainer, load_run_config, pix2pix_data, train_pix2pix
from img2img.train import trainer as trainer_module
from img2img.train.checkpoint import METADATA_KEY
from img2img.train.config import Pix2PixConfig
from img2img.train.pix2pix import Pix2PixModel
from img2img.train.progress import MetricsLog

TINY = dict(
    netg="unet_32",
    ngf=4,
    ndf=4,
    load_size=36,
    crop_size=32,
    n_epochs=2,
    n_epochs_decay=0,
    seed=0,
    print_freq=2,
    val_size=1,
    n_samples=0,
    device="cpu",
    save_epoch_freq=1,
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=4, n_val=1, size=32)


@pytest.fixture(scope="module")
def one_epoch(shapes, tmp_path_factory) -> Path:
    """A run stopped after its first of two epochs: latest and epoch_001."""
    run = tmp_path_factory.mktemp("runs") / "run"
    train_pix2pix(Pix2PixConfig(**TINY, data=str(shapes), out=str(run)), stream=io.StringIO(), stop_after_epochs=1)
    return run


def copy_run(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to)
    return to


def resume(run: Path, **overrides) -> tuple[object, str]:
    log = io.StringIO()
    config = load_run_config(run, Pix2PixConfig, overrides, world_size=1)
    return train_pix2pix(config, resume=True, stream=log), log.getvalue()


def rewrite_info(path: Path, change) -> None:
    """Rewrite a checkpoint's JSON metadata with ``change(text or dict)``."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    metadata[METADATA_KEY] = change(metadata[METADATA_KEY])
    save_file(tensors, str(path), metadata=metadata)


def test_resume_without_any_checkpoint_gives_an_exact_hint(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"task": "pix2pix", "data": "d"}))
    with pytest.raises(UsageError) as info:
        load_run_config(run, Pix2PixConfig, {})
    message = str(info.value)
    assert "{" not in message and f"--out {run}" in message and "--overwrite" not in message


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_resume_falls_back_to_the_newest_readable_kept_checkpoint(one_epoch, tmp_path, damage):
    run = copy_run(one_epoch, tmp_path / "run")
    latest = run / "checkpoints" / "latest.safetensors"
    if damage == "missing":
        latest.unlink()
    else:
        latest.write_bytes(b"not a checkpoint at all")
    result, log = resume(run)
    assert result.iterations == 8 and result.epochs == 2
    assert "latest.safetensors is" in log and "resuming from" in log and "epoch_001.safetensors" in log


def test_a_refused_new_run_over_kept_checkpoints_never_advises_overwrite_alone(one_epoch, tmp_path):
    run = copy_run(one_epoch, tmp_path / "run")
    (run / "checkpoints" / "latest.safetensors").unlink()
    with pytest.raises(UsageError) as info:
        train_pix2pix(Pix2PixConfig(**TINY, data=str(one_epoch.parent), out=str(run)), stream=io.StringIO())
    assert f"--resume {run}" in str(info.value) and "deleting its checkpoints" in str(info.value)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: json.dumps([1, 2]), "not a JSON object"),
        (lambda text: json.dumps({**json.loads(text), "iteration": -5}), "iteration -5 is below 0"),
        (lambda text: json.dumps({**json.loads(text), "epoch_iter": 99}), "iteration 99 of an epoch of 4"),
        (lambda text: json.dumps({**json.loads(text), "epoch": "one"}), "epoch is 'one', not a number"),
        (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "structure"}), "no 'structure'"),
        (
            lambda text: json.dumps({**json.loads(text), "structure": {"networks": {"__tensor__": "nope"}}}),
            "structure does not match",
        ),
    ],
    ids=["truncated", "a list", "negative iteration", "past the epoch", "wrong type", "incomplete", "wrong structure"],
)
def test_a_damaged_checkpoint_is_refused_with_one_line_naming_it(one_epoch, tmp_path, change, expected):
    run = copy_run(one_epoch, tmp_path / "run")
    for path in (run / "checkpoints").glob("*.safetensors"):
        rewrite_info(path, change)
    with pytest.raises(Img2ImgError) as info:
        resume(run)
    message = str(info.value)
    assert "latest.safetensors" in message and expected in message, message
    assert "\n" not in message


def test_an_edited_config_that_no_longer_fits_the_checkpoint_is_one_line(one_epoch, tmp_path):
    run = copy_run(one_epoch, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "ngf": 8}))
    with pytest.raises(RunFolderError) as info:
        resume(run)
    message = str(info.value)
    assert "latest.safetensors" in message and "config.json" in message and "size mismatch" in message
    (run / "config.json").write_text(json.dumps({**config, "lr": "fast"}))
    with pytest.raises(Img2ImgError, match="config.json"):
        resume(run)


def test_a_kept_checkpoint_lost_to_a_kill_is_written_on_resume(one_epoch, tmp_path):
    """Killed after `latest` was written at the end of epoch 1 but before its copy epoch_001."""
    run = copy_run(one_epoch, tmp_path / "run")
    kept = run / "checkpoints" / "epoch_001.safetensors"
    kept.unlink()
    config = load_run_config(run, Pix2PixConfig, {}, world_size=1)
    trainer = Trainer(config, Pix2PixModel, pix2pix_data, resume=True, stream=io.StringIO())
    trainer.fit(stop_after_epochs=0)
    assert kept.exists()
    with safe_open(str(kept), framework="pt") as handle:
        assert json.loads(handle.metadata()[METADATA_KEY])["epoch"] == 1


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_the_previous_is_intact(one_epoch, tmp_path, monkeypatch):
    run = copy_run(one_epoch, tmp_path / "run")
    before = (run / "checkpoints" / "latest.safetensors").read_bytes()

    def full_disk(path, state, info):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(trainer_module, "save_checkpoint", full_disk)
    with pytest.raises(RunFolderError) as info:
        resume(run, save_latest_freq=1)
    message = str(info.value)
    assert message.startswith(f"{run / 'checkpoints' / 'latest.safetensors'}: cannot write (No space left on device)")
    assert "(iteration 4), is intact" in message and "--resume" in message
    assert (run / "checkpoints" / "latest.safetensors").read_bytes() == before


def test_any_run_file_that_cannot_be_written_is_named(one_epoch, tmp_path, monkeypatch):
    run = copy_run(one_epoch, tmp_path / "run")

    def read_only(self, row):
        raise OSError(errno.EROFS, "Read-only file system", str(self.path))

    monkeypatch.setattr(MetricsLog, "write", read_only)
    with pytest.raises(RunFolderError, match=r"metrics\.csv: cannot write \(Read-only file system\)"):
        resume(run)


def test_metrics_epoch_rows_cover_the_whole_epoch_after_a_resume(shapes, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    train_pix2pix(Pix2PixConfig(**TINY, data=str(shapes), out=str(whole)), stream=io.StringIO())
    run = tmp_path / "run"
    original = Pix2PixModel.train_step
    calls = {"n": 0}

    def interrupt_after_two(self, batch):
        losses = original(self, batch)
        calls["n"] += 1
        if calls["n"] == 6:  # mid-way through epoch 2: stop as SIGINT does
            import signal

            signal.raise_signal(signal.SIGINT)
        return losses

    with monkeypatch.context() as patch:
        patch.setattr(Pix2PixModel, "train_step", interrupt_after_two)
        with pytest.raises(TrainingInterrupted):
            train_pix2pix(Pix2PixConfig(**TINY, data=str(shapes), out=str(run)), stream=io.StringIO())
    resume(run)

    def epoch_rows(folder: Path) -> list[dict]:
        with open(folder / "metrics.csv") as handle:
            return [row for row in csv.DictReader(handle) if row["scope"] == "epoch"]

    def losses(row: dict) -> dict:
        return {k: v for k, v in row.items() if k in ("G_GAN", "G_L1", "D_real", "D_fake")}

    assert [losses(r) for r in epoch_rows(run)] == [losses(r) for r in epoch_rows(whole)]
