"""`export --quantize int8`: calibration sets that can stand for the inputs, the PSNR bar
measured at the size the model runs at (issue 24 item 5), and errors that blame the right thing
and name only export's options (issue 25 item 5): a full temporary folder names that folder and
TMPDIR, not the output; the pixel limit's advice names --max-pixels, which export takes."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from test_onnx import run_cli, tiny_model_file  # noqa: E402
from test_onnx_quantize import TINY_RESNET  # noqa: E402


@pytest.fixture
def tiny_resnet(tmp_path: Path) -> Path:
    return tiny_model_file(tmp_path / "tiny.safetensors", seed=3, **dict(TINY_RESNET))


def photos(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> Path:
    """``count`` grayscale noise pictures of ``size`` (width, height), textured like photos."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        array = rng.normal(128, 50, (size[1], size[0])).clip(0, 255).astype(np.uint8)
        Image.fromarray(array, "L").save(folder / f"{index:02d}.png")
    return folder


def test_thumbnails_are_refused_naming_one_and_the_size(tiny_resnet, tmp_path, capsys):
    """The issue's four 20x12 thumbnails, scaled up to 256x256, recorded 38.7 dB; photos got 30.8."""
    folder = photos(tmp_path / "thumbs", 8, (20, 12))
    code, _, err = run_cli(
        ["export", tiny_resnet, "-o", tmp_path / "a.onnx", "--quantize", "int8", "--calibration", folder], capsys
    )
    assert code == 2
    [line] = err.strip().splitlines()
    assert str(folder / "00.png") in line and "20x12 is smaller than 256x256" in line and "--static" in line
    assert not (tmp_path / "a.onnx").exists()


@pytest.mark.parametrize("count, option", [(4, None), (12, "2")])
def test_too_few_calibration_images_are_refused_with_the_limit(tiny_resnet, tmp_path, capsys, count, option):
    folder = photos(tmp_path / "few", count, (256, 256))
    args = ["export", tiny_resnet, "-o", tmp_path / "a.onnx", "--quantize", "int8", "--calibration", folder]
    code, _, err = run_cli(args + (["--calibration-count", option] if option else []), capsys)
    assert code == 2
    [line] = err.strip().splitlines()
    assert ("at least 8 images" in line and f"found {count}" in line) if option is None else "fewer than 4" in line
    assert not (tmp_path / "a.onnx").exists()


def test_calibration_images_are_cropped_at_their_own_resolution_not_resized(tmp_path):
    """A fine texture must reach the model as it will when translated: scaling a picture to the
    check size (down or up) changes its pixel statistics, and with them the measured PSNR."""
    from img2img.onnx.quantize import folder_images

    folder = tmp_path / "fine"
    folder.mkdir()
    checker = (np.indices((300, 420)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard
    Image.fromarray(checker, "L").save(folder / "a.png")
    [array] = folder_images(folder, (256, 256), 1, 1)
    assert array.shape == (1, 1, 256, 256)
    assert set(np.unique(array)) == {-1.0, 1.0}  # resized, it would be a flat grey


def test_the_recorded_psnr_says_the_size_it_was_measured_at(tiny_resnet, tmp_path, capsys):
    folder = photos(tmp_path / "photos", 8, (64, 48))
    target = tmp_path / "a.onnx"
    args = ["export", tiny_resnet, "-o", target, "--quantize", "int8", "--calibration", folder, "--static", "48x64"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    props = {prop.key: prop.value for prop in onnx.load(str(target)).metadata_props}
    assert props["img2img.quantization_psnr"].endswith("on 4 held-out images of 64x48")


def test_a_full_temporary_folder_names_it_and_tmpdir_not_the_output(tiny_resnet, tmp_path, capsys, monkeypatch):
    """A full /tmp was blamed on the output file, on a disk with 58 GB free. The temporary
    folder fills here when the export's intermediate model is saved there."""
    scratch_disk = tmp_path / "small-disk"
    scratch_disk.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch_disk))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    real_save = onnx.save_model

    def save(model, path, *args, **kwargs):
        if str(path).startswith(str(scratch_disk)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(model, path, *args, **kwargs)

    monkeypatch.setattr(onnx, "save_model", save)
    monkeypatch.setattr(onnx, "save", save)
    target = tmp_path / "out" / "a.onnx"
    code, _, err = run_cli(["export", tiny_resnet, "-o", target, "--quantize", "int8"], capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert str(scratch_disk) in last and f"TMPDIR={scratch_disk}" in last and "No space left on device" in last
    assert str(target) not in last
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []


def test_the_pixel_limits_advice_names_an_option_export_has(tiny_resnet, tmp_path, capsys, monkeypatch):
    folder = photos(tmp_path / "big", 8, (120, 100))
    monkeypatch.setenv("IMG2IMG_MAX_PIXELS", "10000")  # restored after the test, as export's option sets it
    args = [
        "export",
        tiny_resnet,
        "-o",
        tmp_path / "a.onnx",
        "--quantize",
        "int8",
        "--calibration",
        folder,
        "--static",
        "32x32",
    ]
    code, _, err = run_cli(args, capsys)
    assert code == 1
    [line] = err.strip().splitlines()
    assert "--max-pixels 12000" in line
    code, _, err = run_cli(args + ["--max-pixels", "12000"], capsys)
    assert code == 0, err
    assert (tmp_path / "a.onnx").is_file()
