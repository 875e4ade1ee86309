"""onnxruntime vs PyTorch per image on the CPU, and export time and file size per shipped model.

    python benchmarks/bench_onnx.py                    # both parts
    python benchmarks/bench_onnx.py --part speed --rounds 9
    python benchmarks/bench_onnx.py --part export

Speed: the default generators (resnet_9blocks ngf 64 with instance norm -- CycleGAN's; unet_256
ngf 64 with per-image batch norm -- pix2pix's, run as translate runs it) at 256² and 512², batch 1,
random-init weights (reference init, batch-norm statistics from a few training passes). Variants,
all through ``Translator.translate_tensor`` (the same padding and cropping) except the first:

- ``torch_ref``: the reference's plain fp32 forward (eval, no_grad, contiguous);
- ``torch_fp32``: translate ``--precision fp32`` (channels-last, group norm, inference mode);
- ``torch_bf16``: translate ``--precision bf16`` (emulated on CPUs without AVX512-BF16/AMX, so
  only at the ``--bf16-sizes``, default 256²);
- ``ort_fp32``: translate ``--model model.onnx`` (onnxruntime CPU EP, all graph optimisations).

onnxruntime's CPU execution provider offers no faster precision for these networks on x86 (it
has no fp16 convolution kernels there, and int8 quantisation changes the outputs), so fp32 is its
fastest. Both libraries use the same thread count (torch.get_num_threads()). The variants take
turns within each round and the median of the rounds is reported, so a machine shared with other
work skews all alike: read the ratios (to torch_fp32, translate's fp32 path).

Export: ``export_onnx`` of every ``weights/*.safetensors`` (dynamo exporter, default opset,
parity check included), wall time (export and check) and file size.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from img2img.config import GeneratorConfig
from img2img.inference import Translator
from img2img.networks import build_generator, init_weights
from img2img.onnx_export import export_onnx
from img2img.weights import WeightsMetadata, save_generator

REPO = Path(__file__).resolve().parent.parent
MODELS = {
    "resnet_9blocks": (GeneratorConfig(arch="resnet", n_blocks=9, ngf=64, norm="instance"), True),
    "unet_256": (GeneratorConfig(arch="unet", num_downs=8, ngf=64, norm="batch"), False),
}


def make_model(name: str, path: Path) -> torch.nn.Module:
    cfg, eval_mode = MODELS[name]
    torch.manual_seed(0)
    net = init_weights(build_generator(cfg))
    if cfg.norm == "batch":
        net.train()
        with torch.no_grad():
            for _ in range(2):
                net(torch.rand(2, cfg.input_nc, 256, 256) * 2 - 1)
    net.eval()
    task = "cyclegan" if cfg.arch == "resnet" else "pix2pix"
    save_generator(path, net.state_dict(), WeightsMetadata(generator=cfg, eval_mode=eval_mode, task=task))
    return net


def cpu_flags() -> str:
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni"]
    return " ".join(flag for flag in wanted if flag in flags) or "unknown"


def speed(rounds: int, sizes: list[int], bf16_sizes: list[int], tmp: Path) -> None:
    import onnxruntime

    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {torch.get_num_threads()} threads, "
          f"CPU {platform.processor() or platform.machine()} ({cpu_flags()})")
    print("| model | size | torch_ref | torch_fp32 | torch_bf16 | ort_fp32 | ort_fp32 / torch_fp32 | ort_fp32 / torch_ref | max abs diff ort-torch |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in MODELS:
        weights = tmp / f"{name}.safetensors"
        reference = make_model(name, weights)
        onnx_path = tmp / f"{name}.onnx"
        export_onnx(weights, onnx_path)
        variants = {
            "torch_fp32": Translator(weights, device="cpu", precision="fp32"),
            "torch_bf16": Translator(weights, device="cpu", precision="bf16"),
            "ort_fp32": Translator(onnx_path, device="cpu"),
        }
        if not MODELS[name][1]:
            from img2img.networks import use_per_image_batch_norm

            use_per_image_batch_norm(reference)  # what translate computes for this model
        for size in sizes:
            x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1

            def run_reference(x=x):
                with torch.no_grad():
                    return reference(x)

            calls = {"torch_ref": run_reference, **{k: (lambda t=t, x=x: t.translate_tensor(x)) for k, t in variants.items()}}
            if size not in bf16_sizes:
                del calls["torch_bf16"]
            diff = float((calls["ort_fp32"]() - calls["torch_fp32"]()).abs().max())
            for call in calls.values():  # warm-up (oneDNN and onnxruntime pick kernels per shape)
                call()
            times: dict[str, list[float]] = {key: [] for key in calls}
            for _ in range(rounds):
                order = list(calls)
                random.shuffle(order)
                for key in order:
                    start = time.perf_counter()
                    calls[key]()
                    times[key].append(time.perf_counter() - start)
            median = {key: statistics.median(values) * 1000 for key, values in times.items()}
            bf16 = f"{median['torch_bf16']:.0f} ms" if "torch_bf16" in median else "-"
            print(
                f"| {name} | {size}² | {median['torch_ref']:.0f} ms | {median['torch_fp32']:.0f} ms | "
                f"{bf16} | {median['ort_fp32']:.0f} ms | "
                f"{median['ort_fp32'] / median['torch_fp32']:.2f} | {median['ort_fp32'] / median['torch_ref']:.2f} | "
                f"{diff:.1e} |",
                flush=True,
            )


def exports(tmp: Path) -> None:
    # The first export in a process also pays for importing and initialising the exporter.
    warm = tmp / "warm.safetensors"
    cfg = GeneratorConfig(arch="resnet", n_blocks=1, ngf=4)
    save_generator(warm, init_weights(build_generator(cfg)).state_dict(), WeightsMetadata(generator=cfg))
    start = time.perf_counter()
    export_onnx(warm, tmp / "warm.onnx")
    print(f"first export in the process (tiny model, warm-up): {time.perf_counter() - start:.1f} s")
    print("| model | export + parity check | file size (ONNX) | file size (safetensors) | max abs diff |")
    print("|---|---:|---:|---:|---:|")
    for weights in sorted((REPO / "weights").glob("*.safetensors")):
        target = tmp / f"{weights.stem}.onnx"
        start = time.perf_counter()
        result = export_onnx(weights, target)
        seconds = time.perf_counter() - start
        worst = max(check.max_abs_diff for check in result.parity)
        print(
            f"| {weights.stem} | {seconds:.1f} s | {result.size_bytes / 1e6:.1f} MB | "
            f"{weights.stat().st_size / 1e6:.1f} MB | {worst:.1e} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["speed", "export", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    # Emulated bf16 is ~7x slower than fp32 on CPUs without native bf16: one size shows it.
    parser.add_argument("--bf16-sizes", type=int, nargs="*", default=[256])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if args.part in ("export", "all"):
            exports(tmp)
        if args.part in ("speed", "all"):
            speed(args.rounds, args.sizes, args.bf16_sizes, tmp)


if __name__ == "__main__":
    main()
