"""`train pix2pix` end to end: it learns, resumes bit for bit, survives SIGINT and kill -9,
exports weights that load with no flags, and behaves as a command."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from img2img.cli import main
from img2img.data.synthetic import write_shapes_dataset
from img2img.errors import TrainingInterrupted
from img2img.models.weights import load_generator, read_metadata
from img2img.testing.hold import hold_at, release, wait_until_held
from img2img.train import DistInfo, Pix2PixModel, Trainer, pix2pix_data, train_pix2pix
from img2img.train.config import Pix2PixConfig

TINY = dict(
    netg="unet_32",
    ngf=8,
    ndf=8,
    preprocess="resize_and_crop",
    load_size=36,
    crop_size=32,
    n_epochs=1,
    n_epochs_decay=1,
    seed=0,
    print_freq=4,
    val_size=2,
    n_samples=2,
)
TINY_FLAGS = [
    "--netg",
    "unet_32",
    "--ngf",
    "8",
    "--ndf",
    "8",
    "--load-size",
    "36",
    "--crop-size",
    "32",
    "--seed",
    "0",
    "--val-size",
    "2",
    "--n-samples",
    "2",
]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=8, n_val=2, size=32)


def tiny(shapes: Path, out: Path, **changes) -> Pix2PixConfig:
    return Pix2PixConfig(**{**TINY, "data": str(shapes), "out": str(out), **changes})


def weights_of(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "weights" / "pix2pix_AtoB.safetensors")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


# --- it must learn ----------------------------------------------------------------------------------


def test_pix2pix_learns_outlines_to_filled_shapes(tmp_path):
    """A few hundred iterations on a small learnable task: the validation L1 must fall well
    below the untrained network's and the output = input baseline."""
    data = write_shapes_dataset(tmp_path / "shapes", n_train=96, n_val=16, size=32, seed=0)
    config = Pix2PixConfig(
        data=str(data),
        out=str(tmp_path / "run"),
        netg="unet_32",
        ngf=16,
        ndf=16,
        preprocess="none",
        load_size=32,
        crop_size=32,
        lr=1e-3,
        n_epochs=5,
        n_epochs_decay=3,
        seed=0,
        print_freq=1000,
        val_size=16,
    )
    torch.manual_seed(config.seed)
    untrained = Pix2PixModel(config)
    val = pix2pix_data(config).val
    batches = [
        {k: v.unsqueeze(0) if isinstance(v, torch.Tensor) else [v] for k, v in val[i].items()} for i in range(len(val))
    ]
    untrained_l1 = untrained.validate(batches)["val_L1"]
    identity_l1 = sum(float((b["input"] - b["target"]).abs().mean()) for b in batches) / len(batches)

    result = train_pix2pix(config, stream=io.StringIO())
    trained_l1 = result.val_metrics["val_L1"]
    assert result.iterations == 8 * 96
    assert trained_l1 < 0.75 * identity_l1, (trained_l1, identity_l1)
    assert trained_l1 < 0.3 * untrained_l1, (trained_l1, untrained_l1)
    # and the exported weights do what validation measured
    net = load_generator(result.weights["AtoB"]).net
    with torch.no_grad():
        exported_l1 = sum(float((net(b["input"]) - b["target"]).abs().mean()) for b in batches) / len(batches)
    assert exported_l1 == pytest.approx(trained_l1, rel=1e-4)


# --- resume ---------------------------------------------------------------------------------------------


def test_resume_is_bit_identical(shapes, tmp_path):
    """2 epochs in one run == 1 epoch, then --resume, then 1 epoch (with the rate decaying)."""
    full = train_pix2pix(tiny(shapes, tmp_path / "full", save_latest_freq=3), stream=io.StringIO())
    first = train_pix2pix(
        tiny(shapes, tmp_path / "split", save_latest_freq=3), stream=io.StringIO(), stop_after_epochs=1
    )
    assert first.epochs == 1
    resumed = train_pix2pix(tiny(shapes, tmp_path / "split"), resume=True, stream=io.StringIO())
    assert resumed.epochs == full.epochs == 2 and resumed.iterations == full.iterations == 16
    assert_same_weights(weights_of(tmp_path / "full"), weights_of(tmp_path / "split"))
    latest_full = load_file(tmp_path / "full" / "checkpoints" / "latest.safetensors")
    latest_split = load_file(tmp_path / "split" / "checkpoints" / "latest.safetensors")
    assert_same_weights(
        {k: v for k, v in latest_full.items() if not k.startswith("s/rng")},
        {k: v for k, v in latest_split.items() if not k.startswith("s/rng")},
    )


