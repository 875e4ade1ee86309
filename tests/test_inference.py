"""The translation library: sizes, modes, precision, batching, devices, atomic writes."""

from __future__ import annotations

import io
import pathlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_generator_file
from PIL import Image

from img2img.errors import DeviceError, ImageError, UsageError
from img2img.files.imageio import encode_image, read_image, to_model_input, write_image
from img2img.models.weights import load_generator
from img2img.runtime.devices import resolve_device
from img2img.translate.translator import (
    Translator,
    cpu_has_native_bf16,
    pad_to_multiple,
    resolve_precision,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "resnet": make_generator_file(root / "resnet.safetensors"),
        "unet": make_generator_file(root / "unet.safetensors", arch="unet", num_downs=5, ngf=4, norm="batch"),
        "gray": make_generator_file(root / "gray.safetensors", input_nc=1, output_nc=1),
        "gray_in": make_generator_file(root / "gray_in.safetensors", input_nc=1, output_nc=3),
        "per_image_bn": make_generator_file(root / "per_image_bn.safetensors", norm="batch", eval_mode=False, seed=3),
    }


@pytest.fixture(scope="module")
def resnet(models) -> Translator:
    return Translator(models["resnet"], device="cpu")


@pytest.fixture(scope="module")
def gray(models) -> Translator:
    return Translator(models["gray"], device="cpu")


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A random image of ``size`` (width, height)."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "RGBA": 4, "LA": 2, "CMYK": 4}[mode]
    array = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(array.squeeze(2) if channels == 1 else array, mode)


def psnr(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


# --- sizes and padding -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(37, 53), (64, 64), (3, 5), (1, 1), (130, 7)])
def test_output_has_the_input_size(resnet, models, size):
    assert resnet.translate_image(noise(size)).size == size
    unet = Translator(models["unet"], device="cpu")  # size multiple 32: pads most of these a lot
    assert unet.size_multiple == 32
    assert unet.translate_image(noise(size)).size == size


def test_pad_reflects_and_falls_back_to_replicate():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    padded, padding = pad_to_multiple(x, 4)
    assert padded.shape[-2:] == (4, 4)
    assert torch.equal(padding.crop(padded), x)
    # Reflection: the column right of the image mirrors column 1, not column 2.
    assert (padding.left, padding.top) == (0, 1)
    assert padded[0, 0, padding.top, 3] == x[0, 0, 0, 1]
    tiny, tiny_padding = pad_to_multiple(x, 32)  # 2x3 cannot reflect 15 pixels: replicate
    assert tiny.shape[-2:] == (32, 32)
    assert torch.equal(tiny_padding.crop(tiny), x)
    assert tiny[0, 0, 0, 0] == x[0, 0, 0, 0]
    same, _ = pad_to_multiple(torch.zeros(1, 1, 8, 8), 4)
    assert same.shape == (1, 1, 8, 8)


def test_translate_tensor_keeps_shape_and_range(resnet):
    batch = torch.rand(3, 3, 21, 30) * 2 - 1
    out = resnet.translate_tensor(batch)
    assert out.shape == (3, 3, 21, 30) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    with pytest.raises(ValueError):
        resnet.translate_tensor(torch.zeros(1, 1, 8, 8))


# --- modes -------------------------------------------------------------------------------------


def test_rgba_keeps_alpha_exactly(resnet):
    image = noise((20, 12), "RGBA")
    out = resnet.translate_image(image)
    assert out.mode == "RGBA" and out.size == image.size
    assert out.getchannel("A").tobytes() == image.getchannel("A").tobytes()


def test_la_keeps_alpha_with_a_gray_model(gray):
    image = noise((20, 12), "LA")
    out = gray.translate_image(image)
    assert out.mode == "LA"
    assert out.getchannel("A").tobytes() == image.getchannel("A").tobytes()


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1", "I;16", "I", "F", "YCbCr"])
def test_other_modes_become_rgb(resnet, mode):
    image = noise((17, 9)).convert(mode) if mode not in ("I;16", "I", "F") else None
    if mode == "I;16":
        image = Image.fromarray(np.random.default_rng(0).integers(0, 65536, (9, 17), dtype=np.uint16))
    elif mode == "I":
        image = Image.fromarray(np.random.default_rng(0).integers(0, 65536, (9, 17)).astype(np.int32), "I")
    elif mode == "F":
        image = Image.fromarray(np.random.default_rng(0).random((9, 17), dtype=np.float32), "F")
    assert image.mode == mode
    out = resnet.translate_image(image)
    assert (out.mode, out.size) == ("RGB", (17, 9))


def test_palette_transparency_becomes_alpha(resnet):
    image = noise((16, 8)).convert("P")
    image.info["transparency"] = 0
    out = resnet.translate_image(image)
    assert out.mode == "RGBA"
    pa = noise((16, 8)).convert("P").convert("PA")
    assert resnet.translate_image(pa).mode == "RGBA"


def test_sixteen_bit_uses_its_full_range():
    gray8 = np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8)
    gray16 = Image.fromarray(gray8.astype(np.uint16) * 257)  # the same image in 16 bits
    as16 = to_model_input(gray16, 3).pixels
    as8 = to_model_input(Image.fromarray(gray8), 3).pixels
    assert np.allclose(as16, as8, atol=1e-6)


