"""Everything that can be checked before a run starts is: the networks' size constraints
against the crop and batch, the dataset's shape, every image decoded on request. A failure
creates nothing, and a run that fails before its first checkpoint leaves nothing behind."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
import torch
from PIL import Image

from img2img.cli import main
from img2img.data.synthetic import write_shapes_dataset
from img2img.errors import DatasetError, UsageError
from img2img.models.config import DiscriminatorConfig, GeneratorConfig
from img2img.models.networks import build_discriminator, build_generator
from img2img.train import Pix2PixModel, pix2pix_data, train_pix2pix
from img2img.train.config import Pix2PixConfig
from img2img.train.size_check import shape_error, smallest_working_side

TINY = dict(ngf=4, ndf=4, n_epochs=1, n_epochs_decay=0, seed=0, val_size=1, n_samples=0, device="cpu")


def run_main(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=4, n_val=1, size=64)


# --- the networks' size constraints --------------------------------------------------------------


@pytest.mark.parametrize(
    "netd, n_layers, crop, norm, batch",
    [
        ("basic", 3, 16, "batch", 1),
        ("n_layers", 5, 32, "instance", 1),
        ("n_layers", 4, 32, "batch", 2),
        ("basic", 3, 20, "instance", 4),
    ],
)
def test_a_discriminator_too_deep_for_the_crop_is_a_usage_error(
    shapes, tmp_path, monkeypatch, capsys, netd, n_layers, crop, norm, batch
):
    monkeypatch.chdir(tmp_path)
    code = run_main(
        [
            "train",
            "pix2pix",
            "--data",
            str(shapes),
            "--out",
            "run",
            "--netg",
            "resnet_1blocks",
            "--ngf",
            "4",
            "--ndf",
            "4",
            "--netd",
            netd,
            "--n-layers-d",
            str(n_layers),
            "--load-size",
            str(crop),
            "--crop-size",
            str(crop),
            "--norm",
            norm,
            "--batch-size",
            str(batch),
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--netd {netd}" in err and f"--crop-size {crop}" in err and "at least" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_generator_too_deep_for_the_crop_is_a_usage_error(shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = run_main(
        [
            "train",
            "pix2pix",
            "--data",
            str(shapes),
            "--out",
            "run",
            "--netg",
            "resnet_1blocks",
            "--ngf",
            "4",
            "--ndf",
            "4",
            "--netd",
            "pixel",
            "--load-size",
            "4",
            "--crop-size",
            "4",
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--netg resnet_1blocks" in err and "at least 8" in err
    assert not (tmp_path / "run").exists()


def test_unet_sizes_state_their_minimum():
    with pytest.raises(UsageError, match="power of two, at least 32"):
        Pix2PixConfig(data="d", netg="unet_16")
    for num_downs in range(5, 9):  # unet_32 .. unet_256: the true minimum is N itself
        net = build_generator(GeneratorConfig(arch="unet", num_downs=num_downs, ngf=2, norm="batch"))
        side = 2**num_downs
        assert smallest_working_side(net, 1, side) == side
        assert shape_error(net, 1, side // 2, side // 2) is not None


def test_the_meta_check_agrees_with_real_training_steps():
    """The up-front check (on the meta device) says a network trains exactly when a real
    forward and backward on the CPU succeed, over depths, sizes, norms and batch sizes."""
    cases = itertools.product(
        ("basic", "n_layers", "pixel"), (1, 2, 4), (12, 16, 24, 32), ("batch", "instance"), (1, 2)
    )
    for arch, n_layers, side, norm, batch in cases:
        if arch != "n_layers" and n_layers != 1:
            continue
        net = build_discriminator(DiscriminatorConfig(arch=arch, input_nc=2, ndf=2, n_layers=n_layers, norm=norm))
        predicted = shape_error(net, batch, side, side)
        try:
            net(torch.zeros(batch, 2, side, side)).sum().backward()
            real = None
        except (RuntimeError, ValueError) as exc:
            real = str(exc)
        assert (predicted is None) == (real is None), (arch, n_layers, side, norm, batch, predicted, real)
    for n_blocks, side, norm in itertools.product((0, 1), (4, 8), ("instance", "batch")):
        net = build_generator(GeneratorConfig(arch="resnet", n_blocks=n_blocks, ngf=2, norm=norm))
        predicted = shape_error(net, 1, side, side)
        try:
            net(torch.zeros(1, 3, side, side)).sum().backward()
            real = None
        except (RuntimeError, ValueError) as exc:
            real = str(exc)
        assert (predicted is None) == (real is None), (n_blocks, side, norm, predicted, real)


# --- the run folder -----------------------------------------------------------------------------------


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(shapes, tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = Pix2PixConfig(**TINY, data=str(shapes), netg="unet_32", load_size=32, crop_size=32, out=str(run))

    def boom(self, batch):
        raise RuntimeError("something failed in the first iteration")

    with monkeypatch.context() as patch:
        patch.setattr(Pix2PixModel, "train_step", boom)
        with pytest.raises(RuntimeError, match="first iteration"):
            train_pix2pix(config, stream=io.StringIO())
    assert not run.exists()
    train_pix2pix(config, stream=io.StringIO())  # the same command again works


def test_a_folder_whose_run_never_checkpointed_can_be_reused(shapes, tmp_path):
    """A run killed before its first checkpoint left config.json and empty folders behind."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "metrics.csv").write_text("scope,epoch\n")
    config = Pix2PixConfig(**TINY, data=str(shapes), netg="unet_32", load_size=32, crop_size=32, out=str(run))
    result = train_pix2pix(config, stream=io.StringIO())
    assert result.iterations > 0 and (run / "checkpoints" / "latest.safetensors").exists()
    with pytest.raises(UsageError, match="--resume") as info:  # now it holds a run
        train_pix2pix(config, stream=io.StringIO())
    assert "deleting its checkpoints" in str(info.value)


