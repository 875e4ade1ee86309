"""Every value read from a file and printed on a terminal is escaped (issue 25 item 2): a
newline in a weights file's ``source`` forged a ``direction BtoA`` line in ``models info``, and
an ANSI escape in it reached the terminal. models info (weights and ONNX metadata), notes and
errors all print through img2img.files.text.one_line."""

from __future__ import annotations

import logging

import pytest
from conftest import make_generator_file

from img2img.cli import main
from img2img.files.text import one_line

FORGED = "my run\ndirection        BtoA\x1b[31m red\x1b]0;title\x07 \u202egnp.exe"


def run(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def assert_not_forged(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert not any(line.startswith("direction        BtoA") for line in text.splitlines())


def test_models_info_escapes_a_weights_files_source(tmp_path, capsys):
    weights = make_generator_file(tmp_path / "g.safetensors", source=FORGED, direction="AtoB")
    code, out, err = run(["models", "info", weights], capsys)
    assert code == 0, err
    assert_not_forged(out)
    [direction] = [line for line in out.splitlines() if line.startswith("direction ")]
    assert direction.split() == ["direction", "AtoB"]
    [source] = [line for line in out.splitlines() if line.startswith("source ")]
    assert "my run\\ndirection" in source and "\\x1b[31m" in source and "\\u202e" in source


def test_models_info_escapes_onnx_metadata(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from img2img.models.weights import read_metadata
    from img2img.onnx.export import onnx_metadata

    weights = make_generator_file(tmp_path / "g.safetensors", direction="AtoB")
    metadata = read_metadata(weights)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    props = onnx_metadata(metadata.to_json(), metadata.generator, None)
    props["img2img.quantization_psnr"] = FORGED
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    code, out, err = run(["models", "info", path], capsys)
    assert code == 0, err
    assert_not_forged(out)
    assert [line.split() for line in out.splitlines() if line.startswith("direction ")] == [["direction", "AtoB"]]


def test_notes_that_quote_a_file_are_one_escaped_line(capsys):
    from img2img.cli import _notes

    _notes.install()
    logging.getLogger("img2img.test").warning("a file says: %s", FORGED)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert_not_forged(err)


def test_one_line_escapes_direction_overrides_and_keeps_ordinary_text():
    assert one_line("photo \u202eevil") == "photo \\u202eevil"
    assert one_line("été ☃ 写真") == "été ☃ 写真"