def test_interrupt_mid_epoch_then_resume_is_bit_identical(shapes, tmp_path, monkeypatch):
    train_pix2pix(tiny(shapes, tmp_path / "full"), stream=io.StringIO())
    real_step = Pix2PixModel.train_step
    calls = {"n": 0}

    def step_then_signal(self, batch):
        calls["n"] += 1
        if calls["n"] == 11:
            signal.raise_signal(signal.SIGTERM)  # handled now, during iteration 11
        return real_step(self, batch)

    monkeypatch.setattr(Pix2PixModel, "train_step", step_then_signal)
    log = io.StringIO()
    with pytest.raises(TrainingInterrupted) as info:
        train_pix2pix(tiny(shapes, tmp_path / "split"), stream=log)
    assert info.value.exit_code == 143
    assert f"--resume {tmp_path / 'split'}" in str(info.value)
    assert "SIGTERM: stopping after this iteration" in log.getvalue()
    monkeypatch.setattr(Pix2PixModel, "train_step", real_step)
    stored = json.loads(
        __import__("safetensors")
        .safe_open(str(tmp_path / "split" / "checkpoints" / "latest.safetensors"), "pt")
        .metadata()["img2img_checkpoint"]
    )
    assert (stored["epoch"], stored["epoch_iter"], stored["iteration"]) == (1, 3, 11)
    train_pix2pix(tiny(shapes, tmp_path / "split"), resume=True, stream=io.StringIO())
    assert_same_weights(weights_of(tmp_path / "full"), weights_of(tmp_path / "split"))
    rows = list(csv.DictReader(open(tmp_path / "split" / "metrics.csv")))
    assert [int(r["iteration"]) for r in rows if r["scope"] == "epoch"] == [8, 16]


def _start(args: list[str], cwd: Path, holds: Path, point: str) -> subprocess.Popen:
    """The trainer, held at ``point`` (img2img.testing.hold) until the test releases it."""
    return subprocess.Popen(
        [sys.executable, "-m", "img2img", "train", "pix2pix", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **hold_at(holds, point)},
    )


