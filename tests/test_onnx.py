"""`img2img export` and ONNX models in `translate`: every shipped model and tiny ResNet/U-Net
generators (batch and instance norm, 1 and 3 channels) exported, run by an independent
onnxruntime session at sizes the export never saw, and compared with translate's output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import torch  # noqa: E402
from conftest import REPO_ROOT, make_generator_file  # noqa: E402

from img2img.cli import main  # noqa: E402
from img2img.onnx.export import export_onnx  # noqa: E402
from img2img.translate.translator import Translator  # noqa: E402

SHIPPED = sorted((REPO_ROOT / "weights").glob("*.safetensors"))

# name -> generator options of a tiny model; together they cover ResNet and U-Net, batch norm
# with running statistics and per image (pix2pix at batch 1), instance norm, 1 and 3 channels.
TINY = {
    "resnet_instance_rgb": dict(arch="resnet", ngf=4, n_blocks=2, norm="instance"),
    "resnet_batch_eval_gray": dict(
        arch="resnet", ngf=4, n_blocks=1, norm="batch", input_nc=1, output_nc=1, eval_mode=True
    ),
    "unet_batch_per_image_rgb_to_gray": dict(
        arch="unet", ngf=4, num_downs=5, norm="batch", output_nc=1, eval_mode=False, task="pix2pix"
    ),
    "unet_instance_gray_to_rgb": dict(arch="unet", ngf=4, num_downs=5, norm="instance", input_nc=1),
}


def tiny_model_file(path: Path, seed: int, **options) -> Path:
    """A tiny generator whose outputs spread over the grey levels (conftest's init at gain 0.02
    gives a batch-norm ResNet outputs of ~1e-5, every pixel on the 127/128 rounding edge), with
    the running statistics of a few training batches, as a trained batch-norm model has."""
    from img2img.models.config import GeneratorConfig
    from img2img.models.networks import build_generator, init_weights
    from img2img.models.weights import WeightsMetadata, save_generator

    meta = {key: options.pop(key) for key in ("task", "eval_mode") if key in options}
    config = GeneratorConfig(**options)
    torch.manual_seed(seed)
    net = init_weights(build_generator(config), gain=0.1).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(2, config.input_nc, 64, 64) * 2 - 1)
    save_generator(path, net.state_dict(), WeightsMetadata(generator=config, **meta))
    return path


def run_cli(args: list, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def session(path: Path) -> ort.InferenceSession:
    """An onnxruntime session that knows nothing of img2img."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def to_pixels(y: np.ndarray) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> H x W (x C) uint8, as the metadata's img2img.pixels says."""
    pixels = np.clip(np.round((y.astype(np.float64) + 1) * 127.5), 0, 255).astype(np.uint8)
    return pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)


def from_pixels(array: np.ndarray) -> np.ndarray:
    """H x W (x C) uint8 -> (1, C, H, W) float32 in [-1, 1]."""
    x = array.astype(np.float32) / 255.0
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    return ((x - 0.5) / 0.5)[None]


