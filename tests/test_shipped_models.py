"""Every shipped model loads by name, translates its examples and matches the stored outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2img.hub.registry import resolve_model
from img2img.models.weights import read_metadata
from img2img.translate.translator import Translator

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
# (model name, example input, stored output)
SHIPPED_EXAMPLES = [
    ("photo2sketch", "inputs/coffee.png", "expected/coffee_photo2sketch.png"),
    ("photo2sketch", "inputs/flower.jpg", "expected/flower_photo2sketch.png"),
    ("photo2night", "inputs/coffee.png", "expected/coffee_photo2night.png"),
    ("photo2night", "inputs/flower.jpg", "expected/flower_photo2night.png"),
    ("night2photo", "inputs/coffee_night.png", "expected/coffee_night_night2photo.png"),
    ("night2photo", "inputs/flower_night.png", "expected/flower_night_night2photo.png"),
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


def _night():
    """examples/build_datasets.py's night(), the transformation the night domain was made with."""
    spec = importlib.util.spec_from_file_location("build_datasets", EXAMPLES / "build_datasets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.night


@pytest.mark.parametrize("photo", ["inputs/coffee.png", "inputs/flower.jpg"])
def test_day_night_models_approach_the_true_transformation(photo):
    """The night domain is a known function of the day one, so the CycleGAN pair can be scored
    on photographs it never saw: photo2night must come much closer to night(photo) than the
    photograph itself is, night2photo must bring night(photo) back closer to the photograph,
    and the stored night example must be night() of its photograph."""
    night = _night()
    day = Image.open(EXAMPLES / photo).convert("RGB")
    true_night = night(day)
    stored_night = Image.open((EXAMPLES / photo).with_name(Path(photo).stem + "_night.png"))
    assert np.array_equal(np.asarray(stored_night), np.asarray(true_night))
    to_night = Translator(resolve_model("photo2night"), device="cpu").translate_image(day)
    to_day = Translator(resolve_model("night2photo"), device="cpu").translate_image(true_night)
    day_a, night_a = np.asarray(day), np.asarray(true_night)
    # measured: 27.5 / 25.9 dB to the true night against 9.0 / 11.8 for the photographs, and
    # 21.3 / 18.0 dB back to the photographs (night2photo has to guess the lost colours)
    assert psnr(np.asarray(to_night), night_a) > psnr(day_a, night_a) + 10
    assert psnr(np.asarray(to_day), day_a) > psnr(night_a, day_a) + 4
