"""`img2img export --quantize int8`: a quantised model with QLinear ops and metadata saying so,
which translate runs; refused (exit 1, no file) when its PSNR against fp32 is under 35 dB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from test_onnx import run_cli, tiny_model_file  # noqa: E402

# A tiny ResNet (batch norm with running statistics, grayscale): int8 keeps it ~48 dB from fp32
# on the procedural held-out scenes, well over the 35 dB bar.
TINY_RESNET = dict(arch="resnet", ngf=4, n_blocks=1, norm="batch", input_nc=1, output_nc=1, eval_mode=True)


@pytest.fixture
def tiny_resnet(tmp_path: Path) -> Path:
    return tiny_model_file(tmp_path / "tiny.safetensors", seed=3, **dict(TINY_RESNET))


def test_int8_export_writes_a_quantised_model_translate_runs(tiny_resnet, tmp_path, capsys):
    target = tmp_path / "tiny8.onnx"
    code, _, err = run_cli(["export", tiny_resnet, "-o", target, "--quantize", "int8"], capsys)
    assert code == 0, err
    assert "int8: PSNR against fp32 on 4 held-out images" in err
    model = onnx.load(str(target))
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props["img2img.quantization"] == "int8-static-qoperator-per-channel"
    assert props["img2img.quantization_psnr"].startswith("min ")
    assert float(props["img2img.quantization_psnr"].split()[1]) >= 35
    assert "img2img" in props and props["img2img.input_channels"] == "L"
    ops = {node.op_type for node in model.graph.node}
    assert "QLinearConv" in ops and "Conv" not in ops
    code, out, err = run_cli(["models", "info", target, "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["quantization"] == "int8-static-qoperator-per-channel"
    assert info["quantization_psnr"] == props["img2img.quantization_psnr"]

    source = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 45), dtype=np.uint8), "L").save(source)
    code, _, err = run_cli(["translate", source, "--model", target, "-o", tmp_path / "out.png"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "out.png").size == (45, 30)
    code, _, err = run_cli(
        ["translate", source, "--model", tmp_path / "tiny.safetensors", "-o", tmp_path / "ref.png"], capsys
    )
    assert code == 0, err
    got = np.asarray(Image.open(tmp_path / "out.png"), dtype=np.float64)
    expected = np.asarray(Image.open(tmp_path / "ref.png"), dtype=np.float64)
    assert np.abs(got - expected).mean() < 2  # close to fp32, not equal to it


def test_int8_below_the_bar_is_refused_and_writes_nothing(tiny_generator, tmp_path, capsys):
    # conftest's tiny instance-norm ResNet, calibrated on flat black images and checked on noise
    # (every other image is held out): the activation ranges are far too narrow for the held-out
    # images, and the int8 output is ~22 dB from fp32. Images of the --static size, the least
    # calibration takes (the images are cropped, never resized, to the size it checks at).
    folder = tmp_path / "calibration"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(4):
        Image.new("RGB", (40, 40), 0).save(folder / f"{index}a.png")
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "RGB").save(folder / f"{index}b.png")
    target = tmp_path / "out" / "tiny8.onnx"
    code, _, err = run_cli(
        ["export", tiny_generator, "-o", target, "--quantize", "int8", "--calibration", folder, "--static", "40x40"],
        capsys,
    )
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert "int8 quantisation refused" in last and "below the 35 dB bar" in last and "without --quantize" in last
    assert not target.exists() and list(tmp_path.rglob("*.onnx*")) == []


def test_calibration_needs_images_and_quantize(tiny_resnet, tmp_path, capsys):
    folder = tmp_path / "one"
    folder.mkdir()
    Image.new("L", (256, 256), 0).save(folder / "a.png")
    code, _, err = run_cli(
        ["export", tiny_resnet, "-o", tmp_path / "a.onnx", "--quantize", "int8", "--calibration", folder], capsys
    )
    assert code == 2 and "at least 8 images" in err and err.count("\n") == 1
    code, _, err = run_cli(["export", tiny_resnet, "-o", tmp_path / "a.onnx", "--calibration", folder], capsys)
    assert code == 2 and "need --quantize int8" in err
    code, _, err = run_cli(["export", tiny_resnet, "-o", tmp_path / "a.onnx", "--quantize", "int4"], capsys)
    assert code == 2 and "--quantize takes int8" in err
    assert list(tmp_path.glob("*.onnx")) == []


def test_int8_without_onnxruntime_is_the_extras_one_line(tiny_resnet, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, _, err = run_cli(["export", tiny_resnet, "-o", tmp_path / "a.onnx", "--quantize", "int8"], capsys)
    assert code == 1 and err.count("\n") == 1 and 'pip install "img2img[onnx]"' in err
    assert list(tmp_path.glob("*.onnx")) == []