def random_image(path: Path, size: tuple[int, int], mode: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    # Smooth shapes rather than noise, with a per-image brightness, like photographs.
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.uniform(40, 200)
    channels = [
        base + 50 * np.sin(xx / rng.uniform(3, 9) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(3, 9))
        for _ in range(3)
    ]
    array = np.clip(np.stack(channels, -1) + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(array, "RGB").convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


class Exports:
    """name -> (weights file, its ONNX export with the default exporter), each exported once,
    when a test first asks for it (so that `-k` runs export only what they use)."""

    def __init__(self, root: Path):
        self.root, self.cache = root, {}

    def __getitem__(self, name: str) -> tuple[Path, Path]:
        if name not in self.cache:
            if name in TINY:
                weights = tiny_model_file(self.root / f"{name}.safetensors", seed=len(name), **TINY[name])
            else:
                weights = REPO_ROOT / "weights" / f"{name}.safetensors"
            target = self.root / f"{name}.onnx"
            export_onnx(weights, target)
            self.cache[name] = (weights, target)
        return self.cache[name]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Exports:
    return Exports(tmp_path_factory.mktemp("onnx"))


def test_shipped_models_are_there():
    assert {path.stem for path in SHIPPED} >= {"photo2sketch", "photo2night", "night2photo"}


@pytest.mark.parametrize("name", [path.stem for path in SHIPPED] + list(TINY))
def test_metadata_and_dynamic_shapes(exported, name):
    weights, path = exported[name]
    model = onnx.load(str(path))
    props = {prop.key: prop.value for prop in model.metadata_props}
    translator = Translator(weights, device="cpu", precision="fp32")
    cfg = translator.config
    from img2img.models.weights import read_metadata

    assert props["img2img"] == read_metadata(weights).to_json()
    assert props["img2img.layout"] == "NCHW"
    assert props["img2img.input_range"] == props["img2img.output_range"] == "[-1, 1]"
    assert props["img2img.input_channels"] == {1: "L", 3: "RGB"}[cfg.input_nc]
    assert props["img2img.output_channels"] == {1: "L", 3: "RGB"}[cfg.output_nc]
    assert int(props["img2img.size_multiple"]) == cfg.size_multiple
    assert int(props["img2img.minimum_size"]) == translator.minimum_size
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    # batch dynamic, channels fixed, height and width dynamic multiples of the size multiple
    assert isinstance(dims[0], str) and dims[1] == cfg.input_nc
    assert dims[2].startswith(f"{cfg.size_multiple}*") and dims[3].startswith(f"{cfg.size_multiple}*")


@pytest.mark.parametrize("name", [path.stem for path in SHIPPED] + list(TINY))
def test_independent_session_matches_translate_at_unseen_sizes(exported, name, tmp_path, capsys):
    weights, path = exported[name]
    translator = Translator(weights, device="cpu", precision="fp32")
    cfg = translator.config
    unit = max(cfg.size_multiple, 8)
    # The export traced 2x3 units of max(32, multiple) and checked 1x2 and 3x1 units: these
    # sizes are none of them, and need no padding, so the raw session sees the image itself.
    sizes = [(unit * 5, unit * 3), (unit * 3, unit * 2)] if unit < 32 else [(unit, unit), (unit * 2, unit)]
    mode = "RGB" if cfg.input_nc == 3 else "L"
    images = [random_image(tmp_path / f"in{i}.png", size, mode, seed=i) for i, size in enumerate(sizes)]
    code, _, err = run_cli(
        ["translate", *images, "--model", weights, "--out-dir", tmp_path / "torch", "--precision", "fp32"], capsys
    )
    assert code == 0, err

    raw = session(path)
    for image in images:
        pixels = np.asarray(Image.open(image))
        expected = np.asarray(Image.open(tmp_path / "torch" / image.name))
        y = raw.run(None, {raw.get_inputs()[0].name: from_pixels(pixels)})[0]
        got = to_pixels(y[0])
        assert got.shape == expected.shape
        difference = np.abs(got.astype(int) - expected.astype(int))
        # fp32 vs fp32: only roundings at a half grey level may differ, by one level
        assert difference.max() <= 1 and (difference > 0).mean() < 0.01, name


@pytest.mark.parametrize("name", list(TINY))
def test_batch_of_different_images_gives_each_images_translation(exported, name):
    """Per-image batch norm and instance norm: an image's output does not depend on the others
    in its batch, and equals translate's (PyTorch) output."""
    weights, path = exported[name]
    translator = Translator(weights, device="cpu", precision="fp32")
    cfg = translator.config
    side = max(cfg.size_multiple, 16) * 2
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(2, cfg.input_nc, side, side + cfg.size_multiple, generator=generator) * 2 - 1
    x[1] = x[1] * 0.3 + 0.4  # different mean and contrast
    raw = session(path)
    name_in = raw.get_inputs()[0].name
    both = raw.run(None, {name_in: x.numpy()})[0]
    first = raw.run(None, {name_in: x[:1].numpy()})[0]
    second = raw.run(None, {name_in: x[1:].numpy()})[0]
    np.testing.assert_allclose(both[0], first[0], atol=1e-5)
    np.testing.assert_allclose(both[1], second[0], atol=1e-5)
    expected = translator.translate_tensor(x).numpy()
    np.testing.assert_allclose(both, expected, atol=1e-4)


def test_translate_runs_onnx_models_like_weights(exported, tmp_path, capsys):
    """translate --model model.onnx: odd sizes (padded and cropped back), a grayscale input to an
    RGB model, batching, JSON; the outputs are the PyTorch model's up to a grey level."""
    weights, path = exported["photo2night"]
    images = [
        random_image(tmp_path / "in" / "a.png", (37, 29), "RGB", 0),
        random_image(tmp_path / "in" / "b.png", (37, 29), "RGB", 1),
        random_image(tmp_path / "in" / "c.png", (50, 21), "L", 2),
    ]
    code, out, err = run_cli(
        ["translate", tmp_path / "in", "--model", path, "--out-dir", tmp_path / "onnx", "--batch-size", "2", "--json"],
        capsys,
    )
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["status"] for r in records) == ["ok"] * 3
    code, _, err = run_cli(
        ["translate", tmp_path / "in", "--model", weights, "--out-dir", tmp_path / "torch", "--precision", "fp32"],
        capsys,
    )
    assert code == 0, err
    for image in images:
        got = np.asarray(Image.open(tmp_path / "onnx" / image.name)).astype(int)
        expected = np.asarray(Image.open(tmp_path / "torch" / image.name)).astype(int)
        assert got.shape == expected.shape and got.shape[:2] == Image.open(image).size[::-1]
        assert np.abs(got - expected).max() <= 1


def test_an_onnx_model_out_of_memory_says_it_does_not_tile_and_what_does(exported, tmp_path, capsys, monkeypatch):
    """onnxruntime's arena running out (a 3000x2000 image under a memory limit) is one line that
    says ONNX models are not tiled and names the alternative, not onnxruntime's raw message."""
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    from img2img.onnx.runtime import OnnxGenerator

    def out_of_memory(self, x):
        raise RuntimeException(
            "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
            "Status Message: BFCArena::AllocateRawInternal Available memory of 0 is smaller than requested bytes of 1536000000"
        )

    _, path = exported["resnet_instance_rgb"]
    image = random_image(tmp_path / "a.png", (16, 16), "RGB", 0)
    monkeypatch.setattr(OnnxGenerator, "__call__", out_of_memory)
    code, _, err = run_cli(["translate", image, "--model", path, "-o", tmp_path / "b.png"], capsys)
    assert code == 1 and err.count("\n") == 1 and "BFCArena" not in err and "Traceback" not in err, err
    assert "out of memory translating a 16x16 image" in err and "not tiles" in err and ".safetensors" in err
    assert not (tmp_path / "b.png").exists()


def test_translate_onnx_rejects_other_precisions(exported, tmp_path, capsys):
    _, path = exported["resnet_instance_rgb"]
    image = random_image(tmp_path / "a.png", (16, 16), "RGB", 0)
    code, _, err = run_cli(
        ["translate", image, "--model", path, "-o", tmp_path / "b.png", "--precision", "bf16"], capsys
    )
    assert code == 2 and "float32" in err and "Traceback" not in err
    assert not (tmp_path / "b.png").exists()


def test_onnx_without_img2img_metadata_is_refused(exported, tmp_path, capsys):
    _, path = exported["resnet_instance_rgb"]
    model = onnx.load(str(path))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    image = random_image(tmp_path / "a.png", (16, 16), "RGB", 0)
    code, _, err = run_cli(["translate", image, "--model", bare, "-o", tmp_path / "b.png"], capsys)
    assert code == 1
    assert err.count("\n") == 1 and str(bare) in err and "no img2img metadata" in err
    assert not (tmp_path / "b.png").exists()


def test_a_file_that_is_not_onnx_is_refused(tmp_path, capsys):
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"\x00not a protobuf at all" * 10)
    image = random_image(tmp_path / "a.png", (16, 16), "RGB", 0)
    code, _, err = run_cli(["translate", image, "--model", fake, "-o", tmp_path / "b.png"], capsys)
    assert code == 1 and err.count("\n") == 1 and str(fake) in err and "Traceback" not in err


