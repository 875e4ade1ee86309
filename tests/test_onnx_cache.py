"""The ONNX cache is untrusted input (issue 25 item 1): a copy planted under a weights file's
name that matches the real export on one 32x32 probe and computes something else at other sizes
was used silently. A cached copy is checked against the digest recorded when img2img wrote it,
against the weights file (graph names, metadata, the weights' SHA-256) and against PyTorch on two
probes of different sizes and aspects; a copy that fails is exported again, with a note.

The rest of the suite pins IMG2IMG_ENGINE=torch (conftest); the avx2 fixture unsets it."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from test_engines import avx2, image, model, needs_onnx, pixels  # noqa: F401 (avx2: a fixture)

from img2img.translate import engines
from img2img.translate.translator import Translator


def _scale_away_from_the_probe(path, unit: int) -> None:
    """Rewrite the ONNX file at ``path`` so that its output is multiplied by 1 - 0.02 * |H - unit|:
    the same as the real export at height ``unit`` (the old single probe), 8 % off elsewhere."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["orig" if name == "output" else name for name in node.output]
    graph.initializer.extend([
        helper.make_tensor("h_index", TensorProto.INT64, [1], [2]),
        helper.make_tensor("unit", TensorProto.FLOAT, [1], [float(unit)]),
        helper.make_tensor("rate", TensorProto.FLOAT, [1], [0.02]),
        helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]),
    ])  # fmt: skip
    graph.node.extend([
        helper.make_node("Shape", ["input"], ["shape"]),
        helper.make_node("Gather", ["shape", "h_index"], ["h"]),
        helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["hf", "unit"], ["off"]),
        helper.make_node("Abs", ["off"], ["dist"]),
        helper.make_node("Mul", ["dist", "rate"], ["loss"]),
        helper.make_node("Sub", ["one", "loss"], ["factor"]),
        helper.make_node("Mul", ["orig", "factor"], ["output"]),
    ])  # fmt: skip
    onnx.save(model, str(path))


def _forge_digest(path) -> None:
    engines.digest_path(path).write_text(engines.file_sha256(path) + "\n")


def _notes(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


@needs_onnx
@pytest.mark.parametrize("forged_digest", [False, True])
def test_a_planted_copy_that_matches_one_probe_only_is_exported_again(tmp_path, avx2, caplog, forged_digest):
    from img2img.models.weights import read_metadata
    from img2img.onnx.export import _unit

    weights = model(tmp_path)
    expected = pixels(Translator(weights, device="cpu", engine="torch").translate_image(image()))
    cached = engines.cached_export(weights)
    _scale_away_from_the_probe(cached, _unit(read_metadata(weights).generator))
    if forged_digest:  # whoever planted it also wrote the sidecar: the second probe catches it
        _forge_digest(cached)
    planted = cached.read_bytes()
    with caplog.at_level(logging.WARNING, logger="img2img"):
        translator = Translator(weights, device="cpu", engine="onnxruntime")
    assert translator.engine.name == "onnxruntime"
    assert np.abs(pixels(translator.translate_image(image())) - expected).max() <= 1
    assert cached.read_bytes() != planted  # exported again
    said = _notes(caplog)
    assert "exporting it again" in said
    assert ("computes something else" in said) if forged_digest else ("digest" in said)


@needs_onnx
def test_another_models_copy_under_this_name_is_refused_by_its_metadata(tmp_path, avx2, caplog):
    weights = model(tmp_path)
    other = model(tmp_path, name="other.safetensors", seed=5)
    cached = engines.cached_export_path(weights)
    cached.parent.mkdir(parents=True)
    shutil.copyfile(engines.cached_export(other), cached)
    _forge_digest(cached)
    with caplog.at_level(logging.WARNING, logger="img2img"):
        translator = Translator(weights, device="cpu", engine="onnxruntime")
    assert "made from other weights" in _notes(caplog)
    expected = pixels(Translator(weights, device="cpu", engine="torch").translate_image(image()))
    assert np.abs(pixels(translator.translate_image(image())) - expected).max() <= 1


@needs_onnx
def test_a_good_copy_is_reused_without_a_note(tmp_path, avx2, caplog, monkeypatch):
    import img2img.onnx.export

    weights = model(tmp_path)
    engines.cached_export(weights)
    monkeypatch.setattr(img2img.onnx.export, "export_onnx", lambda *a, **k: pytest.fail("exported again"))
    caplog.clear()  # the export's own note
    with caplog.at_level(logging.WARNING, logger="img2img"):
        assert Translator(weights, device="cpu", engine="onnxruntime").engine.name == "onnxruntime"
    assert _notes(caplog) == ""
