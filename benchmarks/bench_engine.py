"""Whole `img2img translate` runs with each engine: what the onnxruntime export costs, what it
saves per image, and after how many images it pays for itself (img2img.translate.engines).

    python benchmarks/bench_engine.py                         # resnet_9blocks and unet_256 at 256²
    python benchmarks/bench_engine.py --images 8 --rounds 3 --cases resnet_9blocks@256

Each round runs, as separate processes taking turns (a machine shared with other work then
slows every variant alike): `translate DIR --out-dir ...` over N procedural images with
``--engine torch``; ``--engine onnxruntime`` with an empty cache (the first run for these
weights: the export and its parity check included); ``--engine onnxruntime`` with the export
cached; and the same three over one image, which is start-up alone. Wall time of each whole
command (interpreter start, imports, loading, every image decoded, translated and written) is
reported as the median over rounds, and from it the per-image time of each engine, the one-off
export cost, and the break-even run size = export cost / per-image saving. Random-init weights
(reference init), written once to a temporary folder; the cache is a temporary folder too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from img2img.models.config import GeneratorConfig
from img2img.models.networks import build_generator, init_weights
from img2img.models.weights import WeightsMetadata, save_generator
from img2img.runtime.devices import machine_summary

# name -> (generator, image side, eval_mode). The U-Net runs as a pix2pix model trained at batch
# size 1 does (each image normalised by its own statistics: eval_mode False); "-eval" runs its
# batch norm with running statistics.
CASES = {
    "resnet_9blocks@256": (GeneratorConfig(arch="resnet", n_blocks=9, ngf=64, norm="instance"), 256, True),
    "unet_256@256": (GeneratorConfig(arch="unet", num_downs=8, ngf=64, norm="batch"), 256, False),
    "unet_256-eval@256": (GeneratorConfig(arch="unet", num_downs=8, ngf=64, norm="batch"), 256, True),
    "resnet_9blocks@512": (GeneratorConfig(arch="resnet", n_blocks=9, ngf=64, norm="instance"), 512, True),
}


def write_images(folder: Path, count: int, size: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        base = np.stack([np.sin(6 * xx + i), np.cos(5 * yy - i), xx * yy], -1) * 0.5 + 0.5
        noisy = np.clip(base * 255 + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i:04d}.png")


def run(weights: Path, inputs: Path, out: Path, engine: str, cache: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "IMG2IMG_CACHE": str(cache)}
    env.pop("IMG2IMG_ENGINE", None)
    command = [
        sys.executable,
        "-m",
        "img2img",
        "translate",
        str(inputs),
        "-m",
        str(weights),
        "--out-dir",
        str(out),
        "--device",
        "cpu",
        "--engine",
        engine,
        "--quiet",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return seconds


def bench_case(
    name: str, cfg: GeneratorConfig, size: int, eval_mode: bool, images: int, rounds: int, tmp: Path
) -> None:
    weights = tmp / f"{name}.safetensors"
    torch.manual_seed(0)
    net = init_weights(build_generator(cfg))
    save_generator(weights, net.state_dict(), WeightsMetadata(generator=cfg, eval_mode=eval_mode))
    many, one = tmp / f"{name}-many", tmp / f"{name}-one"
    write_images(many, images, size)
    write_images(one, 1, size)
    warm = tmp / "cache-warm"
    variants = {
        ("torch", "many"): lambda: run(weights, many, tmp / "out", "torch", tmp / "cache-unused"),
        ("ort cold", "many"): lambda: run(weights, many, tmp / "out", "onnxruntime", fresh(tmp / "cache-cold")),
        ("ort warm", "many"): lambda: run(weights, many, tmp / "out", "onnxruntime", warm),
        ("torch", "one"): lambda: run(weights, one, tmp / "out", "torch", tmp / "cache-unused"),
        ("ort cold", "one"): lambda: run(weights, one, tmp / "out", "onnxruntime", fresh(tmp / "cache-cold")),
        ("ort warm", "one"): lambda: run(weights, one, tmp / "out", "onnxruntime", warm),
    }
    run(weights, one, tmp / "out", "onnxruntime", warm)  # fills the warm cache (and the OS's file cache)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in variants}
    for index in range(rounds):
        for key, fn in variants.items():
            times[key].append(fn())
        print(f"  {name}: round {index + 1}/{rounds} done", file=sys.stderr, flush=True)
    median = {key: statistics.median(values) for key, values in times.items()}
    per_image = {
        engine: (median[(engine, "many")] - median[(engine, "one")]) / (images - 1) for engine in ("torch", "ort warm")
    }
    export = median[("ort cold", "one")] - median[("ort warm", "one")]
    saving = per_image["torch"] - per_image["ort warm"]
    norm = (
        ""
        if cfg.norm != "batch"
        else (", batch norm with running statistics" if eval_mode else ", batch norm per image (pix2pix at batch 1)")
    )
    print(f"\n{name}{norm}, {images} images of {size}x{size} (and 1), median of {rounds} rounds:")
    print(f"| engine | 1 image, whole command | {images} images, whole command | per image |")
    print("|---|---:|---:|---:|")
    for engine, label in (
        ("torch", "--engine torch"),
        ("ort cold", "--engine onnxruntime, first run (export)"),
        ("ort warm", "--engine onnxruntime, export cached"),
    ):
        each = per_image.get(engine, per_image["ort warm"])
        print(
            f"| {label} | {median[(engine, 'one')]:.2f} s | {median[(engine, 'many')]:.2f} s | {each * 1000:.0f} ms |"
        )
    print(
        f"export and parity check (first run minus cached run, 1 image): {export:.1f} s; "
        f"onnxruntime saves {saving * 1000:.0f} ms per image ({per_image['ort warm'] / per_image['torch']:.2f}x torch's time)"
    )
    if saving > 0:
        print(
            f"break-even: the export pays for itself from {export / saving:.0f} images on (one run with an empty cache)"
        )
    else:
        print("break-even: never (onnxruntime is not faster per image here)")


def fresh(cache: Path) -> Path:
    shutil.rmtree(cache, ignore_errors=True)
    return cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cases", default="resnet_9blocks@256,unet_256@256", help=f"comma-separated, from {', '.join(CASES)}"
    )
    args = parser.parse_args()
    print(machine_summary())
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            cfg, size, eval_mode = CASES[name]
            bench_case(name, cfg, size, eval_mode, args.images, args.rounds, Path(tmp))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