# --- the data -------------------------------------------------------------------------------------------


def test_aligned_images_far_from_two_to_one_get_a_warning(tmp_path):
    root = tmp_path / "photos"
    (root / "train").mkdir(parents=True)
    for index in range(3):
        Image.new("RGB", (48, 40), (index * 40, 0, 0)).save(root / "train" / f"{index}.png")
    config = Pix2PixConfig(
        **TINY, data=str(root), netg="unet_32", preprocess="resize_and_crop", load_size=32, crop_size=32
    )
    data = pix2pix_data(config)
    assert len(data.warnings) == 1
    assert "far from the 2:1" in data.warnings[0] and "train/A/" in data.warnings[0]
    assert "img2img data combine" in data.warnings[0]
    pairs = write_shapes_dataset(tmp_path / "pairs", n_train=3, n_val=0, size=32)
    assert not pix2pix_data(Pix2PixConfig(**TINY, data=str(pairs), netg="unet_32", load_size=32, crop_size=32)).warnings


def truncate(path: Path) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def test_check_data_full_and_data_check_decode_every_image(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = write_shapes_dataset(tmp_path / "shapes", n_train=4, n_val=1, size=32)
    assert run_main(["data", "check", str(data)]) == 0
    assert "ok:" in capsys.readouterr().err
    broken = truncate(data / "train" / "0002.png")
    assert run_main(["data", "check", str(data), "--header-only"]) == 0  # the header still reads
    capsys.readouterr()
    assert run_main(["data", "check", str(data)]) == 1
    err = capsys.readouterr().err
    assert "cannot be decoded" in err and "0002.png" in err and err.count("\n") == 1
    flags = [
        "--netg",
        "unet_32",
        "--ngf",
        "4",
        "--ndf",
        "4",
        "--load-size",
        "32",
        "--crop-size",
        "32",
        "--device",
        "cpu",
    ]
    assert run_main(["train", "pix2pix", "--data", str(data), "--out", "run", "--check-data", "full", *flags]) == 1
    assert "0002.png" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with pytest.raises(DatasetError, match="cannot be decoded"):
        config = Pix2PixConfig(**TINY, data=str(data), netg="unet_32", load_size=32, crop_size=32, check_data="full")
        pix2pix_data(config)
    broken.unlink()
    assert run_main(["data", "check", str(data)]) == 0


def test_an_image_that_fails_to_decode_during_training_ends_it_like_a_signal(tmp_path):
    data = write_shapes_dataset(tmp_path / "shapes", n_train=4, n_val=1, size=32)
    broken = truncate(data / "train" / "0001.png")
    run = tmp_path / "run"
    config = Pix2PixConfig(
        **TINY, data=str(data), netg="unet_32", load_size=32, crop_size=32, out=str(run), save_latest_freq=100
    )
    with pytest.raises(DatasetError) as info:
        train_pix2pix(config, stream=io.StringIO())
    message = str(info.value)
    assert str(broken) in message and "fix or remove the file" in message
    assert f"resume with: img2img train pix2pix --resume {run}" in message
    assert (run / "checkpoints" / "latest.safetensors").exists()
