"""Per-image generator time: the reference's plain forward vs the path `img2img translate` uses.

    python benchmarks/bench_translate.py            # CPU, and CUDA when present
    python benchmarks/bench_translate.py --rounds 9 --device cpu

Reference: model.eval(), torch.no_grad(), fp32, contiguous -- what pytorch-CycleGAN-and-pix2pix's
test.py does. translate: img2img.inference.Translator.translate_tensor with its defaults
(--precision auto, memory layout chosen by CPU class), and each speed option forced on and off,
so every default is compared with its variants on the machine at hand. The first line printed
names the CPU, its features (AVX2 / AVX-512 / AVX512-BF16 / AMX) and the torch build. Random-init networks (reference init, batch norm
statistics calibrated by a few train-mode passes), batch 1. Runs are interleaved and the median
is reported, so a machine shared with other work skews both columns alike: read the ratios.
PSNR is between the two paths' 8-bit outputs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from img2img.config import GeneratorConfig
from img2img.networks import build_generator, init_weights
from img2img.devices import cpu_has_native_bf16, machine_summary
from img2img.inference import Translator
from img2img.weights import WeightsMetadata, save_generator

LOAD_BEFORE = f"{os.getloadavg()[0]:.2f}"

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


def variants(path: Path, device: torch.device) -> dict[str, Translator]:
    """The translate paths to compare: the default (--precision auto, layout by CPU class) and
    each speed option forced on and off in float32; bf16 only where the CPU has it natively
    (emulated bf16 takes minutes per image)."""
    paths = {
        "translate (default)": Translator(path, device=device, precision="auto"),
        "fp32 NCHW": Translator(path, device=device, precision="fp32", channels_last=False),
        "fp32 channels-last": Translator(path, device=device, precision="fp32", channels_last=True),
    }
    if device.type == "cuda" or cpu_has_native_bf16():
        low = "fp16" if device.type == "cuda" else "bf16"
        paths[f"{low} NCHW"] = Translator(path, device=device, precision=low, channels_last=False)
        paths[f"{low} channels-last"] = Translator(path, device=device, precision=low, channels_last=True)
    return paths


def bench_case(name: str, size: int, cfg: GeneratorConfig, device: torch.device, rounds: int, warmup: int, tmp: Path):
    path = tmp / f"{name}_{size}.safetensors"
    reference = make_model(cfg, size, path).to(device)
    translators = variants(path, device)
    x = (torch.rand(1, cfg.input_nc, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)

    def run_reference():
        with torch.no_grad():
            return reference(x)

    paths = {"reference fp32": run_reference}
    paths.update({key: (lambda t=t: t.translate_tensor(x)) for key, t in translators.items()})
    for fn in paths.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {key: [] for key in paths}
    for _ in range(rounds):
        for key, fn in paths.items():  # interleaved, so load from elsewhere hits all alike
            times[key].append(timed(fn, device))
    median = {key: statistics.median(values) * 1000 for key, values in times.items()}
    best = {key: min(values) * 1000 for key, values in times.items()}
    expected = to_uint8(run_reference())
    default = translators["translate (default)"]
    rows = []
    for key in paths:
        detail = ""
        if key == "translate (default)":
            detail = f" ({default.precision}, {'channels-last' if default.channels_last else 'NCHW'})"
        rows.append({
            "model": f"{name} ngf{cfg.ngf} ({cfg.norm})",
            "size": f"{size}²",
            "device": str(device),
            "path": key + detail,
            "ms": median[key],
            "ratio": median[key] / median["reference fp32"],
            "best_ms": best[key],
            "best_ratio": best[key] / best["reference fp32"],
            "psnr": psnr(expected, to_uint8(paths[key]())) if key != "reference fp32" else float("inf"),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", action="append", help="cpu, cuda, ... (repeatable) [default: cpu, and cuda if present]")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads [default: torch's choice]")
    parser.add_argument("--cases", help="comma-separated subset, e.g. resnet_9blocks@256,unet_256@256")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    wanted = set(args.cases.split(",")) if args.cases else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            for name, size, cfg in CASES:
                if wanted is None or f"{name}@{size}" in wanted:
                    rows += bench_case(name, size, cfg, torch.device(device), args.rounds, args.warmup, Path(tmp))
    print(machine_summary())
    print(f"load average before: {LOAD_BEFORE}, after: {os.getloadavg()[0]:.2f}; median of {args.rounds} interleaved rounds after {args.warmup} warm-up")
    if not cpu_has_native_bf16():
        print("no native bf16 on this CPU: bf16 rows not measured here (emulated bf16 is minutes per image); "
              "the defaults for the native-bf16 class come from the README's figures measured on one")
    print()
    print("| model | size | device | path | ms/img median (best) | ratio to reference, median (best) | PSNR vs reference dB |")
    print("|---|---|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['size']} | {r['device']} | {r['path']} | {r['ms']:.0f} ({r['best_ms']:.0f}) | {r['ratio']:.2f} ({r['best_ratio']:.2f}) | {r['psnr']:.1f} |")


if __name__ == "__main__":
    main()
