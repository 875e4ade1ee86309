"""The shared training infrastructure: checkpoints, RNG, schedules, run folder, config, losses,
signals, progress, metrics, rank-awareness."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from img2img.errors import DeviceError, Img2ImgError, UsageError, WeightsError
from img2img.runtime.devices import resolve_device
from img2img.train import checkpoint as ckpt
from img2img.train.config import Pix2PixConfig, TrainConfig
from img2img.train.losses import GANLoss, gradient_penalty
from img2img.train.progress import MetricsLog, Progress
from img2img.train.run_folder import RunFolder, default_run_dir, load_run_config
from img2img.train.runtime import Amp, DistInfo
from img2img.train.samples import image_grid
from img2img.train.schedules import build_scheduler
from img2img.train.signals import StopSignals

# --- checkpoint files ---------------------------------------------------------------------------


def _optimizer_with_state():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    return net, opt


def test_pack_unpack_round_trip_keeps_types():
    _, opt = _optimizer_with_state()
    state = {"opt": opt.state_dict(), "misc": {3: (1, 2.5, None), "s": [True, "x"]}}
    tensors: dict[str, torch.Tensor] = {}
    desc = ckpt.pack(state, "s", tensors)
    json.dumps(desc)  # plain JSON
    back = ckpt.unpack(json.loads(json.dumps(desc)), tensors)
    assert back["misc"] == {3: (1, 2.5, None), "s": [True, "x"]}
    assert back["opt"]["param_groups"] == state["opt"]["param_groups"]
    for index, values in state["opt"]["state"].items():
        for key, value in values.items():
            assert torch.equal(back["opt"]["state"][index][key], value)


def test_checkpoint_round_trip_restores_optimizer_and_rng(tmp_path):
    net, opt = _optimizer_with_state()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = tmp_path / "c.safetensors"
    ckpt.save_checkpoint(path, {"opt": opt.state_dict(), "rng": ckpt.rng_state()}, {"epoch": 4})
    expected = (random.random(), np.random.rand(), torch.rand(2))
    loaded = ckpt.load_checkpoint(path)
    assert loaded.info["epoch"] == 4 and ckpt.read_checkpoint_info(path)["epoch"] == 4
    ckpt.set_rng_state(loaded.state["rng"])
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(2), expected[2])
    fresh = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))
    fresh.load_state_dict(loaded.state["opt"])
    assert fresh.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "latest.safetensors"
    ckpt.save_checkpoint(path, {"x": torch.ones(3)}, {"epoch": 1})

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", crash)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(path, {"x": torch.zeros(3)}, {"epoch": 2})
    loaded = ckpt.load_checkpoint(path)
    assert loaded.info["epoch"] == 1 and torch.equal(loaded.state["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["latest.safetensors"]  # no temporary left


def test_checkpoint_loading_refuses_other_files(tmp_path):
    other = tmp_path / "weights.safetensors"
    save_file({"a": torch.ones(1)}, other)
    with pytest.raises(WeightsError, match="not an img2img training checkpoint"):
        ckpt.load_checkpoint(other)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        ckpt.load_checkpoint(tmp_path / "junk.safetensors")


# --- schedules, devices, AMP ----------------------------------------------------------------------


def _config(**changes) -> Pix2PixConfig:
    return Pix2PixConfig(**{"data": "data", **changes})


def _step(scheduler) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no optimizer step in these tests
        scheduler.step()


def test_linear_schedule_is_the_references():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(opt, _config(n_epochs=3, n_epochs_decay=4))
    rates = []
    for _ in range(7):
        rates.append(opt.param_groups[0]["lr"])
        _step(scheduler)
    # reference: 1 - max(0, epoch + epoch_count - n_epochs) / (n_epochs_decay + 1), epoch_count 1
    assert rates == pytest.approx([1 - max(0, e + 1 - 3) / 5 for e in range(7)])
    assert rates[:3] == [1.0, 1.0, 1.0] and rates[-1] == pytest.approx(0.2)


@pytest.mark.parametrize("policy", ["step", "cosine"])
def test_other_schedules(policy):
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(opt, _config(lr_policy=policy, lr_decay_iters=2, n_epochs=2, n_epochs_decay=2))
    for _ in range(4):
        _step(scheduler)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 if policy == "step" else 0.0, abs=1e-9)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(DeviceError, match="CUDA"):
            resolve_device("cuda:1")
    with pytest.raises(UsageError):
        resolve_device("gpu7")
    with pytest.raises(UsageError, match="fp16 needs a CUDA"):
        Amp(True, "fp16", torch.device("cpu"))
    amp = Amp(True, "bf16", torch.device("cpu"))
    with amp.autocast():
        assert torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.bfloat16


def test_dist_info_from_env(monkeypatch):
    assert DistInfo.from_env().is_main
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = DistInfo.from_env()
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (1, 2, 1, False)


# --- config ---------------------------------------------------------------------------------------


def test_config_defaults_are_the_references():
    cfg = _config()
    assert (cfg.netg, cfg.netd, cfg.norm, cfg.dropout, cfg.gan_mode) == ("unet_256", "basic", "batch", True, "vanilla")
    assert (cfg.lambda_l1, cfg.lr, cfg.beta1, cfg.batch_size) == (100.0, 2e-4, 0.5, 1)
    assert (cfg.n_epochs, cfg.n_epochs_decay, cfg.load_size, cfg.crop_size, cfg.flip) == (100, 100, 286, 256, True)
    assert (cfg.init_type, cfg.init_gain, cfg.lr_policy) == ("normal", 0.02, "linear")
    g = cfg.generator_config
    assert (g.arch, g.num_downs, g.ngf, g.norm, g.use_dropout) == ("unet", 8, 64, "batch", True)
    assert cfg.discriminator.input_nc == 6 and cfg.discriminator.effective_n_layers == 3


def test_config_round_trip_and_validation():
    cfg = _config(seed=3, gan_mode="hinge")
    assert Pix2PixConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(UsageError, match="unknown Pix2PixConfig options: bogus"):
        Pix2PixConfig.from_dict({"data": "d", "bogus": 1})
    with pytest.raises(UsageError, match="not a pix2pix"):
        Pix2PixConfig.from_dict({"data": "d", "task": "cyclegan"})
    with pytest.raises(UsageError, match="--gan-mode"):
        _config(gan_mode="wgan")
    with pytest.raises(UsageError, match="unknown generator"):
        _config(netg="unet_100")
    with pytest.raises(UsageError, match="--input-nc must be 1 or 3"):
        _config(input_nc=2)
    assert issubclass(Pix2PixConfig, TrainConfig)


def test_default_run_dir():
    assert str(default_run_dir(_config(data="datasets/facades/"))) == os.path.join("runs", "facades_pix2pix")


def test_run_folder_refuses_a_used_folder(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.check_new(overwrite=False)  # missing is fine
    run.root.mkdir()
    run.check_new(overwrite=False)  # empty is fine
    (run.root / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already holds files.*--overwrite"):
        run.check_new(overwrite=False)
    run.check_new(overwrite=True)
    run.create(overwrite=True)
    assert (run.root / "notes.txt").exists()  # --overwrite removes only a run's own files


def test_resume_config_keeps_the_run_config(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.create(overwrite=False)
    run.write_config(_config(seed=5, lr=1e-3, out=str(run.root)))
    with pytest.raises(UsageError, match="no checkpoint to resume from"):
        load_run_config(run.root, Pix2PixConfig, {})
    run.latest.write_bytes(b"")
    cfg = load_run_config(run.root, Pix2PixConfig, {"n_epochs": 300, "device": "cpu", "lr": 1e-3})
    assert (cfg.seed, cfg.lr, cfg.n_epochs, cfg.device) == (5, 1e-3, 300, "cpu")
    with pytest.raises(UsageError, match="--lr, --ngf cannot change"):
        load_run_config(run.root, Pix2PixConfig, {"lr": 0.1, "ngf": 8})
    with pytest.raises(UsageError, match="no such run folder"):
        load_run_config(tmp_path / "nope", Pix2PixConfig, {})


# --- losses -----------------------------------------------------------------------------------------


def test_gan_losses():
    logits = torch.tensor([[2.0, -1.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert GANLoss("vanilla")(logits, True) == pytest.approx(bce(logits, torch.ones(1, 2)).item())
    assert GANLoss("lsgan")(logits, False) == pytest.approx(((logits) ** 2).mean().item())
    assert GANLoss("wgangp")(logits, True) == pytest.approx(-0.5)
    assert GANLoss("wgangp")(logits, False) == pytest.approx(0.5)
    hinge = GANLoss("hinge")
    assert hinge(logits, True, for_discriminator=True) == pytest.approx((0 + 2) / 2)
    assert hinge(logits, False, for_discriminator=True) == pytest.approx((3 + 0) / 2)
    assert hinge(logits, True) == pytest.approx(-0.5)
    assert GANLoss("vanilla")(logits.bfloat16(), True).dtype == torch.float32
    with pytest.raises(UsageError):
        GANLoss("wgan")


def test_gradient_penalty_of_a_linear_critic():
    weight = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)  # gradient norm 5 everywhere

    def critic(x):
        return (x * weight).sum(dim=(1, 2, 3))

    real, fake = torch.randn(4, 2, 1, 1), torch.randn(4, 2, 1, 1)
    assert gradient_penalty(critic, real, fake, weight=10.0).item() == pytest.approx(10 * (5 - 1) ** 2, rel=1e-4)


# --- signals, progress, metrics ---------------------------------------------------------------------


def test_stop_signals_finish_the_iteration():
    messages = []
    # raise_signal: delivered to this thread and handled before it returns (os.kill may be
    # delivered to another of the process's threads, and handled a little later).
    with StopSignals(messages.append) as signals:
        signal.raise_signal(signal.SIGTERM)
        assert signals.requested and signals.exit_code == 143
        assert "SIGTERM" in messages[0]
    with StopSignals(messages.append) as signals:
        signal.raise_signal(signal.SIGINT)
        assert signals.requested and signals.exit_code == 130
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # a second Ctrl-C stops at once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_progress_prints_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    progress = Progress(total_epochs=2, iters_per_epoch=10, batch_size=1, stream=stream)
    assert not progress.live
    progress.start(0)
    progress.update(epoch=0, epoch_iter=1, iteration=1, losses={"G_GAN": torch.tensor(0.5)})
    assert stream.getvalue() == ""
    progress.interval(epoch=0, epoch_iter=5, iteration=5, losses={"G_GAN": 0.5, "G_L1": 12.0})
    line = stream.getvalue()
    assert line.startswith("epoch 1/2 iter 5/10") and "img/s" in line and "eta" in line and "G_L1 12.000" in line


def test_live_progress_bar_renders():
    stream = io.StringIO()
    progress = Progress(total_epochs=1, iters_per_epoch=4, batch_size=1, stream=stream, live=True)
    progress.start(0)
    for i in range(1, 5):
        progress.update(epoch=0, epoch_iter=i, iteration=i, losses={"G_GAN": torch.tensor(0.25)})
    progress.log("a message")
    progress.stop()
    text = stream.getvalue()
    assert "a message" in text and "G_GAN 0.250" in text and "4/4" in text


def test_metrics_log_drops_rows_after_the_checkpoint(tmp_path):
    log = MetricsLog(tmp_path / "metrics.csv", ["G_L1"], ["val_L1"])
    log.open()
    for iteration in (10, 20, 30):
        log.write({"scope": "iter", "epoch": 1, "iteration": iteration, "G_L1": 1.5})
    log.open(keep_until=20)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "scope,epoch,iteration,elapsed_s,lr,G_L1,val_L1"
    assert [line.split(",")[2] for line in lines[1:]] == ["10", "20"]


def test_image_grid_handles_channels_and_sizes():
    grid = image_grid([[torch.zeros(1, 8, 8), torch.ones(3, 8, 8)], [torch.full((3, 4, 6), -1.0)]])
    assert grid.dtype == torch.uint8 and grid.shape == (3, 2 + 8 + 2 + 4 + 2, 2 + 8 + 2 + 8 + 2)
    assert grid[:, 2, 2].tolist() == [128, 128, 128] and grid[:, 2, 12].tolist() == [255, 255, 255]


def test_tensorboard_missing_is_a_clear_error(monkeypatch):
    import builtins

    from img2img.train.progress import tensorboard_missing

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    error = tensorboard_missing()
    assert isinstance(error, Img2ImgError) and "pip install tensorboard" in str(error)
