"""Tiled inference (img2img.translate.tiling): closeness to one pass, no seams, shared statistics, the
automatic mode, --max-pixels, modes kept, --json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_generator_file
from PIL import Image

from img2img.cli import main
from img2img.errors import ImageError, UsageError
from img2img.files.imageio import read_image
from img2img.translate.tiling import TilePlan, _axis_starts, _axis_weights, shared_statistics
from img2img.translate.translator import Translator

WIDTH, HEIGHT = 256, 192


def scene(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> Image.Image:
    """A photograph-like test image: smooth gradients and flat discs of random colours; its regions differ in colour, so per-tile statistics differ from the whole image's."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    y, x = yy / max(width, height), xx / max(width, height)
    image = np.stack([np.sin(6 * x + 1) * 0.5 + 0.5, y, (x * y * 4) % 1], -1)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(8, 40)
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 1, 3)
    return Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))


def psnr(a, b, mask: np.ndarray | None = None) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if mask is not None:
        a, b = a[mask], b[mask]
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def border_bands(plan: TilePlan) -> np.ndarray:
    """True on the rows and columns where neighbouring tiles overlap (where seams would be)."""
    mask = np.zeros((plan.padded_height, plan.padded_width), dtype=bool)
    for starts, size, axis in ((plan.ys, plan.tile_height, 0), (plan.xs, plan.tile_width, 1)):
        for previous, start in zip(starts, starts[1:]):
            band = slice(start, previous + size)
            if axis == 0:
                mask[band] = True
            else:
                mask[:, band] = True
    return mask[plan.top : plan.top + plan.height, plan.left : plan.left + plan.width]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiling")
    return {
        # CycleGAN-like: instance norm; pix2pix-like: U-Net with batch norm run per image.
        "resnet": make_generator_file(root / "resnet.safetensors", ngf=8, n_blocks=2),
        "unet": make_generator_file(
            root / "unet.safetensors", arch="unet", num_downs=5, ngf=8, norm="batch", eval_mode=False
        ),
        "gray": make_generator_file(root / "gray.safetensors", ngf=8, n_blocks=2, input_nc=1, output_nc=1),
    }


@pytest.fixture(scope="module")
def one_pass(models) -> dict[str, Image.Image]:
    image = scene()
    return {
        name: Translator(models[name], device="cpu", tile="off").translate_image(image) for name in ("resnet", "unet")
    }


def tiled(model: Path, tile: int, stats: str, image: Image.Image | None = None) -> tuple[Image.Image, TilePlan]:
    image = image or scene()
    translator = Translator(model, device="cpu", tile=tile, tile_overlap=32, tile_stats=stats)
    # A memory budget of a quarter of the image, as when tiling is really needed: the thumbnail
    # is then a copy downscaled by 2, not the whole image.
    translator.tiling.memory_budget = int(translator._forward_bytes_per_pixel() * image.width * image.height / 4)
    plan = translator.tile_plan(image.height, image.width)
    assert plan.thumbnail_pixels < image.width * image.height
    assert plan is not None and plan.tile_count > 4
    return translator.translate_image(image), plan


# --- quality ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "tile", "threshold"), [("resnet", 96, 29.0), ("unet", 96, 36.0)])
def test_tiles_with_shared_statistics_are_close_to_one_pass_without_seams(models, one_pass, name, tile, threshold):
    out, plan = tiled(models[name], tile, "thumbnail")
    whole = psnr(out, one_pass[name])
    bands = psnr(out, one_pass[name], border_bands(plan))
    assert whole > threshold
    assert bands > whole - 1.0, f"seams: border bands {bands:.2f} dB, whole image {whole:.2f} dB"


def test_default_overlap_keeps_u_net_tile_borders_out_of_the_blend(tmp_path):
    """A U-Net's bottleneck sees the whole tile, so a tile's output differs from one pass's up
    to about a size multiple from its border. With the old default overlap (a quarter of the
    tile, whatever the network) the bands along tile borders were 1.8 dB worse than the whole
    image; the default now grows with the size multiple. The thumbnail here is the image itself,
    so the statistics are one pass's and what remains are the tile borders."""
    model = make_generator_file(
        tmp_path / "unet.safetensors", arch="unet", num_downs=5, ngf=4, norm="batch", eval_mode=False
    )
    image = scene()
    reference = Translator(model, device="cpu", tile="off").translate_image(image)
    translator = Translator(model, device="cpu", tile=128)  # 4 size multiples
    plan = translator.tile_plan(image.height, image.width)
    assert plan.thumbnail_pixels >= image.width * image.height
    out = translator.translate_image(image)
    whole, bands = psnr(out, reference), psnr(out, reference, border_bands(plan))
    assert bands > whole - 1.0, f"seams: border bands {bands:.2f} dB, whole image {whole:.2f} dB"
    # An overlap given explicitly is still what the tiles use (rounded up as starts on the grid of
    # 32 spread evenly allow), not the default.
    explicit = Translator(model, device="cpu", tile=128, tile_overlap=32).tile_plan(image.height, image.width)
    assert 32 <= explicit.overlap < plan.overlap


