"""One pixel limit for every image reader: the dataset's header check (`data check
--header-only`, the check before training) refuses what the decoder would refuse, and both take
--max-pixels / IMG2IMG_MAX_PIXELS as translate does."""

from __future__ import annotations

import pytest

from img2img.cli import main
from img2img.data.synthetic import write_shapes_dataset

ENV = "IMG2IMG_MAX_PIXELS"


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    # Set then removed, so that whatever a command sets is undone after the test.
    monkeypatch.setenv(ENV, "1")
    monkeypatch.delenv(ENV)
    # aligned A|B pairs of 32x32 each: 64x32 = 2048 pixels a file
    return write_shapes_dataset(tmp_path / "shapes", n_train=2, n_val=1, size=32)


def run(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main([str(arg) for arg in args])
    return info.value.code or 0, capsys.readouterr().err


@pytest.mark.parametrize("header_only", [True, False], ids=["header-only", "full"])
def test_data_check_honours_max_pixels(dataset, capsys, header_only):
    flags = ["--header-only"] if header_only else []
    code, err = run(["data", "check", dataset, *flags, "--max-pixels", 2000], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert "2048 pixels, more than the limit of 2000" in err and "0000.png" in err
    assert "--max-pixels 2048" in err  # how to lift it
    code, err = run(["data", "check", dataset, *flags, "--max-pixels", 2048], capsys)
    assert code == 0 and err.startswith("ok:"), err


def test_data_check_honours_the_environment(dataset, capsys, monkeypatch):
    monkeypatch.setenv(ENV, "2000")
    code, err = run(["data", "check", dataset, "--header-only"], capsys)
    assert code == 1 and "more than the limit of 2000" in err


def test_training_checks_the_limit_before_anything_is_written(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run(
        [
            "train",
            "pix2pix",
            "--data",
            dataset,
            "--out",
            out,
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
            "--n-epochs",
            "1",
            "--n-epochs-decay",
            "0",
            "--device",
            "cpu",
            "--max-pixels",
            2000,
        ],
        capsys,
    )
    assert code == 1 and "more than the limit of 2000" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_the_advice_to_lift_the_limit_is_given_once(dataset, capsys):
    code, err = run(["data", "check", dataset, "--max-pixels", 2000], capsys)
    assert code == 1 and err.count("more than the limit of 2000") == 3, err  # the three files
    assert err.count("pass --max-pixels 2048") == 3, err  # once each, not twice


def _pair_folders(tmp_path):
    from PIL import Image

    for side in ("A", "B"):
        (tmp_path / side).mkdir()
        Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / side / "x.png")
    return tmp_path / "A", tmp_path / "B"


def _cityscapes(tmp_path):
    import io
    import zipfile

    from PIL import Image

    def png() -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (64, 32), (0, 150, 60)).save(out, "PNG")
        return out.getvalue()

    gt, left = tmp_path / "gtFine.zip", tmp_path / "leftImg8bit.zip"
    with zipfile.ZipFile(gt, "w") as g, zipfile.ZipFile(left, "w") as photos:
        g.writestr("gtFine/train/aachen/a_000000_000019_gtFine_color.png", png())
        g.writestr("gtFine/train/aachen/a_000000_000019_gtFine_labelIds.png", png())
        photos.writestr("leftImg8bit/train/aachen/a_000000_000019_leftImg8bit.png", png())
    return gt, left


@pytest.mark.parametrize("command", ["combine", "prepare"])
def test_every_data_command_that_decodes_images_takes_the_limit_it_advises(tmp_path, capsys, monkeypatch, command):
    """A pixel-limit error advises `--max-pixels N`: the command that printed it must take it."""
    monkeypatch.setenv(ENV, "1")
    monkeypatch.delenv(ENV)
    if command == "combine":
        a, b = _pair_folders(tmp_path)
        args, pixels = ["data", "combine", a, b, tmp_path / "out"], 1200
    else:
        gt, left = _cityscapes(tmp_path)
        args, pixels = (
            ["data", "prepare", "cityscapes", "--gtfine", gt, "--leftimg8bit", left, "--out", tmp_path / "out"],
            2048,
        )
    code, err = run([*args, "--max-pixels", 100], capsys)
    assert code != 0 and f"pass --max-pixels {pixels}" in err and "Traceback" not in err, err
    assert "No such option" not in err
    code, err = run([*args, "--max-pixels", pixels], capsys)
    assert code == 0, err
