"""--val-metrics, --keep-best and the validation record in exported weights, in short training
runs (tiny networks and data; the Inception has random weights in the standard layout)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
import torch

from img2img.data.synthetic import write_palette_dataset, write_shapes_dataset
from img2img.errors import WeightsError
from img2img.models.weights import read_metadata
from img2img.train import train_cyclegan, train_pix2pix
from img2img.train.checkpoint import load_checkpoint
from img2img.train.config import CycleGANConfig, Pix2PixConfig

TINY = dict(
    ngf=8, ndf=8, preprocess="resize_and_crop", load_size=36, crop_size=32,
    n_epochs=1, n_epochs_decay=1, seed=0, print_freq=4, val_size=2, n_samples=0,
)  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread: several times faster than two on a machine busy with other work (the two
    wait for each other), and these networks are run on a handful of images."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    from img2img.eval.inception import standard_layout

    generator = torch.Generator().manual_seed(0)
    tensors = standard_layout()
    for key, value in tensors.items():
        if key.endswith("conv.weight"):  # He init: PyTorch's default vanishes into denormals
            tensors[key] = torch.randn(value.shape, generator=generator) * math.sqrt(2 / value[0].numel())
    path = tmp_path_factory.mktemp("inception") / "inception.pth"
    torch.save(tensors, path)
    return path


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("IMG2IMG_OFFLINE", "1")
    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def _epoch_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["scope"] == "epoch"]


def test_pix2pix_val_metrics_keep_best_and_weights_record(tmp_path, inception_file):
    data = write_shapes_dataset(tmp_path / "shapes", n_train=4, n_val=2, size=32)
    config = Pix2PixConfig(
        **TINY, netg="unet_32", data=str(data), out=str(tmp_path / "run"), val_metrics="fid,psnr,ssim",
        keep_best="psnr", inception_weights=str(inception_file),
    )  # fmt: skip
    log = io.StringIO()
    train_pix2pix(config, stream=log, live=False)
    run = tmp_path / "run"
    rows = _epoch_rows(run)
    assert len(rows) == 2 and all(row["val_fid"] and row["val_psnr"] and row["val_ssim"] for row in rows)
    assert "val_fid" in log.getvalue()  # the progress line
    psnrs = [float(row["val_psnr"]) for row in rows]
    best_epoch = 1 + psnrs.index(max(psnrs))
    best = read_metadata(run / "weights" / "best_pix2pix_AtoB.safetensors").validation
    assert best["epoch"] == best_epoch
    assert best["directions"]["AtoB"]["scores"]["psnr"]["value"] == pytest.approx(max(psnrs), rel=1e-5)
    assert best["directions"]["AtoB"]["scores"]["ssim"]["win_size"] == 11  # with its settings
    latest = read_metadata(run / "weights" / "pix2pix_AtoB.safetensors").validation
    assert latest["epoch"] == 2 and latest["directions"]["AtoB"]["samples"]["pairs"] == 2
    assert (run / "checkpoints" / "best.safetensors").is_file()
    assert load_checkpoint(run / "checkpoints" / "latest.safetensors").info["best"] == {
        "metric": "psnr", "value": pytest.approx(max(psnrs), rel=1e-5), "epoch": best_epoch,
    }  # fmt: skip


def test_missing_inception_weights_stop_training_before_it_starts(tmp_path):
    data = write_shapes_dataset(tmp_path / "shapes", n_train=4, n_val=2, size=32)
    config = Pix2PixConfig(**TINY, netg="unet_32", data=str(data), out=str(tmp_path / "run"), val_metrics="fid",
                           inception_weights=str(tmp_path / "nowhere.pth"))  # fmt: skip
    with pytest.raises(WeightsError, match="nowhere.pth: no such file"):
        train_pix2pix(config, stream=io.StringIO(), live=False)
    assert not (tmp_path / "run").exists()


def test_cyclegan_val_metrics_per_direction(tmp_path, inception_file):
    data = write_palette_dataset(tmp_path / "palettes", n_a=4, n_b=4, n_test=2, size=32)
    config = CycleGANConfig(
        **{**TINY, "n_epochs_decay": 0}, netg="resnet_1blocks", pool_size=2, data=str(data),
        out=str(tmp_path / "run"), val_metrics="kid", keep_best="kid", inception_weights=str(inception_file),
    )  # fmt: skip
    # KID: IS is not estimated on 2 validation images (a split of one image scores exactly 1).
    train_cyclegan(config, stream=io.StringIO(), live=False)
    run = tmp_path / "run"
    (row,) = _epoch_rows(run)
    scores = [float(row["val_kid_AtoB"]), float(row["val_kid_BtoA"])]
    assert float(row["val_kid"]) == pytest.approx(sum(scores) / 2, rel=1e-5)
    for direction in ("AtoB", "BtoA"):
        record = read_metadata(run / "weights" / f"best_cyclegan_{direction}.safetensors").validation
        assert set(record["directions"]) == {"AtoB", "BtoA"} and record["epoch"] == 1
    record = read_metadata(run / "weights" / "cyclegan_AtoB.safetensors").validation
    assert [set(r["scores"]) for r in record["directions"].values()] == [{"kid"}, {"kid"}]


@pytest.mark.parametrize(("task", "metrics", "keep_best", "val_size"), [
    ("pix2pix", "fid", "fid", 1), ("pix2pix", "kid,psnr", None, 1), ("cyclegan", "kid", "kid", 1), ("pix2pix", "fid", None, 0),
])  # fmt: skip
def test_too_few_validation_images_stop_training_before_it_starts(tmp_path, task, metrics, keep_best, val_size):
    """FID and KID need two images on each side: with fewer the run stops before the first
    epoch (not after it, with the epoch's work at stake), naming the limit and the option."""
    from img2img.errors import UsageError

    # No Inception file: the count is checked before the weights are looked for (or downloaded).
    options = dict(TINY, val_size=val_size, data=None, out=str(tmp_path / "run"), val_metrics=metrics,
                   keep_best=keep_best, inception_weights=str(tmp_path / "nowhere.pth"))  # fmt: skip
    if task == "pix2pix":
        options["data"] = str(write_shapes_dataset(tmp_path / "shapes", n_train=4, n_val=3, size=32))
        config, train = Pix2PixConfig(**options, netg="unet_32"), train_pix2pix
    else:
        options["data"] = str(write_palette_dataset(tmp_path / "palettes", n_a=4, n_b=4, n_test=3, size=32))
        config, train = CycleGANConfig(**options, netg="resnet_1blocks", pool_size=2), train_cyclegan
    log = io.StringIO()
    with pytest.raises(UsageError) as info:
        train(config, stream=log, live=False)
    message = str(info.value)
    assert f"--val-size {val_size}" in message and "\n" not in message
    assert ("at least 2" in message) if val_size else ("no images" in message)
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written
    assert "epoch" not in log.getvalue().lower()


def test_a_validation_interval_longer_than_the_run_is_refused(tmp_path):
    """--val-freq 3 on a 2-epoch run: no validation would ever run, so --keep-best would keep
    nothing; said before training, with the largest interval that works."""
    from img2img.errors import UsageError

    options = dict(TINY, data=str(tmp_path), out=str(tmp_path / "run"), netg="unet_32", val_metrics="psnr")
    with pytest.raises(
        UsageError, match=r"--val-freq 3: training runs 2 epochs.*--keep-best never.*--val-freq 2 or less"
    ):
        Pix2PixConfig(**options, val_freq=3, keep_best="psnr")
    Pix2PixConfig(**options, val_freq=2, keep_best="psnr")  # validates after epoch 2


def test_is_on_a_validation_split_too_small_to_estimate_it_is_refused_before_training(tmp_path):
    """IS is not estimated below 10 splits of 2 images (eval says so in a note); during training
    that would be a null score every epoch, so the run stops before it starts."""
    from img2img.errors import UsageError

    data = write_shapes_dataset(tmp_path / "shapes", n_train=4, n_val=3, size=32)
    options = dict(TINY, data=str(data), out=str(tmp_path / "run"), val_size=3, val_metrics="is",
                   keep_best="is", inception_weights=str(tmp_path / "nowhere.pth"))  # fmt: skip
    with pytest.raises(UsageError, match=r"IS is not estimated on fewer than 20 images.*--val-size 3\) has 3"):
        train_pix2pix(Pix2PixConfig(**options, netg="unet_32"), stream=io.StringIO(), live=False)
    assert not (tmp_path / "run").exists()