@pytest.mark.parametrize("name", ["resnet", "unet"])
def test_shared_statistics_beat_per_tile_statistics(models, one_pass, name):
    shared, _ = tiled(models[name], 96, "thumbnail")
    per_tile, _ = tiled(models[name], 96, "tile")
    assert psnr(shared, one_pass[name]) > psnr(per_tile, one_pass[name]) + 3.0


def test_exact_statistics_are_at_least_as_close_as_the_thumbnails(models, one_pass):
    exact, _ = tiled(models["resnet"], 96, "exact")
    thumbnail, _ = tiled(models["resnet"], 96, "thumbnail")
    assert psnr(exact, one_pass["resnet"]) >= psnr(thumbnail, one_pass["resnet"])
    assert psnr(exact, one_pass["resnet"]) > 45.0


def test_tiles_follow_the_one_pass_sampling_grid(models, one_pass):
    """A ResNet halves twice: a tile starting off the grid of 4 would sample other pixels than
    one pass does (this broke the output before tile starts were aligned)."""
    _, plan = tiled(models["resnet"], 96, "thumbnail")
    assert all(start % 4 == 0 for start in plan.ys + plan.xs)
    # 256 wide, 96-pixel tiles, 32 overlap: unaligned even spreading would start at 53 and 107.
    assert plan.xs == (0, 52, 108, 160)