def test_export_cli_prints_parity_and_writes_the_file(tiny_generator, tmp_path, capsys):
    target = tmp_path / "tiny.onnx"
    code, out, err = run_cli(["export", tiny_generator, "-o", target, "--opset", "17"], capsys)
    assert code == 0, err
    assert out == ""
    parity = [line for line in err.splitlines() if line.startswith("parity:")]
    assert len(parity) == 2 and "batch 2" in parity[0] and "max abs diff" in parity[0]
    model = onnx.load(str(target))
    # opset 17 is below what the dynamo exporter writes: the TorchScript exporter wrote it,
    # still with dynamic batch, height and width
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and isinstance(dims[2], str) and isinstance(dims[3], str)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 20, 28)).astype(np.float32)
    y = session(target).run(None, {"input": x})[0]
    expected = Translator(tiny_generator, device="cpu", precision="fp32").translate_tensor(torch.from_numpy(x))
    np.testing.assert_allclose(y, expected.numpy(), atol=1e-4)
    # an existing output is kept unless --overwrite
    code, _, err = run_cli(["export", tiny_generator, "-o", target], capsys)
    assert code == 2 and "already exists" in err


def test_parity_over_tolerance_fails_and_leaves_no_file(tiny_generator, tmp_path, capsys):
    target = tmp_path / "out" / "tiny.onnx"
    code, _, err = run_cli(["export", tiny_generator, "-o", target, "--opset", "17", "--tolerance", "0"], capsys)
    assert code == 1
    assert "parity check failed" in err and "no file written" in err and "Traceback" not in err
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_a_graph_that_computes_something_else_fails_the_check(tiny_generator, tmp_path, capsys, monkeypatch):
    """A wrong graph (one weight perturbed after the export, as a faulty exporter would) is
    caught by the default tolerance."""
    import img2img.onnx.export as onnx_export

    finish = onnx_export._finish

    def finish_and_perturb(path, props, opset):
        result = finish(path, props, opset)
        model = onnx.load(str(path))
        from onnx import numpy_helper

        init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
        array = numpy_helper.to_array(init).copy()
        array.flat[0] += 0.5
        init.CopyFrom(numpy_helper.from_array(array, init.name))
        onnx.save(model, str(path))
        return result

    monkeypatch.setattr(onnx_export, "_finish", finish_and_perturb)
    target = tmp_path / "tiny.onnx"
    code, _, err = run_cli(["export", tiny_generator, "-o", target, "--opset", "17"], capsys)
    assert code == 1 and "parity check failed" in err
    assert list(tmp_path.glob("*.onnx*")) == [] and list(tmp_path.glob(".tiny.onnx*")) == []


