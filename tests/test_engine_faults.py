"""Faults found by trying `translate --engine` as a new user would (img2img.engines): a typo in
$IMG2IMG_ENGINE, a cache folder that cannot be made, a damaged cached export, leftovers of
killed exports, and a stop signal the exporter's imports turn into another error.

The rest of the suite pins IMG2IMG_ENGINE=torch (conftest), so these tests unset it."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from img2img import engines
from img2img.cli import main
from test_engines import image, model, needs_onnx, pixels

from img2img.inference import Translator


@pytest.fixture
def avx2(monkeypatch, tmp_path):
    """A CPU of the class where auto picks onnxruntime, an empty cache, no engine pinned."""
    monkeypatch.setattr(engines, "cpu_class", lambda: "avx2")
    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(engines.ENV_ENGINE, raising=False)
    return tmp_path / "cache" / "onnx"


def run(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


@needs_onnx
@pytest.mark.parametrize("onnx_model", [False, True])
def test_a_typo_in_the_engine_variable_is_one_line_naming_it_for_every_model(tmp_path, avx2, monkeypatch, capsys, onnx_model):
    weights = model(tmp_path)
    chosen = engines.cached_export(weights) if onnx_model else weights
    image().save(tmp_path / "a.png")
    capsys.readouterr()  # the export's note
    monkeypatch.setenv(engines.ENV_ENGINE, "onnx")
    code, _, err = run(["translate", tmp_path / "a.png", "-m", chosen, "-o", tmp_path / "b.png"], capsys)
    assert code == 2, err
    assert engines.ENV_ENGINE in err and "'onnx'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.png").exists()