def test_blending_weights_sum_to_one_and_skip_tile_borders():
    starts = _axis_starts(256, 96, 32, 4)
    weights = _axis_weights(starts, 96, 256)
    total = torch.zeros(256)
    for start, weight in zip(starts, weights):
        total[start : start + 96] += weight
    assert torch.allclose(total, torch.ones(256))
    # The outer third of each overlap is discarded: there the tile's padding distorts it.
    overlap = starts[0] + 96 - starts[1]
    assert torch.all(weights[1][: overlap // 3] == 0) and torch.all(weights[0][-(overlap // 3) :] == 0)
    assert weights[0][0] == 1 and weights[-1][-1] == 1  # image borders: nothing to blend with


def test_the_network_gets_its_own_norm_layers_back(models):
    translator = Translator(models["resnet"], device="cpu")
    before = [type(m) for m in translator.net.modules()]
    with shared_statistics(translator.net) as controller:
        assert len(controller.norms) == 1 + 2 + 2 * 2 + 2  # head, downs, 2 blocks, ups
    assert [type(m) for m in translator.net.modules()] == before


# --- the automatic mode ---------------------------------------------------------------------


def test_auto_tiles_only_when_the_budget_is_too_small(models):
    image = scene()
    roomy = Translator(models["resnet"], device="cpu", memory_budget=1 << 40)
    assert roomy.tile_plan(HEIGHT, WIDTH) is None
    bytes_per_pixel = roomy._forward_bytes_per_pixel()
    budget = math.ceil(bytes_per_pixel * 100 * 100)  # room for 100x100 pixels (not 99.99²)
    tight = Translator(models["resnet"], device="cpu", memory_budget=budget)
    plan = tight.tile_plan(HEIGHT, WIDTH)
    largest = int(math.sqrt(budget / bytes_per_pixel)) // 4 * 4
    assert plan is not None and plan.tile_height <= largest and plan.tile_width <= largest
    # Each tile is only as large as covering the image with that many tiles needs.
    assert plan.tile_height < largest and plan.tile_count == 12
    [result] = tight.translate_stream([("a", tight.to_input(image))])
    assert result.tiling == plan and result.image.size == image.size


def test_auto_falls_back_to_tiles_when_one_pass_runs_out_of_memory(models, monkeypatch):
    image = scene(128, 96)
    translator = Translator(models["resnet"], device="cpu", memory_budget=1 << 40)
    assert translator.tile_plan(96, 128) is None

    def out_of_memory(inputs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")

    monkeypatch.setattr(translator, "_translate_inputs", out_of_memory)
    [result] = translator.translate_stream([("a", translator.to_input(image))])
    assert result.error is None and result.tiling is not None and result.image.size == image.size
    translator.tiling.tile = "off"
    [result] = translator.translate_stream([("a", translator.to_input(image))])
    assert isinstance(result.error, ImageError) and "out of memory" in str(result.error)


def test_off_never_tiles_and_tile_sizes_must_suit_the_network(models):
    assert Translator(models["resnet"], device="cpu", tile="off", memory_budget=1).tile_plan(HEIGHT, WIDTH) is None
    with pytest.raises(UsageError, match="multiples of 32"):
        Translator(models["unet"], device="cpu", tile=100)
    with pytest.raises(UsageError, match="size in pixels"):
        Translator(models["unet"], device="cpu", tile="big")


@pytest.mark.parametrize(("name", "asked"), [("resnet", 4), ("resnet", 6), ("unet", 16), ("unet", 40)])
def test_tiles_below_the_networks_smallest_side_are_refused_and_the_advice_works(models, name, asked, tmp_path, capsys):
    """A ResNet's deepest reflection padding needs tiles of at least 8 pixels, a U-Net's
    bottleneck 2^depth: a smaller tile is a usage error before any image is read, and the tile
    the message advises translates."""
    from img2img.models.config import smallest_side
    from img2img.models.weights import read_metadata

    source = tmp_path / "in.png"
    size = (16, 12) if name == "resnet" else (40, 36)  # a few tiles of the advised size
    scene(*size).save(source)
    code, _, err = run([source, "-m", models[name], "-o", tmp_path / "out.png", "--tile", asked], capsys)
    smallest = smallest_side(read_metadata(models[name]).generator)
    assert code == 2 and err.count("\n") == 1 and f"at least {smallest}" in err, err
    assert not (tmp_path / "out.png").exists()
    advised = int(err.split("try --tile ")[1].split(")")[0])
    code, _, err = run([source, "-m", models[name], "-o", tmp_path / "out.png", "--tile", advised], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "out.png").size == size


def test_overlaps_the_tile_grid_cannot_give_are_refused(models):
    """Tiles start on multiples of the size multiple: tiles of 8 pixels of a ResNet overlap by
    at most 4, tiles of 64 of a U-Net with size multiple 32 by at most 32. A larger overlap is
    refused (it used to be cut down without a word); the largest one plans as asked."""
    for name, tile, largest in (("resnet", 8, 4), ("unet", 64, 32)):
        with pytest.raises(UsageError, match=f"overlap by at most {largest}"):
            Translator(models[name], device="cpu", tile=tile, tile_overlap=largest + 1)
        plan = Translator(models[name], device="cpu", tile=tile, tile_overlap=largest).tile_plan(HEIGHT, WIDTH)
        assert plan.overlap >= largest


# --- modes kept ------------------------------------------------------------------------------


def test_tiling_keeps_grayscale_and_alpha(models):
    rgba = scene().convert("RGBA")
    alpha = Image.linear_gradient("L").resize(rgba.size)
    rgba.putalpha(alpha)
    out, _ = tiled(models["resnet"], 96, "thumbnail", image=rgba)
    assert out.mode == "RGBA" and out.size == rgba.size
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(alpha))
    gray = scene().convert("L")
    out, _ = tiled(models["gray"], 96, "thumbnail", image=gray)
    assert out.mode == "L" and out.size == gray.size


# --- command line: --tile, --json, --max-pixels ----------------------------------------------------


def run(args: list, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["translate", *map(str, args)])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def test_json_reports_the_tiling(models, tmp_path, capsys):
    source = tmp_path / "in.png"
    scene().save(source)
    code, out, _ = run([source, "-m", models["resnet"], "-o", tmp_path / "t.png", "--tile", 96, "--json"], capsys)
    assert code == 0
    record = json.loads(out)
    assert record["tiling"]["tile"] == [96, 96] and record["tiling"]["stats"] == "thumbnail"
    assert record["tiling"]["tiles"] == 12
    code, out, _ = run([source, "-m", models["resnet"], "-o", tmp_path / "o.png", "--tile", "off", "--json"], capsys)
    assert code == 0 and json.loads(out)["tiling"] is None


def test_max_pixels_lifts_the_decompression_bomb_limit(models, tmp_path, capsys, monkeypatch):
    source = tmp_path / "big.png"
    Image.new("RGB", (40, 30)).save(source)  # 1200 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # Pillow refuses past twice this
    monkeypatch.delenv("IMG2IMG_MAX_PIXELS", raising=False)
    with pytest.raises(ImageError, match="--max-pixels 1200"):
        read_image(source)
    code, _, err = run([source, "-m", models["resnet"], "-o", tmp_path / "a.png"], capsys)
    assert code == 1 and "big.png" in err and "--max-pixels" in err and "IMG2IMG_MAX_PIXELS" in err
    assert not (tmp_path / "a.png").exists()
    code, _, err = run([source, "-m", models["resnet"], "-o", tmp_path / "b.png", "--max-pixels", 1200], capsys)
    assert code == 0 and read_image(tmp_path / "b.png", max_pixels=1200).size == (40, 30)
    monkeypatch.setenv("IMG2IMG_MAX_PIXELS", "2000")
    code, _, err = run([source, "-m", models["resnet"], "-o", tmp_path / "c.png"], capsys)
    assert code == 0
    assert read_image(source).size == (40, 30)
    assert Image.MAX_IMAGE_PIXELS == 500  # Pillow's own limit is left as it was
    code, _, err = run([source, "-m", models["resnet"], "-o", tmp_path / "d.png", "--max-pixels", 1000], capsys)
    assert code == 1 and "more than the limit of 1000" in err