def test_static_export_fixes_the_shape_and_translate_pads_to_it(tmp_path, capsys):
    weights = make_generator_file(tmp_path / "g.safetensors", ngf=4, n_blocks=1)
    target = tmp_path / "static.onnx"
    code, _, err = run_cli(["export", weights, "-o", target, "--static", "24x32", "--opset", "17"], capsys)
    assert code == 0, err
    model = onnx.load(str(target))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 24, 32]
    assert {p.key: p.value for p in model.metadata_props}["img2img.static_size"] == "24x32"
    fits = random_image(tmp_path / "in" / "fits.png", (31, 22), "RGB", 0)  # pads to 24x32
    random_image(tmp_path / "in" / "other.png", (32, 24), "RGB", 1)  # also 24x32
    random_image(tmp_path / "in" / "wrong.png", (48, 40), "RGB", 2)  # pads to 40x48
    code, _, err = run_cli(
        ["translate", tmp_path / "in", "--model", target, "--out-dir", tmp_path / "out", "--batch-size", "2"], capsys
    )
    assert code == 1
    assert err.count("\n") == 1 and "wrong.png" in err and "24x32" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fits.png", "other.png"]
    assert Image.open(tmp_path / "out" / "fits.png").size == Image.open(fits).size


@pytest.mark.parametrize("size", ["30x32", "0x32", "big", "4x4"])
def test_static_sizes_the_network_cannot_take_are_usage_errors(tiny_generator, tmp_path, capsys, size):
    code, _, err = run_cli(["export", tiny_generator, "-o", tmp_path / "a.onnx", "--static", size], capsys)
    assert code == 2 and "--static" in err and not (tmp_path / "a.onnx").exists()


def test_cuda_without_its_execution_provider_is_a_device_error(monkeypatch):
    from img2img.errors import DeviceError
    from img2img.onnx.runtime import resolve_providers

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert resolve_providers("auto") == (["CPUExecutionProvider"], "cpu")
    with pytest.raises(DeviceError, match="CUDA execution provider"):
        resolve_providers("cuda:1")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    providers, name = resolve_providers("auto")
    assert name == "cuda:0" and providers[0] == ("CUDAExecutionProvider", {"device_id": 0})
