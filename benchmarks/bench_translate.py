"""Per-image generator time: the reference's plain forward vs the path `img2img translate` uses.

    python benchmarks/bench_translate.py            # CPU, and CUDA when present
    python benchmarks/bench_translate.py --rounds 9 --device cpu

Reference: model.eval(), torch.no_grad(), fp32, contiguous -- what pytorch-CycleGAN-and-pix2pix's
test.py does. translate: img2img.inference.Translator.translate_tensor with --precision auto
(and, for comparison, --precision fp32). Random-init networks (reference init, batch norm
statistics calibrated by a few train-mode passes), batch 1. Runs are interleaved and the median
is reported, so a machine shared with other work skews both columns alike: read the ratios.
PSNR is between the two paths' 8-bit outputs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from img2img.config import GeneratorConfig
from img2img.networks import build_generator, init_weights
from img2img.inference import Translator
from img2img.weights import WeightsMetadata, save_generator

CASES = [
    ("resnet_9blocks", 256, GeneratorConfig(arch="resnet", n_blocks=9, ngf=64, norm="instance")),
    ("resnet_9blocks", 512, GeneratorConfig(arch="resnet", n_blocks=9, ngf=64, norm="instance")),
    ("unet_256", 256, GeneratorConfig(arch="unet", num_downs=8, ngf=64, norm="batch")),
]


def make_model(cfg: GeneratorConfig, size: int, path: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    net = init_weights(build_generator(cfg))
    if cfg.norm == "batch":  # realistic running statistics instead of (0, 1)
        net.train()
        with torch.no_grad():
            for _ in range(3):
                net(torch.rand(2, cfg.input_nc, size, size) * 2 - 1)
    net.eval()
    save_generator(path, net.state_dict(), WeightsMetadata(generator=cfg, eval_mode=True))
    return net


def to_uint8(y: torch.Tensor) -> np.ndarray:
    return ((y.float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def bench_case(name: str, size: int, cfg: GeneratorConfig, device: torch.device, rounds: int, warmup: int, tmp: Path):
    path = tmp / f"{name}_{size}.safetensors"
    reference = make_model(cfg, size, path).to(device)
    fast = Translator(path, device=device, precision="auto")
    full = Translator(path, device=device, precision="fp32")
    x = (torch.rand(1, cfg.input_nc, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)

    def run_reference():
        with torch.no_grad():
            return reference(x)

    paths = {"reference": run_reference, "translate": lambda: fast.translate_tensor(x), "translate_fp32": lambda: full.translate_tensor(x)}
    for fn in paths.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {key: [] for key in paths}
    for _ in range(rounds):
        for key, fn in paths.items():  # interleaved, so load from elsewhere hits all alike
            times[key].append(timed(fn, device))
    median = {key: statistics.median(values) * 1000 for key, values in times.items()}
    return {
        "model": f"{name} ngf{cfg.ngf} ({cfg.norm})",
        "size": f"{size}²",
        "device": str(device),
        "precision": fast.precision,
        "reference_ms": median["reference"],
        "translate_ms": median["translate"],
        "ratio": median["translate"] / median["reference"],
        "fp32_ms": median["translate_fp32"],
        "fp32_ratio": median["translate_fp32"] / median["reference"],
        "psnr": psnr(to_uint8(run_reference()), to_uint8(fast.translate_tensor(x))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", action="append", help="cpu, cuda, ... (repeatable) [default: cpu, and cuda if present]")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads [default: torch's choice]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            for name, size, cfg in CASES:
                rows.append(bench_case(name, size, cfg, torch.device(device), args.rounds, args.warmup, Path(tmp)))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, median of {args.rounds} after {args.warmup} warm-up\n"
    )
    print("| model | size | device | reference fp32 ms | translate ms (precision) | ratio | translate --precision fp32 ms | ratio | PSNR dB |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['size']} | {r['device']} | {r['reference_ms']:.0f} | "
            f"{r['translate_ms']:.0f} ({r['precision']}) | {r['ratio']:.2f} | {r['fp32_ms']:.0f} | "
            f"{r['fp32_ratio']:.2f} | {r['psnr']:.1f} |"
        )


if __name__ == "__main__":
    main()
