"""`--engine`: which library runs translate's forward pass (img2img.translate.engines). auto picks
onnxruntime for a ResNet's fp32 on CPUs without native bf16 when the onnx extra is installed,
however many images the job has, exporting the weights once into the cache; everything else
stays in PyTorch. The CPU class is simulated through $IMG2IMG_CPU_CLASS.

The rest of the suite pins IMG2IMG_ENGINE=torch (conftest), so these tests unset it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_generator_file
from PIL import Image

from img2img.cli import main
from img2img.errors import ExportError, MissingExtraError, UsageError
from img2img.translate import engines
from img2img.translate.translator import NonFiniteOutputError, Translator

CPU = torch.device("cpu")
needs_onnx = pytest.mark.skipif(not engines.has_onnx_extra(), reason="needs the onnx extra")


@pytest.fixture
def avx2(monkeypatch, tmp_path):
    """A CPU of the class where auto picks onnxruntime (whatever this machine is), an empty
    cache, and no engine pinned by the environment."""
    monkeypatch.setenv("IMG2IMG_CPU_CLASS", "avx2")
    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(engines.ENV_ENGINE, raising=False)
    return tmp_path / "cache" / "onnx"


def model(tmp_path: Path, name: str = "g.safetensors", seed: int = 0, **options) -> Path:
    options = {"arch": "resnet", "ngf": 4, "n_blocks": 1, "norm": "instance", **options}
    path = make_generator_file(tmp_path / name, seed=seed, **options)
    # conftest's init (gain 0.02) leaves every output pixel near grey; spread them so that a
    # wrong network could not pass as the right one.
    from safetensors.torch import load_file

    from img2img.models.weights import read_metadata, save_generator

    torch.manual_seed(seed)
    state = {k: v + torch.randn_like(v) * 0.2 if v.ndim == 4 else v for k, v in load_file(path).items()}
    save_generator(path, state, read_metadata(path))
    return path


def image(size=(40, 28), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(int)


# --- the choice -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "simulated, device, dtype, has_file, extra, expected",
    [
        ("avx2", "cpu", torch.float32, True, True, "onnxruntime"),
        ("avx512", "cpu", torch.float32, True, True, "onnxruntime"),
        ("avx512_bf16", "cpu", torch.float32, True, True, "torch"),  # measured: PyTorch bf16 is the default there
        ("amx", "cpu", torch.float32, True, True, "torch"),
        ("avx2", "cpu", torch.bfloat16, True, True, "torch"),
        ("avx2", "cuda", torch.float16, True, True, "torch"),
        ("avx2", "cuda", torch.float32, True, True, "torch"),
        ("avx2", "mps", torch.float32, True, True, "torch"),
        ("avx2", "cpu", torch.float32, False, True, "torch"),  # an in-memory network
        ("avx2", "cpu", torch.float32, True, False, "torch"),  # no onnx extra
        ("other", "cpu", torch.float32, True, True, "torch"),
    ],
)
def test_auto_picks_onnxruntime_only_where_it_was_measured_faster(
    monkeypatch, tmp_path, simulated, device, dtype, has_file, extra, expected
):
    monkeypatch.setenv("IMG2IMG_CPU_CLASS", simulated)
    monkeypatch.setattr(engines, "has_onnx_extra", lambda: extra)
    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    weights = model(tmp_path) if has_file else None
    chosen = engines.resolve_engine("auto", torch.device(device), dtype, weights=weights, arch="resnet")
    assert chosen.name == expected, chosen
    assert chosen.reason


def test_auto_never_depends_on_the_number_of_images(monkeypatch, tmp_path, avx2):
    """Issue #23: auto ran a ResNet in onnxruntime from 32 images and in PyTorch below, so an
    image alone and the same image in a folder got other bytes. Only a job with nothing to
    translate skips the export."""
    monkeypatch.setattr(engines, "has_onnx_extra", lambda: True)
    weights = model(tmp_path)
    for count in (1, 2, 31, 32, 1000, None):
        chosen = engines.resolve_engine(
            "auto", CPU, torch.float32, weights=weights, expected_images=count, arch="resnet"
        )
        assert chosen.name == "onnxruntime", (count, chosen)
    assert (
        engines.resolve_engine("auto", CPU, torch.float32, weights=weights, expected_images=0, arch="resnet").name
        == "torch"
    )
    # U-Nets stay in PyTorch (measured no faster in whole runs); asked for, they run in onnxruntime
    assert engines.resolve_engine("auto", CPU, torch.float32, weights=weights, arch="unet").name == "torch"
    assert engines.resolve_engine("onnxruntime", CPU, torch.float32, weights=weights, arch="unet").name == "onnxruntime"
    # the choice is not the cache's: a cached export changes nothing
    cached = engines.cached_export_path(weights)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"stand-in")
    assert (
        engines.resolve_engine("auto", CPU, torch.float32, weights=weights, expected_images=1, arch="unet").name
        == "torch"
    )
    assert (
        engines.resolve_engine("auto", CPU, torch.float32, weights=weights, expected_images=1, arch="resnet").name
        == "onnxruntime"
    )


def test_an_explicit_engine_that_cannot_apply_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(engines, "has_onnx_extra", lambda: True)
    weights = tmp_path / "w.safetensors"
    assert engines.resolve_engine("torch", CPU, torch.float32, weights=weights, arch="resnet").name == "torch"
    for device, dtype, path in [
        ("cuda", torch.float32, weights),
        ("cpu", torch.bfloat16, weights),
        ("cpu", torch.float32, None),
    ]:
        with pytest.raises(UsageError):
            engines.resolve_engine("onnxruntime", torch.device(device), dtype, weights=path, arch="resnet")
    with pytest.raises(UsageError, match="valid: auto, torch, onnxruntime"):
        engines.resolve_engine("tensorrt", CPU, torch.float32, weights=weights, arch="resnet")
    monkeypatch.setattr(engines, "has_onnx_extra", lambda: False)
    with pytest.raises(MissingExtraError):
        engines.resolve_engine("onnxruntime", CPU, torch.float32, weights=weights, arch="resnet")


def test_the_environment_sets_the_default_engine(monkeypatch, tmp_path, avx2):
    monkeypatch.setenv(engines.ENV_ENGINE, "torch")
    translator = Translator(model(tmp_path), device="cpu")
    assert translator.engine.name == "torch"
    assert not avx2.exists()  # nothing exported


# --- onnxruntime as the engine ----------------------------------------------------------------


@needs_onnx
@pytest.mark.parametrize("options", [{}, {"arch": "unet", "num_downs": 5, "norm": "batch", "eval_mode": False}])
def test_auto_exports_once_and_matches_pytorch(tmp_path, avx2, monkeypatch, options):
    weights = model(tmp_path, **options)
    unet = options.get("arch") == "unet"
    if unet:  # auto keeps U-Nets in PyTorch; asked for, onnxruntime runs them the same way
        assert Translator(weights, device="cpu").engine.name == "torch"
    fast = Translator(weights, device="cpu", engine="onnxruntime" if unet else None)
    assert fast.engine.name == "onnxruntime"
    copy = engines.cached_export_path(weights)
    assert sorted(p.name for p in avx2.iterdir()) == [copy.name, engines.digest_path(copy).name]
    slow = Translator(weights, device="cpu", engine="torch")
    for size in [(40, 28), (64, 64), (13, 70)]:
        a, b = pixels(fast.translate_image(image(size))), pixels(slow.translate_image(image(size)))
        assert a.shape == b.shape == (size[1], size[0], 3)
        assert np.abs(a - b).max() <= 1, "onnxruntime and PyTorch differ by more than a rounding"
        assert a.std() > 10  # the network does something visible
    # the second translator reads the cache: exporting again would fail here
    import img2img.onnx.export

    monkeypatch.setattr(img2img.onnx.export, "export_onnx", lambda *a, **k: pytest.fail("exported twice"))
    again = Translator(weights, device="cpu", engine="onnxruntime" if unet else None)
    assert again.engine.name == "onnxruntime"
    assert np.array_equal(pixels(again.translate_image(image())), pixels(fast.translate_image(image())))


@needs_onnx
def test_changed_weights_never_reuse_a_stale_export(tmp_path, avx2):
    weights = model(tmp_path, seed=1)
    first = pixels(Translator(weights, device="cpu").translate_image(image()))
    model(tmp_path, seed=2)  # the same file name, other weights
    second = Translator(weights, device="cpu")
    expected = pixels(Translator(weights, device="cpu", engine="torch").translate_image(image()))
    got = pixels(second.translate_image(image()))
    assert np.abs(got - expected).max() <= 1
    assert np.abs(got - first).max() > 10
    assert len(list(avx2.glob("*.onnx"))) == 2


@needs_onnx
def test_a_damaged_cached_export_is_made_again(tmp_path, avx2):
    weights = model(tmp_path)
    expected = pixels(Translator(weights, device="cpu").translate_image(image()))
    cached = engines.cached_export_path(weights)
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 3])  # truncated
    translator = Translator(weights, device="cpu")
    assert translator.engine.name == "onnxruntime"
    assert np.array_equal(pixels(translator.translate_image(image())), expected)


@needs_onnx
def test_a_failed_export_falls_back_to_pytorch_with_a_note_under_auto_and_fails_when_asked(
    tmp_path, avx2, monkeypatch, caplog
):
    import img2img.onnx.export

    def broken(*args, **kwargs):
        raise ExportError("the exporter could not trace this")

    monkeypatch.setattr(img2img.onnx.export, "export_onnx", broken)
    weights = model(tmp_path)
    with caplog.at_level(logging.WARNING, logger="img2img"):
        translator = Translator(weights, device="cpu")
    assert translator.engine.name == "torch"
    assert any("PyTorch runs it" in r.getMessage() and "could not trace" in r.getMessage() for r in caplog.records)
    expected = pixels(Translator(weights, device="cpu", engine="torch").translate_image(image()))
    assert np.array_equal(pixels(translator.translate_image(image())), expected)
    with pytest.raises(ExportError):
        Translator(weights, device="cpu", engine="onnxruntime")
    assert not any(avx2.glob("*")) if avx2.exists() else True


@needs_onnx
def test_an_onnxruntime_failure_mid_run_hands_over_to_pytorch(tmp_path, avx2, caplog):
    weights = model(tmp_path)
    translator = Translator(weights, device="cpu")
    expected = pixels(Translator(weights, device="cpu", engine="torch").translate_image(image()))

    def failing(x):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : something odd")

    translator._onnx = failing
    with caplog.at_level(logging.WARNING, logger="img2img"):
        [result] = translator.translate_stream([("a", translator.to_input(image()))])
    assert np.array_equal(pixels(result.image), expected)
    assert translator.engine.name == "torch"
    assert result.engine == "torch"  # what ran this image, after the hand-over
    assert any("onnxruntime failed" in r.getMessage() for r in caplog.records)


@needs_onnx
def test_non_finite_onnxruntime_output_writes_nothing(tmp_path, avx2):
    translator = Translator(model(tmp_path), device="cpu")
    translator._onnx = lambda x: torch.full((x.shape[0], 3, *x.shape[2:]), float("nan"))
    with pytest.raises(NonFiniteOutputError, match="onnxruntime"):
        translator.translate_image(image())


@needs_onnx
def test_tiles_run_in_pytorch_and_match_the_torch_engine(tmp_path, avx2):
    weights = model(tmp_path)
    big = image((150, 90), seed=3)
    fast = Translator(weights, device="cpu", tile=64)
    slow = Translator(weights, device="cpu", engine="torch", tile=64)
    assert fast.engine.name == "onnxruntime"
    assert np.array_equal(pixels(fast.translate_image(big)), pixels(slow.translate_image(big)))


@needs_onnx
def test_onnxruntime_output_does_not_depend_on_the_thread_count(tmp_path, avx2):
    weights = model(tmp_path, n_blocks=2, ngf=8)
    picture = image((96, 80), seed=5)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)  # the session takes torch's thread count
            results.append(
                Translator(weights, device="cpu").translate_tensor(
                    torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].float() / 127.5 - 1
                )
            )
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(results[0], other) for other in results[1:])


# --- the command ---------------------------------------------------------------------------------


def run(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


@needs_onnx
def test_translate_cli_default_engine_on_a_folder(tmp_path, avx2, capsys, monkeypatch):
    weights = model(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, size in enumerate([(40, 28), (33, 33), (64, 48)]):
        image(size, seed=i).save(inputs / f"{i}.png")
    code, out, err = run(
        ["translate", inputs, "--model", weights, "--out-dir", tmp_path / "out", "--device", "cpu"], capsys
    )
    assert code == 0, err
    assert "exporting g.safetensors to ONNX" in err  # said once, on first use
    assert err.count("img2img: note:") == 1
    slow = Translator(weights, device="cpu", engine="torch")
    for i in range(3):
        got = pixels(Image.open(tmp_path / "out" / f"{i}.png"))
        assert np.abs(got - pixels(slow.translate_image(Image.open(inputs / f"{i}.png")))).max() <= 1
    code, out, err = run(
        ["translate", inputs, "--model", weights, "--out-dir", tmp_path / "out2", "--device", "cpu"], capsys
    )
    assert code == 0 and err == ""  # cached: nothing to say
    for i in range(3):
        assert np.array_equal(
            pixels(Image.open(tmp_path / "out" / f"{i}.png")), pixels(Image.open(tmp_path / "out2" / f"{i}.png"))
        )


@needs_onnx
def test_json_lines_say_which_engine_ran_each_image(tmp_path, avx2, capsys, monkeypatch):
    weights = model(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    image((40, 28), seed=1).save(inputs / "small.png")
    image((150, 90), seed=2).save(inputs / "large.png")

    def engines_of(*options) -> dict[str, str]:
        out_dir = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        code, out, err = run(
            ["translate", inputs, "-m", weights, "--out-dir", out_dir, "--json", "--device", "cpu", *options], capsys
        )
        assert code == 0, err
        return {Path(line["input"]).name: line["engine"] for line in map(json.loads, out.splitlines())}

    assert engines_of() == {"small.png": "onnxruntime", "large.png": "onnxruntime"}
    assert engines_of("--engine", "torch") == {"small.png": "torch", "large.png": "torch"}
    # an image larger than --tile goes in tiles, which run in PyTorch whatever the engine
    assert engines_of("--tile", "64") == {"small.png": "onnxruntime", "large.png": "torch"}
    onnx_file = engines.cached_export_path(weights)
    code, out, err = run(
        ["translate", inputs / "small.png", "-m", onnx_file, "-o", tmp_path / "o.png", "--json"], capsys
    )
    assert code == 0 and json.loads(out)["engine"] == "onnxruntime"


@needs_onnx
def test_translate_cli_one_image_runs_in_the_engine_of_a_folder(tmp_path, avx2, capsys):
    """A one-image job exports (once per weights file) and runs onnxruntime, as a folder does."""
    weights = model(tmp_path)
    image().save(tmp_path / "a.png")
    code, _, err = run(
        ["translate", tmp_path / "a.png", "-m", weights, "-o", tmp_path / "b.png", "--device", "cpu", "--json"], capsys
    )
    assert code == 0 and "exporting" in err
    assert avx2.is_dir()
    code, _, err = run(
        ["translate", tmp_path / "a.png", "-m", weights, "-o", tmp_path / "c.png", "--engine", "onnxruntime"], capsys
    )
    assert code == 0 and err == ""  # cached
    assert np.array_equal(pixels(Image.open(tmp_path / "b.png")), pixels(Image.open(tmp_path / "c.png")))
    expected = pixels(Translator(weights, device="cpu", engine="torch").translate_image(image()))
    assert np.abs(pixels(Image.open(tmp_path / "b.png")) - expected).max() <= 1
    # an ONNX model cannot run in PyTorch
    onnx_file = engines.cached_export_path(weights)
    code, _, err = run(
        ["translate", tmp_path / "a.png", "-m", onnx_file, "-o", tmp_path / "d.png", "--engine", "torch"], capsys
    )
    assert code == 2 and "onnxruntime" in err and not (tmp_path / "d.png").exists()


def test_translate_help_says_the_engine_does_not_depend_on_the_job(capsys):
    code, out, _ = run(["translate", "--help"], capsys)
    assert code == 0 and "however many images the job has" in " ".join(out.replace("│", " ").split())


@needs_onnx
def test_translate_cli_engine_errors_are_one_line(tmp_path, avx2, capsys, monkeypatch):
    weights = model(tmp_path)
    image().save(tmp_path / "a.png")
    code, _, err = run(
        [
            "translate",
            tmp_path / "a.png",
            "-m",
            weights,
            "-o",
            tmp_path / "b.png",
            "--engine",
            "onnxruntime",
            "--precision",
            "bf16",
        ],
        capsys,
    )
    assert code == 2 and "float32" in err and "Traceback" not in err
    assert not (tmp_path / "b.png").exists()
    monkeypatch.setattr(engines, "has_onnx_extra", lambda: False)
    code, _, err = run(
        ["translate", tmp_path / "a.png", "-m", weights, "-o", tmp_path / "b.png", "--engine", "onnxruntime"], capsys
    )
    assert code != 0 and "img2img[onnx]" in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "b.png").exists()


@needs_onnx
def test_the_fast_exporter_failing_falls_back_to_the_default_one(tmp_path, avx2, monkeypatch):
    import img2img.onnx.export

    real, calls = img2img.onnx.export.export_onnx, []

    def only_default(weights, output, **kwargs):
        calls.append(kwargs.get("opset"))
        if kwargs.get("opset") is not None:
            raise ExportError("the TorchScript exporter is gone")
        return real(weights, output, **kwargs)

    monkeypatch.setattr(img2img.onnx.export, "export_onnx", only_default)
    weights = model(tmp_path)
    translator = Translator(weights, device="cpu")
    assert calls == [engines.CACHE_OPSET, None]
    assert translator.engine.name == "onnxruntime"
    expected = pixels(Translator(weights, device="cpu", engine="torch").translate_image(image()))
    assert np.abs(pixels(translator.translate_image(image())) - expected).max() <= 1


def test_a_stop_signal_the_exporter_swallows_still_stops_the_run(tmp_path, avx2, monkeypatch):
    """torch's exporter turns the Interrupted a SIGINT/SIGTERM raises inside its tracer into
    another error (a RecursionError was seen): that must stop the run, not fall back to PyTorch."""
    import img2img.onnx.export
    from img2img.runtime import signals as _signals

    def traced_into_a_signal(*args, **kwargs):
        monkeypatch.setattr(_signals, "_received", 15)  # the handler ran during the export
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(img2img.onnx.export, "export_onnx", traced_into_a_signal)
    with pytest.raises(_signals.Interrupted):
        Translator(model(tmp_path), device="cpu")
