"""`img2img export --quantize int8`: static int8 quantisation of an exported model, kept only
when its outputs stay within a PSNR bar of the fp32 model's.

    calibration, held_out = quantization_images(None, cfg, static=None)   # procedural scenes
    psnr = quantize_checked(fp32_path, int8_path, props, calibration, held_out, "model.onnx")

The quantisation is onnxruntime's (``onnxruntime.quantization``): ``quant_pre_process`` (shape
inference and graph optimisation), then ``quantize_static`` in the QOperator format
(``QLinearConv``...), int8 weights per output channel, uint8 activations whose scales come from
MinMax calibration over the calibration images. That is the variant that measured best on this
project's trained ResNets (README.md, *int8 quantisation*: 35.5-37.9 dB PSNR against fp32 at
0.80-0.89x onnxruntime fp32's time on an AVX2 CPU); QDQ and per-tensor scales lost 3-6 dB more.

Quality is checked, not assumed: the int8 and the fp32 model both run on held-out images (never
calibration ones), their outputs become 8-bit pixels as translate writes them, and the lowest
PSNR over the images must reach ``MIN_PSNR_DB`` (35 dB, the bar of issue #17 for offering int8);
below it the export is refused (ExportError) and no file is written.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import tempfile
import warnings
from pathlib import Path

import numpy as np

from img2img.errors import ExportError, UsageError
from img2img.models.config import GeneratorConfig, minimum_size
from img2img.onnx.runtime import QUANTIZATION_KEY, QUANTIZATION_PSNR_KEY, import_extra, session_options

INT8_STATIC = "int8-static-qoperator-per-channel"
QUANTIZE_CHOICES = ("int8",)
# Issue #17: int8 is offered at >= 35 dB PSNR against fp32 (and would be a default at >= 40 dB).
MIN_PSNR_DB = 35.0
# The side calibration and held-out images are fed at: 256 (or the next size multiple).
FEED_SIDE = 256
DEFAULT_CALIBRATION_COUNT = 8
HELD_OUT_COUNT = 4
# A --calibration folder must hold at least this many images to calibrate on and as many to hold
# out: four 20x12 thumbnails (two and two) recorded 38.7 dB and gave 30.8-33.4 dB on photos.
MIN_CALIBRATION_IMAGES = 4
MIN_HELD_OUT_IMAGES = 4
CALIBRATION_SEED, HELD_OUT_SEED = 0, 1


def feed_size(cfg: GeneratorConfig, static: tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) the quantisation images are fed at: the static size, else FEED_SIDE
    rounded up to the network's size multiple (and at least its minimum size)."""
    if static is not None:
        return static
    multiple = cfg.size_multiple
    side = multiple * math.ceil(max(FEED_SIDE, minimum_size(cfg)) / multiple)
    return side, side


def procedural_scenes(count: int, size: tuple[int, int], channels: int, seed: int) -> list[np.ndarray]:
    """``count`` synthetic scenes, each a (1, channels, H, W) float32 array in [-1, 1] (input =
    pixel / 127.5 - 1): the tests' palette scenes (img2img.data.synthetic) blended with
    blurred noise and a smooth gradient so that they are not flat, deterministic for ``seed``.
    The default calibration set when the user gives no images, and the benchmark's."""
    from PIL import Image, ImageFilter

    from img2img.data.synthetic import palette_scenes
    from img2img.files.imageio import to_8bit, to_model_input

    height, width = size
    side = max(height, width)
    rng = random.Random(seed)
    noise_rng = np.random.default_rng(seed)
    scenes = []
    for index in range(count):
        scene = palette_scenes(rng, side, max_shapes=5)["A" if index % 2 else "B"]
        noise = noise_rng.normal(128, 40, (side, side)).clip(0, 255).astype(np.uint8)
        noise_image = to_8bit(Image.fromarray(noise, "L"), 3).filter(ImageFilter.GaussianBlur(2))
        gradient = Image.linear_gradient("L").resize((side, side)).rotate(rng.choice((0, 90, 180, 270)))
        image = Image.blend(Image.blend(scene, noise_image, 0.25), to_8bit(gradient, 3), 0.2)
        scenes.append(_to_array(to_model_input(image.crop((0, 0, width, height)), channels).pixels))
    return scenes


