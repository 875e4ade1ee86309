"""img2img eval at its edges: every input through the one decoder (16-bit, float and 8-bit
copies of a picture give the same features), one line per bad input with the rest measured,
messages that name only eval's own options, out-of-memory said in one line, scores refused or
annotated where the sample is too small to estimate them (checked against torch-fidelity), and
the feature cache read back as untrusted input.

The Inception is test_eval's random-weights one (no downloads); the cache tests use a stand-in
network that turns each image into features in microseconds.
"""

from __future__ import annotations

import json
import re
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_eval import _run, _smooth_images, eval_files, evaluator_factory, one_thread  # noqa: F401

from img2img.eval import metrics as M

# --- one decoder --------------------------------------------------------------------------------


def _gray_copies(root: Path, count: int = 3) -> dict[str, Path]:
    """The same gray pictures as 8-bit PNG, 16-bit PNG and float TIFF (values / 255)."""
    rng = np.random.default_rng(3)
    pictures = [image[:, :, 0] for image in _smooth_images(rng, count)]
    folders = {kind: root / kind for kind in ("8bit", "16bit", "float")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for i, pixels in enumerate(pictures):
        Image.fromarray(pixels, "L").save(folders["8bit"] / f"{i}.png")
        Image.fromarray(pixels.astype(np.uint16) * 257).save(folders["16bit"] / f"{i}.png")
        Image.fromarray(pixels.astype(np.float32) / 255).save(folders["float"] / f"{i}.tiff")
    assert Image.open(folders["16bit"] / "0.png").mode in ("I;16", "I")
    return folders


def test_16bit_float_and_8bit_copies_give_the_same_fid_features(tmp_path, evaluator_factory):
    folders = _gray_copies(tmp_path)
    evaluator = evaluator_factory(metrics=("fid", "kid"))
    same = evaluator.compare_folders(fake=folders["8bit"], real=folders["8bit"])["scores"]
    for kind in ("16bit", "float"):
        result = evaluator.compare_folders(fake=folders[kind], real=folders["8bit"])
        assert result["samples"] == {"fake": 3, "real": 3, "failed": 0}
        # The same features on both sides: FID is rounding, not a distance, and KID (whose
        # unbiased estimate of a set against itself is not 0) is that of the 8-bit set itself.
        assert abs(result["scores"]["fid"]["value"]) < 1e-6, kind
        assert result["scores"]["kid"]["value"] == pytest.approx(same["kid"]["value"], rel=1e-5, abs=1e-9), kind


# --- one line per bad input, the rest measured ------------------------------------------------


def test_a_nan_float_tiff_is_one_line_and_the_others_are_scored(capsys, tmp_path, eval_files, evaluator_factory):
    folders = _gray_copies(tmp_path)
    fake, target = folders["8bit"], tmp_path / "target"
    shutil.copytree(fake, target)
    nan = np.full((40, 48), 0.5, np.float32)
    nan[3, 4] = np.nan
    Image.fromarray(nan).save(fake / "nan.tiff")
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(target / "nan.png")
    code, out, err = _run(
        capsys, "--fake", str(fake), "--real", str(target), "--target", str(target), "--metrics", "fid,psnr",
        "--inception-weights", str(eval_files["inception"]), "--json",
    )  # fmt: skip
    assert code == 1
    result = json.loads(out)["evaluations"][0]
    assert result["samples"] == {"fake": 3, "real": 4, "pairs": 3, "failed": 1}
    assert result["scores"]["psnr"]["identical_pairs"] == 3  # the three good pairs are identical
    errors = [line for line in err.splitlines() if line.startswith("img2img: error:")]
    assert len(errors) == 1 and "nan.tiff" in errors[0] and "NaN" in errors[0], err


def _eval_options() -> set[str]:
    import typer.main

    from img2img.cli._app import app

    command = typer.main.get_command(app).commands["eval"]
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def test_messages_name_only_options_eval_has(capsys, tmp_path, monkeypatch):
    folders = _gray_copies(tmp_path, count=2)
    monkeypatch.setenv("IMG2IMG_MAX_PIXELS", "100")  # every 48x40 image is over the limit
    code, _, err = _run(capsys, "--fake", str(folders["8bit"]), "--target", str(folders["16bit"]), "--metrics", "psnr")
    assert code == 1 and "--max-pixels 1920" in err
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", err))
    assert named and named <= _eval_options(), named - _eval_options()
    # ... and the option it names works.
    monkeypatch.delenv("IMG2IMG_MAX_PIXELS")
    code, out, err = _run(capsys, "--fake", str(folders["8bit"]), "--target", str(folders["16bit"]), "--metrics", "psnr",
                          "--max-pixels", "1920", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["evaluations"][0]["samples"]["pairs"] == 2, err


_ALLOCATOR = (
    "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 5502926848 bytes. Error code 12 (Cannot allocate memory)"
)


@pytest.mark.parametrize(
    "where, error",
    [
        ("features", RuntimeError(_ALLOCATOR)),
        ("features", MemoryError()),
        ("features", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")),
        ("network", RuntimeError(_ALLOCATOR)),  # building the Inception: not the weights' fault
    ],
)
def test_out_of_memory_is_one_line_with_the_batch_size_hint(
    capsys, monkeypatch, eval_files, evaluator_factory, where, error
):
    from img2img.eval import inception

    def fail(*args, **kwargs):
        raise error

    if where == "features":
        monkeypatch.setattr(inception.FIDInception, "features", fail)
    else:
        import torch_fidelity.feature_extractor_inceptionv3 as extractor

        monkeypatch.setattr(extractor, "FeatureExtractorInceptionV3", fail)
    code, out, err = _run(
        capsys, "--fake", str(eval_files["fake"]), "--real", str(eval_files["real"]), "--metrics", "fid", "--no-cache",
        "--inception-weights", str(eval_files["inception"]), "--batch-size", "16",
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 1, err
    assert "out of memory" in lines[0] and "--batch-size 4" in lines[0], lines[0]
    assert "DefaultCPUAllocator" not in lines[0] and "layout" not in lines[0]
    if str(error) == _ALLOCATOR:
        assert "5.12 GiB" in lines[0]


# --- small samples: refused or annotated, as torch-fidelity defines them ------------------------


def test_is_follows_torch_fidelity_and_is_refused_below_two_images_a_split():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = torch.randn(40, 1008, generator=torch.Generator().manual_seed(4)) * 3
    for count in (1, 5, 10, 19):  # <= 10 used to be exactly 1.0 +- 0.0 whatever the images
        score = M.inception_score(logits[:count])
        assert score["value"] is None and score["std"] is None, count
        assert "at least 20" in score["note"] and "10 splits" in score["note"]
    for count in (20, 27, 40):
        score = M.inception_score(logits[:count])
        reference = isc_features_to_metric(logits[:count], splits=10, shuffle=True, rng_seed=2020)
        assert score["value"] == pytest.approx(reference["inception_score_mean"], rel=1e-12)
        assert score["std"] == pytest.approx(reference["inception_score_std"], rel=1e-12)
        assert score["splits"] == 10 and score["value"] > 1.05
        assert "cannot exceed its image count" in score["note"]


def test_kid_follows_torch_fidelity_and_gives_no_spread_when_subsets_are_the_whole_sets():
    from torch_fidelity.metric_kid import kid_features_to_metric

    generator = torch.Generator().manual_seed(5)
    fake, real = torch.randn(1200, 16, generator=generator), torch.randn(1100, 16, generator=generator) + 0.1
    # Enough samples: torch-fidelity's defaults exactly (100 subsets of 1000, seed 2020).
    ours, reference = M.kid(fake, real), kid_features_to_metric(fake, real, verbose=False)
    assert ours["value"] == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-9)
    assert ours["std"] == pytest.approx(reference["kernel_inception_distance_std"], rel=1e-9)
    assert ours["subset_size"] == 1000 and ours["subsets"] == 100 and "note" not in ours
    # Equal small sets: every subset would be the whole of both sets (std ~1e-7, rounding).
    small = M.kid(fake[:6], real[:6])
    reference = kid_features_to_metric(fake[:6], real[:6], kid_subset_size=6, verbose=False)
    assert small["value"] == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-5)
    assert small["std"] is None and "no spread can be estimated" in small["note"]
    # One side larger: the subsets differ, the spread is torch-fidelity's at that subset size.
    uneven = M.kid(fake[:6], real[:9])
    reference = kid_features_to_metric(fake[:6], real[:9], kid_subset_size=6, verbose=False)
    assert uneven["std"] == pytest.approx(reference["kernel_inception_distance_std"], rel=1e-9) and uneven["std"] > 0
    assert "instead of 1000" in uneven["note"]


# --- the feature cache is untrusted input ------------------------------------------------------


class _StandIn:
    """A stand-in for the Inception: features from each image's channel means, counted."""

    def __init__(self):
        self.prepared = 0

    def prepare(self, image):
        from img2img.files.imageio import to_8bit

        self.prepared += 1
        means = np.asarray(to_8bit(image, 3)).mean(axis=(0, 1))  # no float copy of the image
        return torch.from_numpy(means.astype(np.float32))  # 3 values: nothing of the image is kept

    def features(self, images):
        x = torch.stack(images)
        ramp_pool, ramp_logits = torch.linspace(0, 1, 2048), torch.linspace(-1, 1, 1008)
        return x.mean(1, keepdim=True) * ramp_pool + x[:, :1], x[:, 1:2] * ramp_logits - x[:, 2:]


_SETTINGS = {"resize": "tf1", "inception_sha256": "0" * 64, "max_pixels": "default"}


def _folder(root: Path, count: int, seed: int) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def _extract(folder: Path, cache: Path, notes: list | None = None, errors: list | None = None):
    from img2img.eval.features import cached_extract, folder_items

    stand_in = _StandIn()
    found = cached_extract(
        folder_items(folder), stand_in, _SETTINGS, cache, batch_size=4,
        on_note=(notes if notes is not None else []).append,
        on_error=lambda label, message: (errors if errors is not None else []).append(message),
    )  # fmt: skip
    return found, stand_in.prepared


def _entry(cache: Path) -> Path:
    (entry,) = (cache / "features").glob("*.safetensors")
    return entry


def _rewrite(entry: Path, *, pool=None, logits=None, meta=None, checksum=True) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    from img2img.eval.features import _checksum

    with safe_open(str(entry), framework="pt") as handle:
        stored = json.loads(handle.metadata()["img2img_eval"])
        tensors = {"pool": handle.get_tensor("pool"), "logits": handle.get_tensor("logits")}
    tensors["pool"] = tensors["pool"] if pool is None else pool(tensors["pool"])
    tensors["logits"] = tensors["logits"] if logits is None else logits(tensors["logits"])
    if checksum and tensors["pool"].dtype == torch.float32:
        stored["sha256"] = _checksum(tensors["pool"], tensors["logits"])
    stored.update(meta or {})
    save_file(tensors, str(entry), metadata={"img2img_eval": json.dumps(stored)})


def _nan_first(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t[0, 0] = float("nan")
    return t


def _nudged(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t[1, 7] += 0.5
    return t


DAMAGE = {
    "truncated": lambda entry: entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2]),
    "not safetensors": lambda entry: entry.write_bytes(b"\x00" * 64),
    "narrow pool": lambda entry: _rewrite(entry, pool=lambda t: t[:, :2047].contiguous()),
    "one row short": lambda entry: _rewrite(
        entry, pool=lambda t: t[1:].contiguous(), logits=lambda t: t[1:].contiguous()
    ),
    "float64": lambda entry: _rewrite(entry, pool=lambda t: t.double()),
    "nan": lambda entry: _rewrite(entry, pool=_nan_first),
    "changed value": lambda entry: _rewrite(entry, pool=_nudged, checksum=False),
    "names": lambda entry: _rewrite(entry, meta={"names": "0.png"}),
    "other key": lambda entry: _rewrite(entry, meta={"key": "0" * 64}),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_entry_is_rebuilt_with_a_note(tmp_path, damage):
    folder, cache = _folder(tmp_path / "real", 5, seed=1), tmp_path / "cache"
    fresh, prepared = _extract(folder, cache)
    assert fresh.cache == "miss" and prepared == 5
    entry = _entry(cache)
    DAMAGE[damage](entry)
    notes: list[str] = []
    rebuilt, prepared = _extract(folder, cache, notes)
    assert rebuilt.cache == "rebuilt" and prepared == 5, notes
    assert torch.equal(rebuilt.pool, fresh.pool) and torch.equal(rebuilt.logits, fresh.logits)
    assert len(notes) == 1 and str(entry) in notes[0] and "recomputed" in notes[0]
    again, prepared = _extract(folder, cache)  # the rebuilt entry is sound
    assert again.cache == "hit" and prepared == 0 and torch.equal(again.pool, fresh.pool)


def test_an_entry_copied_under_another_key_is_not_used(tmp_path):
    cache = tmp_path / "cache"
    fake, real = _folder(tmp_path / "fake", 4, seed=1), _folder(tmp_path / "real", 4, seed=2)
    fake_features, _ = _extract(fake, cache)
    fake_entry = _entry(cache)
    real_features, _ = _extract(real, cache)
    (real_entry,) = [p for p in (cache / "features").glob("*.safetensors") if p != fake_entry]
    shutil.copyfile(fake_entry, real_entry)  # the same names, other contents
    notes: list[str] = []
    found, prepared = _extract(real, cache, notes)
    assert found.cache == "rebuilt" and prepared == 4
    assert torch.equal(found.pool, real_features.pool) and not torch.equal(found.pool, fake_features.pool)
    assert "other files or settings" in notes[0]


def test_failures_are_decoded_again_not_replayed_from_the_entry(capsys, tmp_path):
    folder, cache = _folder(tmp_path / "real", 3, seed=1), tmp_path / "cache"
    (folder / "broken.png").write_bytes(b"not an image")
    errors: list[str] = []
    first, _ = _extract(folder, cache, errors=errors)
    assert first.cache == "miss" and len(first) == 3 and len(errors) == 1 and "broken.png" in errors[0]
    # A planted message (with live terminal escapes) in the entry is never shown.
    _rewrite(_entry(cache), meta={"failures": [[str(folder / "broken.png"), "\x1b[31mplanted\x1b[0m"]]})
    errors.clear()
    again, prepared = _extract(folder, cache, errors=errors)
    assert again.cache == "hit" and prepared == 0
    assert errors == [f"{folder / 'broken.png'}: cannot identify image file"]
    # A file recorded as failed that now decodes makes the entry stale.
    shutil.copyfile(folder / "0.png", folder / "broken.png")
    notes: list[str] = []
    # (its bytes changed, so this is another key: plant the old entry under the new key)
    from img2img.eval.features import cache_key, folder_items

    new_key, _ = cache_key(folder_items(folder), _SETTINGS)
    old = _entry(cache)
    _rewrite(old, meta={"key": new_key})
    old.rename(old.with_name(f"{new_key}.safetensors"))
    found, prepared = _extract(folder, cache, notes, errors)
    assert found.cache == "rebuilt" and len(found) == 4 and prepared == 4
    assert "now decodes" in notes[0]


def test_control_characters_in_messages_are_escaped_on_stderr(capsys, tmp_path, eval_files):
    folders = _gray_copies(tmp_path, count=2)
    (folders["8bit"] / "bad\x1b[31mred.png").write_bytes(b"not an image")
    code, _, err = _run(capsys, "--fake", str(folders["8bit"]), "--target", str(folders["16bit"]), "--metrics", "psnr")
    assert code == 1 and "\x1b" not in err and "bad\\x1b[31mred.png" in err


def test_a_cache_that_cannot_be_written_only_costs_time(tmp_path, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    folder = _folder(tmp_path / "real", 3, seed=1)

    def full_disk(*args, **kwargs):
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )

    with monkeypatch.context() as patch:
        patch.setattr(safetensors.torch, "save_file", full_disk)
        notes: list[str] = []
        found, _ = _extract(folder, tmp_path / "cache", notes)
    assert found.cache == "unwritten" and len(found) == 3
    assert len(notes) == 1 and "No space left on device" in notes[0] and "cannot write the feature cache" in notes[0]
    assert not list((tmp_path / "cache").rglob("*.safetensors*"))  # no half-written entry
    # A cache folder that is a file: the same.
    (tmp_path / "file").write_text("")
    notes.clear()
    found, _ = _extract(folder, tmp_path / "file", notes)
    assert found.cache == "unwritten" and len(found) == 3 and "cannot write the feature cache" in notes[0]


def test_the_cache_holds_one_file_at_a_time(tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):  # noise does not compress: about 190 KiB a file
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    total = sum(p.stat().st_size for p in folder.iterdir())
    tracemalloc.start()
    try:
        found, _ = _extract(folder, tmp_path / "cache")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found.cache == "miss" and len(found) == 24
    assert peak < total / 4, (peak, total)  # the files' bytes were all held: more than total


def test_a_file_changed_while_it_is_measured_is_not_cached(tmp_path, monkeypatch):
    from img2img.eval import features

    folder = _folder(tmp_path / "real", 3, seed=1)
    original = features.cache_key

    def key_then_change(items, settings):
        key = original(items, settings)  # hashed as it was ...
        Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(folder / "1.png")  # ... then replaced
        return key

    monkeypatch.setattr(features, "cache_key", key_then_change)
    notes: list[str] = []
    found, _ = _extract(folder, tmp_path / "cache", notes)
    assert found.cache == "unwritten" and len(found) == 3
    assert "1.png changed while it was being measured" in notes[0]
    assert not (tmp_path / "cache" / "features").exists() or not list((tmp_path / "cache" / "features").iterdir())


def test_translator_hints_naming_options_eval_lacks_are_left_out(tmp_path):
    """The translator is translate's: its "try a smaller --tile" is advice eval cannot take."""
    from types import SimpleNamespace

    from img2img.errors import ImageError
    from img2img.eval import EvalSettings, Evaluator
    from img2img.eval.data import Comparison
    from img2img.eval.features import ImageItem
    from img2img.eval.run import Hooks
    from img2img.translate.translator import TranslateResult

    class OutOfMemoryTranslator:
        config = SimpleNamespace(output_nc=3)

        def to_input(self, image):
            return image

        def translate_stream(self, items, batch_size=1):
            for key, _ in items:
                error = ImageError(
                    "out of memory translating a 48x40 image in 32x32 tiles", hint="try a smaller --tile"
                )
                yield TranslateResult(key, None, error, 0.0)

    folder = _gray_copies(tmp_path, count=1)["8bit"]
    item = ImageItem(str(folder / "0.png"), path=folder / "0.png", name="0.png")
    messages = {}
    for options in (None, _eval_options()):
        errors: list[str] = []
        evaluator = Evaluator(
            EvalSettings(metrics=("psnr",), device="cpu", options=options), Hooks(error=errors.append)
        )
        comparison = Comparison(label="x", inputs=[item], targets={"0.png": item})
        assert evaluator.evaluate(comparison, OutOfMemoryTranslator())["samples"]["failed"] == 1
        (messages[options is None],) = errors
    assert "--tile" in messages[True]  # as a library: the translator's own words
    assert "out of memory translating" in messages[False] and "--tile" not in messages[False]