def test_one_channel_model_writes_grayscale(gray, models):
    assert gray.translate_image(noise((20, 10))).mode == "L"
    assert gray.translate_image(noise((20, 10), "L")).mode == "L"
    gray_in = Translator(models["gray_in"], device="cpu")
    assert gray_in.translate_image(noise((20, 10), "L")).mode == "RGB"


def test_exif_orientation_is_applied_on_read(resnet):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    buffer = io.BytesIO()
    noise((40, 20)).save(buffer, "JPEG", exif=exif)
    image = read_image(buffer.getvalue(), name="rotated.jpg")
    assert image.size == (20, 40)
    assert resnet.translate_image(image).size == (20, 40)


def test_unreadable_image_names_the_file():
    with pytest.raises(ImageError, match=r"^bad\.jpg: cannot identify image file$"):
        read_image(b"not an image", name="bad.jpg")
    buffer = io.BytesIO()
    noise((64, 64)).save(buffer, "PNG")
    with pytest.raises(ImageError, match="truncated.png"):
        read_image(buffer.getvalue()[:200], name="truncated.png")


# --- precision, batching, norms ----------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"arch": "resnet", "ngf": 16, "n_blocks": 9, "norm": "instance"},
        {"arch": "resnet", "ngf": 16, "n_blocks": 9, "norm": "batch"},
        {"arch": "unet", "ngf": 8, "num_downs": 8, "norm": "batch"},
        {"arch": "unet", "ngf": 8, "num_downs": 8, "norm": "instance"},
        {"arch": "unet", "ngf": 8, "num_downs": 8, "norm": "batch", "eval_mode": False},
    ],
    ids=["resnet9-instance", "resnet9-batch", "unet256-batch", "unet256-instance", "unet256-per-image"],
)
def test_auto_precision_stays_within_40_db_of_fp32(tmp_path, options):
    path = make_generator_file(tmp_path / "model.safetensors", **options)
    image = noise((64, 48))
    fast = Translator(path, device="cpu", precision="auto").translate_image(image)
    exact = Translator(path, device="cpu", precision="fp32").translate_image(image)
    assert psnr(fast, exact) >= 40


def test_fp32_matches_a_plain_forward(models):
    """The prepared network (group norm, channels-last, inference mode) computes what the
    loaded network computes."""
    translator = Translator(models["resnet"], device="cpu", precision="fp32")
    net = load_generator(models["resnet"]).net
    x = torch.rand(2, 3, 24, 32) * 2 - 1
    with torch.no_grad():
        expected = net(x)
    assert torch.allclose(translator.translate_tensor(x), expected, atol=1e-5)


def test_auto_precision_per_device(cpu_class):
    cpu = torch.device("cpu")
    native = cpu_class in ("avx512_bf16", "amx")
    assert cpu_has_native_bf16() == native
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if native else torch.float32)
    assert resolve_precision("fp32", cpu) == torch.float32
    with pytest.raises(UsageError, match="fp16"):
        resolve_precision("fp16", cpu)
    with pytest.raises(UsageError):
        resolve_precision("fp64", cpu)


def test_batching_gives_the_same_result_as_one_by_one(resnet):
    images = [noise((24, 16), seed=1), noise((30, 20), seed=2), noise((24, 16), seed=3), noise((23, 14), seed=4)]
    alone = [resnet.translate_image(image) for image in images]
    batched = resnet.translate_images(images, batch_size=3)
    for a, b in zip(alone, batched):
        assert a.size == b.size
        assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 1


