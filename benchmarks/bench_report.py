"""What writing report.html costs at an epoch's end, against the epoch it follows.

    python benchmarks/bench_report.py                   # 200 epochs, 100 log rows each, 200 grids
    python benchmarks/bench_report.py --epochs 50 --rows 20

A synthetic run folder in the trainer's layout (config.json, metrics.csv with pix2pix's
columns, one 3-row sample grid per epoch of 256x256 images, weights and checkpoints) is reported
on the way the trainer does at its last epoch (the most expensive one: every row and every
grid). Reported: seconds per write (median of --rounds, each in a fresh process so that the
matplotlib import is paid as the trainer pays it once) and the page's size, beside the length
of one epoch of the default pix2pix on facades (400 iterations at the README's measured
seconds per iteration), as a fraction.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def make_run(root: Path, epochs: int, rows: int, grid: int) -> None:
    from PIL import Image

    rng = random.Random(0)
    (root / "samples").mkdir(parents=True)
    (root / "weights").mkdir()
    (root / "checkpoints").mkdir()
    config = {
        "task": "pix2pix",
        "data": "datasets/facades",
        "netg": "unet_256",
        "ngf": 64,
        "netd": "basic",
        "ndf": 64,
        "batch_size": 1,
        "n_epochs": epochs // 2,
        "n_epochs_decay": epochs - epochs // 2,
    }
    (root / "config.json").write_text(json.dumps(config, indent=2))
    lines = ["scope,epoch,iteration,elapsed_s,lr,G_GAN,G_L1,D_real,D_fake,val_L1,val_PSNR"]
    iteration, elapsed = 0, 0.0
    for epoch in range(1, epochs + 1):
        for _ in range(rows):
            iteration += 4
            elapsed += 1.3
            lines.append(
                f"iter,{epoch},{iteration},{elapsed:.2f},0.0002,{rng.random():.5f},{10 + rng.random():.5f},"
                f"{rng.random():.5f},{rng.random():.5f},,"
            )
        lines.append(
            f"epoch,{epoch},{iteration},{elapsed:.2f},0.0002,0.9,10.1,0.5,0.5,{rng.random():.4f},{20 + rng.random():.3f}"
        )
        noise = Image.effect_noise((grid * 3, grid * 3), 40).convert("RGB")  # incompressible-ish, like photos
        noise.save(root / "samples" / f"epoch_{epoch:03d}.png")
    (root / "metrics.csv").write_text("\n".join(lines) + "\n")
    for name in ("weights/pix2pix_AtoB.safetensors", "checkpoints/latest.safetensors"):
        (root / name).write_bytes(b"\0" * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--rows", type=int, default=100, help="log rows per epoch")
    parser.add_argument("--grid", type=int, default=256, help="sample image size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--seconds-per-iter",
        type=float,
        default=0.33,
        help="default pix2pix on the CPU (README); 400 iterations an epoch on facades",
    )
    args = parser.parse_args()
    from img2img.runtime.devices import machine_summary

    print(machine_summary())
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        make_run(run, args.epochs, args.rows, args.grid)
        times = []
        for _ in range(args.rounds):
            code = (
                "import time; t = time.perf_counter(); from img2img.report.page import write_report; "
                f"write_report({str(run)!r}, status='in progress'); print(time.perf_counter() - t)"
            )
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            times.append(float(done.stdout.strip()))
        size = (run / "report.html").stat().st_size
    epoch = 400 * args.seconds_per_iter
    median = statistics.median(times)
    print(f"{args.epochs} epochs x {args.rows} log rows, {args.epochs} grids of {args.grid * 3}² px")
    print("| write report.html (s), median (best) | page size | one facades epoch (s) | fraction of an epoch |")
    print("|---:|---:|---:|---:|")
    print(f"| {median:.2f} ({min(times):.2f}) | {size / 2**20:.1f} MB | {epoch:.0f} | {median / epoch:.1%} |")


if __name__ == "__main__":
    main()
