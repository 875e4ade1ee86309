"""Tiled translation against one pass: quality, peak memory, time per megapixel.

    python benchmarks/bench_tile.py                       # everything (long on a 2-core CPU)
    python benchmarks/bench_tile.py --part quality --sizes 1024
    python benchmarks/bench_tile.py --part memory --memory-sizes 1000,2000,4000,8000

Quality: photographs from examples/inputs, upscaled (bicubic) to SIZE x SIZE, translated in one
pass and in tiles (--tile, default half the image's side; default overlap) with each kind of
normalisation statistics:
thumbnail (default), exact, and per-tile (the naive baseline). PSNR of the tiled output against
the one-pass output over the whole image, over the border bands (the overlaps of
neighbouring tiles, where seams would show) and over the rest. Models: the shipped weights/*.safetensors and, when
--reference-dir holds them, reference checkpoints converted with `img2img convert`
(pytorch-CycleGAN-and-pix2pix architectures, reference initialisation).

Memory: each (mode, size) runs in its own subprocess, which translates a procedural SIZE x SIZE
photograph-like image with `Translator.translate_stream` and reports its peak RSS
(ru_maxrss) and time. Every run has an address-space limit (--one-pass-limit, --tiled-limit,
GB), so that where one pass needs more, it fails cleanly instead of swapping the machine;
"tiled" is --tile auto with a memory budget of --tiled-budget GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ["coffee.png", "flower.jpg"]


def psnr(a, b, mask=None) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if mask is not None:
        a, b = a[mask], b[mask]
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def border_bands(plan) -> np.ndarray:
    """True where neighbouring tiles overlap."""
    mask = np.zeros((plan.padded_height, plan.padded_width), dtype=bool)
    for previous, start in zip(plan.ys, plan.ys[1:]):
        mask[start : previous + plan.tile_height] = True
    for previous, start in zip(plan.xs, plan.xs[1:]):
        mask[:, start : previous + plan.tile_width] = True
    return mask[plan.top : plan.top + plan.height, plan.left : plan.left + plan.width]


def models(reference_dir: Path | None, workdir: Path) -> dict[str, Path]:
    found = {p.stem: p for p in sorted((ROOT / "weights").glob("*.safetensors"))}
    conversions = {
        "resnet_9blocks_ngf16": ["--arch", "resnet_9blocks", "--ngf", "16"],
        "unet_256_ngf8": ["--arch", "unet_256", "--ngf", "8"],
    }
    for name, options in conversions.items():
        checkpoint = reference_dir / name / "checkpoint.pth" if reference_dir else None
        if checkpoint is None or not checkpoint.is_file():
            continue
        out = workdir / f"ref_{name}.safetensors"
        subprocess.run(
            [sys.executable, "-m", "img2img", "convert", checkpoint, "-o", out, *options],
            check=True,
            capture_output=True,
        )
        found[f"reference {name} (converted)"] = out
    return found


def photo(name: str, size: int):
    from PIL import Image

    with Image.open(ROOT / "examples" / "inputs" / name) as image:
        return image.convert("RGB").resize((size, size), Image.BICUBIC)


def quality(args, workdir: Path) -> None:
    from img2img.translate.translator import Translator

    print(
        "| model | size | stats | PSNR whole | PSNR border bands | bands - whole | PSNR elsewhere | seconds | × one pass |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for name, path in models(args.reference_dir, workdir).items():
        if args.models and not any(wanted in name for wanted in args.models):
            continue
        for size in args.sizes:
            for image_name in PHOTOS[: args.photos]:
                image = photo(image_name, size)
                start = time.perf_counter()
                reference = Translator(path, device=args.device, tile="off", engine="torch").translate_image(image)
                one_pass = time.perf_counter() - start
                print(f"| {name} | {size}² | one pass | | | | | {one_pass:.1f} | 1 |", flush=True)
                for stats in args.stats:
                    translator = Translator(
                        path,
                        device=args.device,
                        tile=args.tile or size // 2,
                        tile_overlap=args.overlap,
                        tile_stats=stats,
                        engine="torch",
                    )
                    plan = translator.tile_plan(size, size)
                    start = time.perf_counter()
                    out = translator.translate_image(image)
                    seconds = time.perf_counter() - start
                    bands = border_bands(plan)
                    whole, in_bands = psnr(out, reference), psnr(out, reference, bands)
                    # The rest of the image: tile interiors and the corners no overlap reaches.
                    elsewhere = psnr(out, reference, ~bands) if not bands.all() else float("nan")
                    print(
                        f"| {name} | {size}² ({image_name}, {plan.tile_count} × {plan.tile_width}² tiles, overlap {plan.overlap}, "
                        f"bands {bands.mean():.0%} of it) | {stats} | {whole:.2f} | {in_bands:.2f} | "
                        f"{in_bands - whole:+.2f} | {elsewhere:.2f} | {seconds:.1f} | {seconds / one_pass:.1f} |",
                        flush=True,
                    )


# --- memory: one subprocess per measurement -----------------------------------------------------


def _child(model: str, size: int, mode: str, limit_gb: float, device: str, budget_gb: float) -> None:
    """Runs in the subprocess: translate one procedural image, print a JSON line."""
    if limit_gb > 0:
        limit = int(limit_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from PIL import Image

    from img2img.translate.translator import Translator

    budget = int(budget_gb * (1 << 30))
    translator = Translator(
        model, device=device, tile="off" if mode == "one pass" else "auto", memory_budget=budget, engine="torch"
    )
    small = photo(PHOTOS[0], 500)
    image = small.resize((size, size), Image.BICUBIC)  # a photograph-like SIZE x SIZE image
    del small
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    record = {"mode": mode, "size": size, "rss_before": before}
    try:
        [result] = translator.translate_stream([(0, translator.to_input(image))])
        record["seconds"] = time.perf_counter() - start
        record["error"] = None if result.error is None else str(result.error)
        record["tiling"] = None if result.tiling is None else result.tiling.as_dict()
    except MemoryError as exc:
        record["error"] = f"MemoryError {exc}"
    record["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(record), flush=True)


def memory(args) -> None:
    model = str(ROOT / "weights" / f"{args.memory_model}.safetensors")
    print(
        f"model {args.memory_model}; address space limited to {args.one_pass_limit} GB for one pass, "
        f"{args.tiled_limit} GB tiled; tiled: --tile auto with a {args.tiled_budget} GB budget"
    )
    print("| size | megapixels | mode | peak RSS | tiles | seconds | s / MP | result |")
    print("|---|---:|---|---:|---|---:|---:|---|")
    for size in args.memory_sizes:
        for mode in ("one pass", "tiled"):
            limit = args.one_pass_limit if mode == "one pass" else args.tiled_limit
            cmd = [
                sys.executable,
                __file__,
                "--child",
                model,
                str(size),
                mode,
                str(limit),
                args.device,
                str(args.tiled_budget),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if not lines:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"| {size}² | {size * size / 1e6:.1f} | {mode} | | | | | crashed: {tail[:80]} |", flush=True)
                continue
            r = json.loads(lines[-1])
            mp = size * size / 1e6
            tiles = r.get("tiling") and f"{r['tiling']['tiles']} × {r['tiling']['tile'][0]}²"
            ok = r["error"] is None
            seconds = f"{r['seconds']:.1f}" if ok else ""
            per_mp = f"{r['seconds'] / mp:.2f}" if ok else ""
            print(
                f"| {size}² | {mp:.1f} | {mode} | {r['peak_rss'] / 2**30:.2f} GB | {tiles or 'one pass'} | "
                f"{seconds} | {per_mp} | {'ok' if ok else r['error'][:60]} |",
                flush=True,
            )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), sys.argv[6], float(sys.argv[7]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["quality", "memory", "all"], default="all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[1024, 2048])
    parser.add_argument("--photos", type=int, default=1, help="how many of the example photos")
    parser.add_argument("--tile", type=int, default=None, help="tile side in pixels (default: half the image's)")
    parser.add_argument("--overlap", type=int, default=None, help="tile overlap in pixels (default: the network's)")
    parser.add_argument(
        "--models", type=lambda s: s.split(","), default=None, help="only models whose name contains one of these"
    )
    parser.add_argument("--stats", type=lambda s: s.split(","), default=["thumbnail", "exact", "tile"])
    parser.add_argument(
        "--reference-dir",
        type=Path,
        default=ROOT.parent / "shared" / "fixtures" / "reference",
        help="folder with reference checkpoints (NAME/checkpoint.pth) to convert",
    )
    parser.add_argument("--memory-model", default="photo2night")
    parser.add_argument(
        "--memory-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[1000, 2000, 4000, 8000]
    )
    parser.add_argument("--one-pass-limit", type=float, default=12.0, help="GB of address space for one pass")
    parser.add_argument("--tiled-limit", type=float, default=12.0, help="GB of address space for tiled runs")
    parser.add_argument("--tiled-budget", type=float, default=1.0, help="GB: the memory budget of --tile auto")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    from img2img.runtime.devices import machine_summary

    print(machine_summary())
    with tempfile.TemporaryDirectory() as workdir:
        if args.part in ("quality", "all"):
            quality(args, Path(workdir))
        if args.part in ("memory", "all"):
            memory(args)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