def test_stream_batches_equal_padded_sizes(resnet):
    calls = []
    original = resnet._forward

    def spy(x):
        calls.append(x.shape[0])
        return original(x)

    resnet._forward = spy
    try:
        items = [
            (i, resnet.to_input(noise(size, seed=i)))
            for i, size in enumerate([(8, 8), (16, 8), (8, 8), (7, 6), (8, 8)])
        ]
        results = list(resnet.translate_stream(items, batch_size=3))
    finally:
        del resnet._forward
    assert sorted(r.key for r in results) == [0, 1, 2, 3, 4]
    # (8, 8), (8, 8) and (7, 6) -- padded to 8x8 -- fill a batch; the rest run at the end.
    assert calls == [3, 1, 1]


def test_per_image_batch_norm_is_batch_independent(models):
    translator = Translator(models["per_image_bn"], device="cpu", precision="fp32")
    a, b = noise((16, 16), seed=5), Image.new("RGB", (16, 16), (250, 10, 10))
    alone = translator.translate_image(a)
    together = translator.translate_images([a, b], batch_size=2)[0]
    assert np.abs(np.asarray(alone, dtype=int) - np.asarray(together, dtype=int)).max() <= 1


def test_out_of_memory_retries_singly_then_reports(resnet, monkeypatch):
    original = resnet._forward

    def forward(x):
        if x.shape[0] > 1 or x.shape[-1] > 16:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return original(x)

    monkeypatch.setattr(resnet, "_forward", forward)
    monkeypatch.setattr(resnet.tiling, "tile", "off")  # else "big" is retried in tiles (test_tiling)
    items = [
        ("small", resnet.to_input(noise((8, 8)))),
        ("small2", resnet.to_input(noise((8, 8)))),
        ("big", resnet.to_input(noise((32, 8)))),
    ]
    results = {r.key: r for r in resnet.translate_stream(items, batch_size=2)}
    assert results["small"].image is not None and results["small2"].image is not None
    assert results["big"].image is None and "out of memory" in str(results["big"].error)


def test_a_loaded_generator_is_not_changed(models):
    loaded = load_generator(models["resnet"])
    Translator(loaded, device="cpu", precision="bf16")
    assert all(p.dtype == torch.float32 for p in loaded.net.parameters())
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in loaded.net.modules())


# --- direction and devices ---------------------------------------------------------------------


def test_direction_mismatch_is_a_usage_error(models):
    with pytest.raises(UsageError, match="maps AtoB, not BtoA") as info:
        Translator(models["resnet"], device="cpu", direction="BtoA")
    assert "one weights file per direction" in str(info.value)
    Translator(models["resnet"], device="cpu", direction="AtoB")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_device_error():
    with pytest.raises(DeviceError, match="cuda"):
        resolve_device("cuda")
    with pytest.raises(DeviceError):
        resolve_device("cuda:1")
    assert resolve_device("auto") == torch.device("cpu")


def test_unknown_device_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("gpu0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(models):
    image = noise((40, 24))
    cpu = Translator(models["resnet"], device="cpu", precision="fp32").translate_image(image)
    for precision in ("fp32", "auto"):
        cuda = Translator(models["resnet"], device="cuda", precision=precision).translate_image(image)
        assert psnr(cpu, cuda) >= 40


# --- writing -----------------------------------------------------------------------------------


def test_alpha_is_dropped_only_where_the_format_cannot_hold_it():
    rgba = noise((8, 8), "RGBA")
    assert Image.open(io.BytesIO(encode_image(rgba, "PNG"))).mode == "RGBA"
    assert Image.open(io.BytesIO(encode_image(rgba, "JPEG"))).mode == "RGB"
    assert Image.open(io.BytesIO(encode_image(noise((8, 8), "LA"), "BMP"))).mode in ("L", "P", "RGB")


@pytest.mark.parametrize("interruption", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch, interruption):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")

    def half_write(self, data):
        with open(self, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise interruption

    monkeypatch.setattr(pathlib.Path, "write_bytes", half_write)
    with pytest.raises((ImageError, KeyboardInterrupt)):
        write_image(noise((32, 32)), target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert target.read_bytes() == b"previous"
