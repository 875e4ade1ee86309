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
