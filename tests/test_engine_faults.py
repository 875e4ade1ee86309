"""Faults found by trying `translate --engine` as a new user would (img2img.translate.engines): a typo in
$IMG2IMG_ENGINE, a cache folder that cannot be made, a damaged cached export, leftovers of
killed exports, and a stop signal the exporter's imports turn into another error.

The rest of the suite pins IMG2IMG_ENGINE=torch (conftest), so these tests unset it."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
from test_engines import avx2, image, model, needs_onnx, pixels, run  # noqa: F401 (avx2: a fixture)

from img2img.translate import engines
from img2img.translate.translator import Translator


@needs_onnx
@pytest.mark.parametrize("onnx_model", [False, True])
def test_a_typo_in_the_engine_variable_is_one_line_naming_it_for_every_model(
    tmp_path, avx2, monkeypatch, capsys, onnx_model
):
    weights = model(tmp_path)
    chosen = engines.cached_export(weights) if onnx_model else weights
    image().save(tmp_path / "a.png")
    capsys.readouterr()  # the export's note
    monkeypatch.setenv(engines.ENV_ENGINE, "onnx")
    code, _, err = run(["translate", tmp_path / "a.png", "-m", chosen, "-o", tmp_path / "b.png"], capsys)
    assert code == 2, err
    assert engines.ENV_ENGINE in err and "'onnx'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.png").exists()


@needs_onnx
def test_a_cache_folder_that_cannot_be_made_is_one_line_or_a_note(tmp_path, avx2, capsys):
    """Read-only, full or blocked caches: a file where the folder should be stands for them."""
    weights = model(tmp_path)
    avx2.parent.mkdir(parents=True)
    avx2.write_bytes(b"")  # a file named onnx where the folder should be
    image().save(tmp_path / "a.png")
    code, _, err = run(
        ["translate", tmp_path / "a.png", "-m", weights, "-o", tmp_path / "b.png", "--engine", "onnxruntime"], capsys
    )
    assert code == 1 and not (tmp_path / "b.png").exists()
    last = err.strip().splitlines()[-1]
    assert str(avx2) in last and "cache" in last and "IMG2IMG_CACHE" in last and "--debug" not in last
    translator = Translator(weights, device="cpu")  # auto: a note, and PyTorch
    assert translator.engine.name == "torch"


def _perturb_one_weight(path) -> None:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path))
    largest = max(graph.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(largest).copy()
    values.flat[: values.size // 4] = 0  # bytes gone to zero: the file still loads
    largest.CopyFrom(numpy_helper.from_array(values, largest.name))
    onnx.save(graph, str(path))


@needs_onnx
def test_a_cached_export_that_loads_but_computes_something_else_is_made_again(tmp_path, avx2):
    weights = model(tmp_path)
    expected = pixels(Translator(weights, device="cpu", engine="torch").translate_image(image()))
    cached = engines.cached_export(weights)
    _perturb_one_weight(cached)
    damaged = cached.read_bytes()
    translator = Translator(weights, device="cpu", engine="onnxruntime")
    assert translator.engine.name == "onnxruntime"
    assert np.abs(pixels(translator.translate_image(image())) - expected).max() <= 1
    assert cached.read_bytes() != damaged  # exported again


@needs_onnx
def test_leftovers_of_killed_exports_go_even_when_the_cache_holds_the_file(tmp_path, avx2):
    import subprocess
    import sys

    from img2img.files.atomic import _HOST, TEMP_PREFIX

    weights = model(tmp_path)
    engines.cached_export(weights)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = avx2 / f"{TEMP_PREFIX}{_HOST}.{dead.pid}.0123abcd"
    leftover.write_bytes(b"half an export")
    import img2img.files.atomic

    img2img.files.atomic._cleaned_folders.clear()  # a new process
    assert Translator(weights, device="cpu").engine.name == "onnxruntime"
    assert not leftover.exists()


@needs_onnx
def test_an_onnxruntime_that_cannot_be_imported_is_no_reason_to_export_again(tmp_path, avx2, monkeypatch):
    """A broken install (found, but its import fails) must not re-export a good cached file."""
    import img2img.onnx.export
    import img2img.onnx.runtime
    from img2img.errors import MissingExtraError

    weights = model(tmp_path)
    engines.cached_export(weights)

    def broken(*modules):
        raise MissingExtraError("ONNX support needs the onnx extra (onnxruntime: initialization failed)")

    monkeypatch.setattr(img2img.onnx.runtime, "import_extra", broken)
    monkeypatch.setattr(img2img.onnx.export, "export_onnx", lambda *a, **k: pytest.fail("exported again"))
    assert Translator(weights, device="cpu").engine.name == "torch"


@needs_onnx
@pytest.mark.parametrize("command", ["translate-auto", "translate-onnxruntime", "export"])
def test_a_stop_signal_an_import_turns_into_another_error_still_ends_as_the_signal(
    tmp_path, avx2, monkeypatch, capsys, command
):
    """SIGTERM while onnxruntime is imported made its import fail ("initialization failed"):
    the run said "needs the onnx extra" and exited 1, instead of 143."""
    import img2img.onnx.export
    from img2img.errors import MissingExtraError
    from img2img.runtime import signals as _signals

    def imported_into_a_signal(*args, **kwargs):
        monkeypatch.setattr(_signals, "_received", signal.SIGTERM)  # the handler ran in the import
        raise MissingExtraError(
            "ONNX support needs the onnx extra (onnxruntime is not installed: initialization failed)"
        )

    monkeypatch.setattr(img2img.onnx.export, "export_onnx", imported_into_a_signal)
    weights = model(tmp_path)
    image().save(tmp_path / "a.png")
    if command == "export":
        args = ["export", weights, "-o", tmp_path / "g.onnx"]
    else:
        args = [
            "translate",
            tmp_path / "a.png",
            "-m",
            weights,
            "-o",
            tmp_path / "b.png",
            "--engine",
            command.split("-")[1],
        ]
    code, _, err = run(args, capsys)
    assert code == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "onnx extra" not in err
    assert not (tmp_path / "b.png").exists() and not (tmp_path / "g.onnx").exists()


@needs_onnx
def test_a_run_with_nothing_left_to_write_exports_nothing(tmp_path, avx2, monkeypatch, capsys):
    """A rerun with --skip-existing whose outputs are all there paid a whole export (seconds,
    the model's size on disk) under auto, to write nothing."""
    weights = model(tmp_path)
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    for i in range(2):
        image(seed=i).save(inputs / f"{i}.png")
        image(seed=i).save(out / f"{i}.png")  # already translated
    code, _, err = run(["translate", inputs, "-m", weights, "--out-dir", out, "--skip-existing"], capsys)
    assert code == 0, err
    assert not avx2.exists() and "exporting" not in err


@needs_onnx
def test_onnxruntime_asked_for_takes_the_cpu_and_float32_that_auto_would_not(tmp_path, avx2, monkeypatch):
    """On a native-bf16 CPU `--engine onnxruntime` alone was refused ("runs in float32, use
    --precision fp32 or auto": auto was what it had); on a CUDA machine --device auto took the GPU."""
    monkeypatch.setenv("IMG2IMG_CPU_CLASS", "avx512_bf16")
    weights = model(tmp_path)
    translator = Translator(weights, engine="onnxruntime")  # precision and device: auto
    assert (translator.engine.name, translator.dtype, translator.device.type) == ("onnxruntime", torch.float32, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    translator = Translator(weights, engine="onnxruntime")
    assert (translator.engine.name, translator.device.type) == ("onnxruntime", "cpu")
    assert Translator(weights, engine="torch", device="cpu").dtype == torch.bfloat16  # auto as before otherwise


def test_errors_of_an_engine_pinned_by_the_environment_name_the_variable(tmp_path, monkeypatch, capsys):
    """`--engine onnxruntime needs the onnx extra` confused a user who never gave --engine."""
    monkeypatch.setenv(engines.ENV_ENGINE, "onnxruntime")
    monkeypatch.setattr(engines, "has_onnx_extra", lambda: False)
    weights = model(tmp_path)
    image().save(tmp_path / "a.png")
    code, _, err = run(
        ["translate", tmp_path / "a.png", "-m", weights, "-o", tmp_path / "b.png", "--device", "cpu"], capsys
    )
    assert code == 1 and "IMG2IMG_ENGINE=onnxruntime needs the onnx extra" in err and "--engine" not in err
    code, _, err = run(
        ["translate", tmp_path / "a.png", "-m", weights, "-o", tmp_path / "b.png", "--engine", "onnxruntime"], capsys
    )
    assert code == 1 and "--engine onnxruntime needs the onnx extra" in err