@pytest.fixture(scope="module")
def long_reference(shapes, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The weights of an uninterrupted 6-epoch run, for the interrupted ones to match."""
    out = tmp_path_factory.mktemp("ref") / "run"
    train_pix2pix(tiny(shapes, out, n_epochs=4, n_epochs_decay=2, save_latest_freq=5), stream=io.StringIO())
    return weights_of(out)


LONG_FLAGS = ["--n-epochs", "4", "--n-epochs-decay", "2", "--save-latest-freq", "5"]


def test_sigint_writes_latest_and_exits_130_then_resume_finishes(shapes, tmp_path, long_reference):
    run, holds = tmp_path / "run", tmp_path / "holds"
    proc = _start(["--data", str(shapes), "--out", str(run), *TINY_FLAGS, *LONG_FLAGS, "--print-freq", "1"], tmp_path,
                  holds, "iteration-3")  # fmt: skip
    try:
        wait_until_held(holds, "iteration-3", lambda: proc.poll() is None)
        proc.send_signal(signal.SIGINT)
        err = ""
        while "SIGINT: stopping after this iteration" not in err:  # handled while held
            line = proc.stderr.readline()
            assert line, err
            err += line
        release(holds, "iteration-3")
        err += proc.communicate(timeout=120)[1]  # a hang guard
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted (SIGINT) at epoch 1, iteration 3; checkpoint written" in err, err  # the iteration ran
    assert f"resume with: img2img train pix2pix --resume {run}" in err
    assert (run / "checkpoints" / "latest.safetensors").exists()
    assert list((run / "weights").glob("*.safetensors"))
    done = subprocess.run(
        [sys.executable, "-m", "img2img", "train", "pix2pix", "--resume", str(run)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,  # a hang guard
    )
    assert done.returncode == 0, done.stderr
    assert "resuming pix2pix" in done.stderr and "finished: pix2pix, 6 epochs" in done.stderr
    assert_same_weights(long_reference, weights_of(run))


def test_kill_9_loses_only_the_work_since_the_last_checkpoint(shapes, tmp_path, long_reference):
    run, holds = tmp_path / "run", tmp_path / "holds"
    latest = run / "checkpoints" / "latest.safetensors"
    # Held before iteration 8: the checkpoint of iteration 5 is written, iterations 6 and 7 are not.
    proc = _start(["--data", str(shapes), "--out", str(run), *TINY_FLAGS, *LONG_FLAGS], tmp_path, holds, "iteration-8")
    try:
        wait_until_held(holds, "iteration-8", lambda: proc.poll() is None)
        proc.kill()
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stored = json.loads(safe_open(str(latest), "pt").metadata()["img2img_checkpoint"])
    assert stored["iteration"] == 5
    code = _run_main(["train", "pix2pix", "--resume", str(run)])
    assert code == 0
    assert_same_weights(long_reference, weights_of(run))


def _run_main(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


# --- the run folder and what it holds --------------------------------------------------------------------


def test_run_folder_contents_and_export(shapes, tmp_path):
    run = tmp_path / "run"
    log = io.StringIO()
    result = train_pix2pix(tiny(shapes, run, save_epoch_freq=1), stream=log)
    import importlib.util

    report = ["report.html"] if importlib.util.find_spec("matplotlib") else []  # the report needs matplotlib
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["checkpoints", "config.json", "metrics.csv", "samples", "status.json", "weights", *report]
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "epoch_001.safetensors",
        "epoch_002.safetensors",
        "latest.safetensors",
    ]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "pix2pix" and config["seed"] == 0 and config["out"] == str(run)

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert {"G_GAN", "G_L1", "D_real", "D_fake", "val_L1", "val_PSNR"} <= set(rows[0])
    assert [r["scope"] for r in rows] == ["iter", "iter", "epoch", "iter", "iter", "epoch"]
    assert all(float(r["val_PSNR"]) > 0 for r in rows if r["scope"] == "epoch")

    from PIL import Image

    with Image.open(run / "samples" / "epoch_002.png") as grid:  # 2 rows of input | output | target
        assert grid.size == (2 + 3 * (32 + 2), 2 + 2 * (32 + 2))

    # the weights rebuild with no architecture flags, and compute what training validated
    weights = result.weights["AtoB"]
    assert weights == run / "weights" / "pix2pix_AtoB.safetensors"
    meta = read_metadata(weights)
    assert (meta.task, meta.direction, meta.eval_mode) == ("pix2pix", "AtoB", False)
    assert meta.generator.reference_name == "unet_32" and meta.generator.ngf == 8
    assert meta.preprocess["crop_size"] == 32
    loaded = load_generator(weights).net
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        y = loaded(x)
    assert y.shape == (2, 3, 32, 32) and y.abs().max() <= 1

    summary = log.getvalue()
    assert "finished: pix2pix, 2 epochs, 16 iterations" in summary
    assert f"weights (AtoB): {weights}" in summary and f"img2img translate INPUT... --model {weights}" in summary


@pytest.mark.parametrize(
    "changes",
    [
        dict(gan_mode="lsgan"),
        dict(gan_mode="wgangp"),
        dict(gan_mode="hinge", lr_policy="cosine"),
        dict(netg="resnet_2blocks", norm="instance", dropout=False, netd="pixel", lr_policy="step"),
        dict(amp=True, channels_last=False, batch_size=2, netd="n_layers", n_layers_d=2),
    ],
    ids=["lsgan", "wgangp", "hinge", "resnet-instance-pixel", "amp-batch2"],
)
def test_options_train(shapes, tmp_path, changes):
    result = train_pix2pix(tiny(shapes, tmp_path / "run", n_epochs_decay=0, **changes), stream=io.StringIO())
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    losses = [float(r[k]) for r in rows for k in ("G_GAN", "G_L1", "D_real", "D_fake")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    meta = read_metadata(result.weights["AtoB"])
    assert meta.eval_mode == (changes.get("norm", "batch") != "batch")


def test_only_the_main_rank_writes(shapes, tmp_path):
    stream = io.StringIO()
    config = tiny(shapes, tmp_path / "run", n_epochs_decay=0)
    result = Trainer(config, Pix2PixModel, pix2pix_data, stream=stream, dist=DistInfo(rank=1, world_size=2)).fit()
    assert result.iterations == 4  # half of the 8 images
    assert not (tmp_path / "run").exists() and stream.getvalue() == ""


def test_live_progress_bar(shapes, tmp_path):
    stream = io.StringIO()
    train_pix2pix(tiny(shapes, tmp_path / "run", n_epochs_decay=0), stream=stream, live=True)
    text = stream.getvalue()
    assert "8/8" in text and "img/s" in text and "finished: pix2pix" in text


# --- the command ---------------------------------------------------------------------------------------


def test_cli_two_folder_layout_btoa_grayscale(tmp_path, monkeypatch, capsys):
    data = write_shapes_dataset(tmp_path / "pairs", n_train=4, n_val=0, size=32, layout="two-folder")
    monkeypatch.chdir(tmp_path)
    code = _run_main(
        [
            "train",
            "pix2pix",
            "--data",
            str(data),
            *TINY_FLAGS,
            "--n-epochs",
            "1",
            "--n-epochs-decay",
            "0",
            "--direction",
            "BtoA",
            "--input-nc",
            "1",
            "--no-flip",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "4 training pairs (A/ and B/ folders)" in err and "validation: 2 training images (too few" in err
    weights = tmp_path / "runs" / "pairs_pix2pix" / "weights" / "pix2pix_BtoA.safetensors"
    meta = read_metadata(weights)
    assert (meta.direction, meta.generator.input_nc, meta.generator.output_nc) == ("BtoA", 1, 3)
    config = json.loads((tmp_path / "runs" / "pairs_pix2pix" / "config.json").read_text())
    assert (config["flip"], config["direction"]) == (False, "BtoA")


def test_cli_refuses_a_used_run_folder_and_reloads_a_config(shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "first"
    args = [
        "train",
        "pix2pix",
        "--data",
        str(shapes),
        "--out",
        str(run),
        *TINY_FLAGS,
        "--n-epochs",
        "1",
        "--n-epochs-decay",
        "0",
    ]
    assert _run_main(args) == 0
    capsys.readouterr()
    assert _run_main(args) == 2
    err = capsys.readouterr().err
    assert f"--out {run}: already holds a training run; continue it with --resume {run}" in err
    assert "--overwrite starts over, deleting its checkpoints" in err
    assert _run_main(["train", "pix2pix", "--resume", str(run)]) == 2
    assert "already finished its 1 epochs" in capsys.readouterr().err

    second = tmp_path / "second"
    code = _run_main(["train", "pix2pix", "--config", str(run / "config.json"), "--out", str(second), "--lr", "0.001"])
    assert code == 0, capsys.readouterr().err
    first_config = json.loads((run / "config.json").read_text())
    second_config = json.loads((second / "config.json").read_text())
    assert second_config["lr"] == 0.001 and second_config["out"] == str(second)
    assert {k: v for k, v in second_config.items() if k not in ("lr", "out")} == {
        k: v for k, v in first_config.items() if k not in ("lr", "out")
    }
    assert _run_main(["train", "pix2pix", "--resume", str(run), "--ngf", "16"]) == 2
    assert "--ngf cannot change" in capsys.readouterr().err
    assert _run_main(["train", "pix2pix", *args[2:], "--overwrite"]) == 0


def test_cli_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _run_main(["train", "pix2pix"]) == 2
    assert "--data" in capsys.readouterr().err
    assert _run_main(["train", "pix2pix", "--data", "x", "--gan-mode", "wgan"]) == 2
    assert _run_main(["train", "pix2pix", "--data", "x", "--netg", "unet_100"]) == 2
    assert "unknown generator" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_cli_tensorboard(shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [
        "train",
        "pix2pix",
        "--data",
        str(shapes),
        "--out",
        "run",
        *TINY_FLAGS,
        "--n-epochs",
        "1",
        "--n-epochs-decay",
        "0",
        "--tensorboard",
    ]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert _run_main(args) == 1
        assert "pip install tensorboard" in capsys.readouterr().err
        assert not (tmp_path / "run").exists()
    else:
        assert _run_main(args) == 0
        assert list((tmp_path / "run" / "tensorboard").glob("events.*"))


def test_cli_defaults_match_the_config():
    """The defaults shown in --help are the ones the config applies."""
    import typer.main

    from img2img.cli._app import app

    command = typer.main.get_command(app).commands["train"].commands["pix2pix"]
    config = Pix2PixConfig(data="x")
    renamed = {"no_flip": ("flip", lambda v: not v), "no_dropout": ("dropout", lambda v: not v)}
    for param in command.params:
        if param.name in ("data", "out", "resume", "config_file", "overwrite", "nproc", "max_pixels", "help"):
            continue
        field, convert = renamed.get(param.name, (param.name, lambda v: v))
        default = param.default.value if hasattr(param.default, "value") else param.default
        assert convert(default) == getattr(config, field), param.name