def folder_images(folder: str | os.PathLike[str], size: tuple[int, int], channels: int, count: int) -> list[np.ndarray]:
    """The first ``count`` images of ``folder`` (sorted, sub-folders included: img2img.files.walk),
    read as translate reads them (img2img.files.imageio: upright, first frame, ``channels``), each
    centre-cropped to ``size`` = (height, width) at its own resolution, never resized: the int8
    model is calibrated and checked on pixels like those it will translate, at the size it will
    run at (an image scaled up from a thumbnail is smoother than any photo and flatters int8).
    Returns (1, channels, H, W) float32 arrays in [-1, 1]. UsageError when the folder cannot be
    listed or an image is smaller than ``size`` (naming it and the size); ImageError naming a
    file that cannot be read."""
    from img2img.errors import ImageError
    from img2img.files.imageio import naming, read_image, to_model_input
    from img2img.files.walk import list_images

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: --calibration takes a folder of images; this is not a folder")
    listing = list_images(folder)
    if listing.errors:
        raise UsageError(listing.errors[0])
    height, width = size
    arrays = []
    for found in listing.images[:count]:
        try:
            pixels = to_model_input(read_image(found.path), channels).pixels
        except ImageError as exc:  # NaN pixels or an unconvertible mode: say which file
            raise naming(str(found.path), exc) from None
        if pixels.shape[0] < height or pixels.shape[1] < width:
            raise UsageError(
                f"{found.path}: {pixels.shape[1]}x{pixels.shape[0]} is smaller than {width}x{height}, the "
                "size the int8 model is calibrated and checked at; --calibration takes images at least "
                "that large, like the ones you will translate (export --static HEIGHTxWIDTH sets the size)"
            )
        top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
        arrays.append(_to_array(pixels[top : top + height, left : left + width]))
    return arrays


def quantization_images(
    calibration: str | os.PathLike[str] | None,
    cfg: GeneratorConfig,
    static: tuple[int, int] | None,
    count: int = DEFAULT_CALIBRATION_COUNT,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(calibration images, held-out images) for ``quantize_checked``, all of ``feed_size``. With
    a ``calibration`` folder: its first 2 x ``count`` images (``folder_images``: at least that
    size, cropped, not resized), the even ones to calibrate on (at most ``count``), every other
    one held out for the PSNR check; UsageError when ``count`` is below MIN_CALIBRATION_IMAGES or
    the folder has fewer than MIN_CALIBRATION_IMAGES + MIN_HELD_OUT_IMAGES images, which could
    not stand for the inputs. Without: ``count`` procedural scenes, and HELD_OUT_COUNT more drawn
    with another seed."""
    if count < 1:
        raise UsageError(f"--calibration-count must be at least 1, not {count}")
    size, channels = feed_size(cfg, static), cfg.input_nc
    if calibration is None:
        return (
            procedural_scenes(count, size, channels, CALIBRATION_SEED),
            procedural_scenes(HELD_OUT_COUNT, size, channels, HELD_OUT_SEED),
        )
    if count < MIN_CALIBRATION_IMAGES:
        raise UsageError(
            f"--calibration-count {count}: calibrating on fewer than {MIN_CALIBRATION_IMAGES} images "
            "cannot stand for the inputs; give at least that many"
        )
    images = folder_images(calibration, size, channels, 2 * count)
    needed = MIN_CALIBRATION_IMAGES + MIN_HELD_OUT_IMAGES
    if len(images) < needed:
        raise UsageError(
            f"{calibration}: --calibration needs at least {needed} images ({MIN_CALIBRATION_IMAGES} to "
            f"calibrate on, {MIN_HELD_OUT_IMAGES} held out to check the int8 model), found {len(images)}"
        )
    return images[0::2], images[1::2]


def quantize_static_int8(
    fp32_path: str | os.PathLike[str], target: str | os.PathLike[str], calibration: list[np.ndarray]
) -> None:
    """Quantise the fp32 ONNX model at ``fp32_path`` into ``target``: ``quant_pre_process``, then
    ``quantize_static`` (QOperator, per-channel int8 weights, uint8 activations, MinMax
    calibration over ``calibration``, arrays of the model's input shape in [-1, 1])."""
    import_extra("onnxruntime")
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"input": item}

    with tempfile.TemporaryDirectory() as scratch, _quiet_quantizer():
        prepared = Path(scratch) / "prepared.onnx"
        q.quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        q.quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=q.QuantFormat.QOperator,
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
        )


