"""Without the onnx extra, export and .onnx models in translate say how to install it."""

from __future__ import annotations

import sys

import pytest

from img2img.cli import main


@pytest.mark.parametrize("missing", ["onnx", "onnxscript", "onnxruntime"])
def test_missing_extra_is_one_line_naming_the_install_command(tiny_generator, tmp_path, capsys, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` raise ImportError
    with pytest.raises(SystemExit) as info:
        main(["export", str(tiny_generator), "-o", str(tmp_path / "a.onnx")])
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert err.count("\n") == 1 and 'pip install "img2img[onnx]"' in err and missing in err
    assert list(tmp_path.glob("*.onnx")) == []


def test_translate_with_an_onnx_model_and_no_onnxruntime(tmp_path, capsys, monkeypatch):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "m.onnx").write_bytes(b"whatever")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(SystemExit) as info:
        main(["translate", str(tmp_path / "a.png"), "--model", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "b.png")])
    err = capsys.readouterr().err
    assert info.value.code == 1 and 'pip install "img2img[onnx]"' in err and err.count("\n") == 1
    assert not (tmp_path / "b.png").exists()
