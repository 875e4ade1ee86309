"""`img2img models info model.onnx` shows what the export wrote into the ONNX file (the weights
format's JSON and how to feed the model), as it does for a weights file; without the onnx extra
it says how to install it."""

from __future__ import annotations

import json
import sys

import pytest

from img2img.cli import main


def run_cli(args: list, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def test_models_info_reads_an_exported_onnx_file(tiny_generator, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from img2img.onnx.export import export_onnx

    target = tmp_path / "tiny.onnx"
    export_onnx(tiny_generator, target)
    code, out, err = run_cli(["models", "info", target, "--json"], capsys)
    assert code == 0, err
    onnx_info = json.loads(out)
    code, out, err = run_cli(["models", "info", tiny_generator, "--json"], capsys)
    weights_info = json.loads(out)
    for key in ("architecture", "generator", "task", "direction", "preprocess", "source", "img2img_version"):
        assert onnx_info[key] == weights_info[key], key
    assert onnx_info["format"] == "onnx" and onnx_info["path"] == str(target)
    assert onnx_info["layout"] == "NCHW" and onnx_info["input_range"] == "[-1, 1]"
    assert onnx_info["input_channels"] == "RGB" and onnx_info["output_channels"] == "RGB"
    assert onnx_info["size_multiple"] == "4" and onnx_info["input"] == "batch x 3 x 4*h x 4*w"
    code, out, err = run_cli(["models", "info", target], capsys)
    assert code == 0 and err == ""
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["format"] == "onnx" and lines["architecture"] == weights_info["architecture"]
    assert lines["input_range"] == "[-1, 1]"


def test_models_info_of_a_file_that_is_not_onnx(tmp_path, capsys):
    pytest.importorskip("onnx")
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"\x00not a protobuf at all" * 10)
    code, out, err = run_cli(["models", "info", fake], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1 and str(fake) in err and "Traceback" not in err


def test_models_info_onnx_without_the_extra(tmp_path, capsys, monkeypatch):
    (tmp_path / "m.onnx").write_bytes(b"whatever")
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    code, out, err = run_cli(["models", "info", tmp_path / "m.onnx"], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and 'pip install "img2img[onnx]"' in err
