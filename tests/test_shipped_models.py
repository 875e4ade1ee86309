"""Every shipped model loads by name, translates its examples and matches the stored outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2img.inference import Translator
from img2img.registry import resolve_model
from img2img.weights import read_metadata

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
# (model name, example input, stored output)
SHIPPED_EXAMPLES = [
    ("photo2sketch", "inputs/coffee.png", "expected/coffee_photo2sketch.png"),
    ("photo2sketch", "inputs/flower.jpg", "expected/flower_photo2sketch.png"),
]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_every_shipped_file_is_registered_and_small():
    registry = json.loads((REPO / "weights" / "registry.json").read_text())["models"]
    shipped = {entry["file"] for entry in registry.values() if entry.get("file")}
    on_disk = {path.name for path in (REPO / "weights").glob("*.safetensors")}
    assert on_disk == shipped
    for name in on_disk:
        assert (REPO / "weights" / name).stat().st_size <= 20 * 2**20
    assert {model for model, _, _ in SHIPPED_EXAMPLES} == {
        name for name, entry in registry.items() if entry.get("file")
    }


# The stored outputs were made with the default precision; a CPU without bf16 runs fp32.
@pytest.mark.parametrize("precision", ["auto", "fp32"])
@pytest.mark.parametrize("model, example, expected", SHIPPED_EXAMPLES)
def test_shipped_model_reproduces_its_example(model, example, expected, precision):
    path = resolve_model(model)
    assert path.parent == REPO / "weights"
    assert read_metadata(path).source.startswith("trained")
    source = Image.open(EXAMPLES / example)
    output = Translator(path, device="cpu", precision=precision).translate_image(source)
    stored = Image.open(EXAMPLES / expected)
    assert output.size == source.size == stored.size
    assert output.mode == stored.mode
    assert psnr(np.asarray(output), np.asarray(stored)) >= 40
