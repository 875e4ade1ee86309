"""A run whose losses, gradients or batch-norm statistics stop being finite stops at once,
says where and what to try, and never saves or exports the broken state."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from img2img.data.synthetic import write_palette_dataset, write_shapes_dataset
from img2img.errors import TrainingDiverged
from img2img.train import CycleGANModel, Pix2PixModel, train_cyclegan, train_pix2pix
from img2img.train.config import CycleGANConfig, Pix2PixConfig
from img2img.train.divergence import NonFinite, all_finite, check_iteration

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
    print_freq=2,
    val_size=1,
    n_samples=0,
    device="cpu",
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=6, n_val=1, size=32)


def poison_at(monkeypatch, model_cls, iteration: int, poison) -> None:
    """Make ``model_cls.train_step`` call ``poison(model, losses)`` at the given iteration."""
    original = model_cls.train_step
    calls = {"n": 0}

    def step(self, batch):
        losses = original(self, batch)
        calls["n"] += 1
        if calls["n"] == iteration:
            poison(self, losses)
        return losses

    monkeypatch.setattr(model_cls, "train_step", step)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(shapes, tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = Pix2PixConfig(**TINY, data=str(shapes), out=str(run), save_latest_freq=2)

    def nan_l1(model, losses):
        losses["G_L1"] = torch.tensor(float("nan"))

    poison_at(monkeypatch, Pix2PixModel, 3, nan_l1)
    with pytest.raises(TrainingDiverged) as info:
        train_pix2pix(config, stream=io.StringIO())
    message = str(info.value)
    assert "training diverged at epoch 1, iteration 3: loss G_L1 is nan" in message
    assert "(iteration 2), is intact" in message and "--lr" in message and "--gan-mode" in message
    assert "\n" not in message
    latest = load_file(run / "checkpoints" / "latest.safetensors")
    assert all(torch.isfinite(t).all() for t in latest.values() if t.is_floating_point())
    weights = load_file(run / "weights" / "pix2pix_AtoB.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    with open(run / "metrics.csv") as handle:
        assert all(int(row["iteration"]) <= 2 for row in csv.DictReader(handle))


def test_non_finite_gradients_stop_the_run_before_the_update(shapes, tmp_path):
    """An absurd learning rate: the weights reach ~1e38 after one update and the next
    gradients are not finite; the run stops there, and nothing is saved."""
    run = tmp_path / "run"
    config = Pix2PixConfig(**TINY, data=str(shapes), out=str(run), lr=1e38)
    with pytest.raises(TrainingDiverged, match=r"training diverged at epoch 1, iteration 1: (gradients of G|loss)"):
        train_pix2pix(config, stream=io.StringIO())
    assert not run.exists()  # failed before its first checkpoint: nothing left behind


def test_non_finite_batch_norm_statistics_count_as_divergence(shapes, tmp_path, monkeypatch):
    config = Pix2PixConfig(**TINY, data=str(shapes), out=str(tmp_path / "run"), norm="batch")

    def break_running_var(model, losses):
        bn = next(m for m in model.networks["D"].modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_var[0] = float("inf")

    poison_at(monkeypatch, Pix2PixModel, 2, break_running_var)
    with pytest.raises(TrainingDiverged, match="iteration 2: batch-norm running statistics of D are not finite"):
        train_pix2pix(config, stream=io.StringIO())


def test_a_non_finite_state_is_never_saved(shapes, tmp_path, monkeypatch):
    """Weights that became non-finite without the losses showing it (yet) are caught before
    the checkpoint is written over the last good one."""
    run = tmp_path / "run"
    config = Pix2PixConfig(**TINY, data=str(shapes), out=str(run), save_latest_freq=2)

    def break_weights(model, losses):
        with torch.no_grad():
            weight = next(model.networks["G"].parameters())
            weight[(0,) * weight.dim()] = float("nan")

    poison_at(monkeypatch, Pix2PixModel, 4, break_weights)
    with pytest.raises(TrainingDiverged, match="iteration 4: weights of G are not finite"):
        train_pix2pix(config, stream=io.StringIO())
    latest = load_file(run / "checkpoints" / "latest.safetensors")
    assert all(torch.isfinite(t).all() for t in latest.values() if t.is_floating_point())


def test_the_checks_see_every_kind_of_non_finite_value():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    check_iteration({"a": torch.tensor(1.0)}, {"N": net})
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(NonFinite, match="loss b"):
            check_iteration({"a": torch.tensor(1.0), "b": torch.tensor(bad)}, {"N": net})
    net[1].running_mean[1] = float("nan")
    with pytest.raises(NonFinite, match="running statistics of N"):
        check_iteration({"a": torch.tensor(1.0)}, {"N": net})
    assert all_finite([torch.zeros(3), torch.ones((), dtype=torch.int64)])
    assert not all_finite([torch.zeros(3), torch.tensor([1.0, math.inf])])


def test_the_gradient_penalty_has_its_own_metrics_column(shapes, tmp_path):
    run = tmp_path / "run"
    train_pix2pix(Pix2PixConfig(**TINY, data=str(shapes), out=str(run), gan_mode="wgangp"), stream=io.StringIO())
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert "D_GP" in rows[0] and all(float(row["D_GP"]) >= 0 for row in rows)
    palettes = write_palette_dataset(tmp_path / "palettes", n_a=4, n_b=4, n_test=1, size=32)
    cycle = CycleGANConfig(
        **{**TINY, "netg": "resnet_1blocks"},
        data=str(palettes),
        out=str(tmp_path / "cycle"),
        gan_mode="wgangp",
        pool_size=2,
    )
    assert {"D_A_GP", "D_B_GP"} <= set(CycleGANModel(cycle).loss_names)
    train_cyclegan(cycle, stream=io.StringIO())
    with open(tmp_path / "cycle" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert all(float(row["D_A_GP"]) >= 0 and float(row["D_B_GP"]) >= 0 for row in rows)