def to_pixels(output: np.ndarray) -> np.ndarray:
    """Network output in [-1, 1] -> the 8-bit pixel values translate writes (as float64)."""
    return np.clip(np.round((output.astype(np.float64) + 1) * 127.5), 0, 255)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two arrays of 8-bit pixel values (peak 255); inf when equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def int8_psnr(
    fp32_path: str | os.PathLike[str], int8_path: str | os.PathLike[str], images: list[np.ndarray]
) -> list[float]:
    """PSNR (dB) of the int8 model's 8-bit output against the fp32 model's, per image (both in
    onnxruntime CPU sessions)."""
    (ort,) = import_extra("onnxruntime")
    options = session_options()
    sessions = [
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]) for path in (fp32_path, int8_path)
    ]
    values = []
    for x in images:
        fp32, int8 = (to_pixels(session.run(None, {"input": x})[0]) for session in sessions)
        values.append(psnr(int8, fp32) if fp32.shape == int8.shape else -math.inf)
    return values


def quantize_checked(
    fp32_path: str | os.PathLike[str],
    target: str | os.PathLike[str],
    props: dict[str, str],
    calibration: list[np.ndarray],
    held_out: list[np.ndarray],
    output: str | os.PathLike[str],
    report=lambda line: None,
    min_psnr: float = MIN_PSNR_DB,
) -> float:
    """Quantise ``fp32_path`` into ``target`` (``quantize_static_int8``), measure PSNR against
    fp32 on ``held_out`` (``report`` gets one line), and raise ExportError naming ``output`` when
    the lowest is below ``min_psnr``; otherwise give ``target`` img2img's metadata ``props`` plus
    ``img2img.quantization`` and ``img2img.quantization_psnr``, and return the lowest PSNR (dB)."""
    (onnx,) = import_extra("onnx")
    quantize_static_int8(fp32_path, target, calibration)
    values = int8_psnr(fp32_path, target, held_out)
    low, mean = min(values), float(np.mean([min(v, 99.0) for v in values]))
    measured = f"{len(values)} held-out images of {held_out[0].shape[3]}x{held_out[0].shape[2]}"
    report(f"int8: PSNR against fp32 on {measured}: min {low:.1f} dB, mean {mean:.1f} dB (needs {min_psnr:g} dB)")
    if not low >= min_psnr:  # `not >=` so that NaN fails too
        raise ExportError(
            f"{output}: int8 quantisation refused: {low:.1f} dB PSNR against fp32 on held-out images, "
            f"below the {min_psnr:g} dB bar; no file written",
            hint="export without --quantize for fp32, or calibrate on images like yours with --calibration DIR",
        )
    model = onnx.load(str(target))
    del model.metadata_props[:]
    props = {
        **props,
        QUANTIZATION_KEY: INT8_STATIC,
        QUANTIZATION_PSNR_KEY: f"min {low:.1f} dB, mean {mean:.1f} dB against fp32 on {measured}",
    }
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(target))
    return low


def _to_array(pixels: np.ndarray) -> np.ndarray:
    # H x W x C in [0, 1] -> 1 x C x H x W in [-1, 1], translate's input mapping.
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None] * 2 - 1, dtype=np.float32)


@contextlib.contextmanager
def _quiet_quantizer():
    # onnxruntime.quantization logs progress and warnings ("Please consider to run
    # pre-processing...") through logging and warnings; export reports its own lines.
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


__all__ = [
    "DEFAULT_CALIBRATION_COUNT",
    "INT8_STATIC",
    "MIN_CALIBRATION_IMAGES",
    "MIN_HELD_OUT_IMAGES",
    "MIN_PSNR_DB",
    "QUANTIZATION_KEY",
    "QUANTIZATION_PSNR_KEY",
    "QUANTIZE_CHOICES",
    "feed_size",
    "folder_images",
    "int8_psnr",
    "procedural_scenes",
    "psnr",
    "quantization_images",
    "quantize_checked",
    "quantize_static_int8",
    "to_pixels",
]
