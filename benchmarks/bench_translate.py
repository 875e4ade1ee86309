"""Per-image generator time: the reference's plain forward vs the path `img2img translate` uses.

    python benchmarks/bench_translate.py            # CPU, and CUDA when present
    python benchmarks/bench_translate.py --rounds 9 --device cpu
    python benchmarks/bench_translate.py --part determinism   # thread-count independent layers

Reference: model.eval(), torch.no_grad(), fp32, contiguous -- what pytorch-CycleGAN-and-pix2pix's
test.py does. translate: img2img.translate.translator.Translator.translate_tensor with its defaults
(--precision auto, memory layout chosen by CPU class), and each speed option forced on and off,
so every default is compared with its variants on the machine at hand. The first line printed
names the CPU, its features (AVX2 / AVX-512 / AVX512-BF16 / AMX) and the torch build. Random-init networks (reference init, batch norm
statistics calibrated by a few train-mode passes), batch 1. Runs are interleaved and the median
is reported, so a machine shared with other work skews both columns alike: read the ratios.
PSNR is between the two paths' 8-bit outputs.

    python benchmarks/bench_translate.py --part floor --cases resnet_9blocks@256

Floor: this CPU's fp32 3x3-convolution throughput (a large convolution, 256 -> 256 channels at
64x64, the size of a resnet_9blocks residual convolution at 256², batch 1; NCHW and
channels-last, the faster counts), the model's FLOPs (torch.utils.flop_counter, 2 per
multiply-add), hence the floor = FLOPs / peak, against translate's measured time, and where
translate's time goes: torch.profiler's self CPU time by operator, grouped (convolution,
transposed convolution, normalisation, padding, activations, layout copies, other), plus the
image path around the network (decoding a PNG into the model input, encoding the output).
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

from img2img.models.config import GeneratorConfig
from img2img.models.networks import build_generator, init_weights
from img2img.models.weights import WeightsMetadata, save_generator
from img2img.runtime.devices import cpu_has_native_bf16, machine_summary
from img2img.translate.translator import Translator

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
    """The translate paths to compare: the default (--precision auto, --engine auto: layout,
    precision and engine by CPU class) and each speed option forced on and off in float32 in
    PyTorch, plus onnxruntime's fp32 when the onnx extra is installed and the CPU is fp32; bf16
    only where the CPU has it natively (emulated bf16 takes minutes per image)."""
    from img2img.translate.engines import has_onnx_extra

    paths = {
        "translate (default)": Translator(path, device=device, precision="auto", engine="auto"),
        "fp32 NCHW (torch)": Translator(path, device=device, precision="fp32", channels_last=False, engine="torch"),
        "fp32 channels-last (torch)": Translator(
            path, device=device, precision="fp32", channels_last=True, engine="torch"
        ),
    }
    if device.type == "cpu" and has_onnx_extra():
        paths["fp32 onnxruntime"] = Translator(path, device=device, precision="fp32", engine="onnxruntime")
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
            layout = "channels-last" if default.channels_last else "NCHW"
            detail = f" ({default.precision}, {default.engine.name}{'' if default.engine.name != 'torch' else ', ' + layout})"
        rows.append(
            {
                "model": f"{name} ngf{cfg.ngf} ({cfg.norm})",
                "size": f"{size}²",
                "device": str(device),
                "path": key + detail,
                "ms": median[key],
                "ratio": median[key] / median["reference fp32"],
                "best_ms": best[key],
                "best_ratio": best[key] / best["reference fp32"],
                "psnr": psnr(expected, to_uint8(paths[key]())) if key != "reference fp32" else float("inf"),
            }
        )
    return rows


# --- --part determinism: what thread-count independence costs (img2img.models.determinism) ---------


class _GroupNorm(torch.nn.Module):
    """The layer translate used before: torch's group norm, one group per channel (its
    channels-last kernel splits the sums over the threads)."""

    def __init__(self, norm):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x):
        return torch.nn.functional.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)


def _stats_two_pass(x):
    mean = x.mean((2, 3), keepdim=True)
    return mean, (x - mean).square_().mean((2, 3), keepdim=True)


def _stats_sums(x):  # one pass each for sum and sum of squares, combined in float64
    n = x.shape[2] * x.shape[3]
    mean = x.sum((2, 3), keepdim=True).double() / n
    square = torch.linalg.vector_norm(x, 2, (2, 3), keepdim=True).double().square() / n
    return mean.float(), (square - mean * mean).clamp_(min=0).float()


def _stats_float64(x):
    var, mean = torch.var_mean(x.double(), (2, 3), correction=0, keepdim=True)
    return mean.float(), var.float()


class _StatsNorm(torch.nn.Module):
    def __init__(self, norm, stats):
        super().__init__()
        self.norm, self.stats = norm, stats

    def forward(self, x):
        from img2img.models.determinism import normalise

        mean, var = self.stats(x)
        return normalise(x, mean, var, self.norm.eps, self.norm.weight, self.norm.bias)


def _swap(net, norm=None, deconv=None):
    """Replace translate's layers: ``norm(layer)`` for each InstanceNormInference, the plain
    oneDNN nn.ConvTranspose2d for each ConvTranspose2dInference when ``deconv == "onednn"``."""
    from img2img.models.determinism import ConvTranspose2dInference, InstanceNormInference

    for name, child in net.named_children():
        if isinstance(child, InstanceNormInference) and norm is not None:
            setattr(net, name, norm(child))
        elif isinstance(child, ConvTranspose2dInference) and deconv == "onednn":
            w = child.weight
            conv = torch.nn.ConvTranspose2d(
                w.shape[0],
                w.shape[1],
                child.kernel_size,
                child.stride,
                child.padding,
                child.output_padding,
                bias=child.bias is not None,
                dilation=child.dilation,
            )
            conv.weight, conv.bias = child.weight, child.bias
            setattr(net, name, conv.to(memory_format=torch.channels_last))
        else:
            _swap(child, norm, deconv)
    return net


DETERMINISM_VARIANTS = {
    # name: (norm replacement or None for translate's own, deconv "onednn" or None for translate's own)
    "before: group norm, oneDNN deconv": (_GroupNorm, "onednn"),
    "var_mean stats, oneDNN deconv": (None, "onednn"),
    "two-pass stats, oneDNN deconv": (lambda n: _StatsNorm(n, _stats_two_pass), "onednn"),
    "sum + sum of squares, oneDNN deconv": (lambda n: _StatsNorm(n, _stats_sums), "onednn"),
    "float64 var_mean, oneDNN deconv": (lambda n: _StatsNorm(n, _stats_float64), "onednn"),
    "group norm, torch deconv": (_GroupNorm, None),
    "translate now: var_mean stats, torch deconv": (None, None),
}

DETERMINISM_CASES = [
    ("resnet_9blocks", 256, GeneratorConfig(arch="resnet", n_blocks=9, ngf=64, norm="instance"), True),
    ("resnet_9blocks", 512, GeneratorConfig(arch="resnet", n_blocks=9, ngf=64, norm="instance"), True),
    ("unet_256 per-image BN", 256, GeneratorConfig(arch="unet", num_downs=8, ngf=64, norm="batch"), False),
    ("unet_256 per-image BN", 512, GeneratorConfig(arch="unet", num_downs=8, ngf=64, norm="batch"), False),
]


def bench_determinism(args, tmp: Path) -> None:
    """Each variant of the norm statistics and the transposed convolution, timed in translate's
    fp32 channels-last path, interleaved; ratios to the path before (group norm, oneDNN)."""
    wanted = set(args.cases.split(",")) if args.cases else None
    wanted_variants = args.variants.split(",") if args.variants else None
    print(machine_summary())
    print(
        f"threads {torch.get_num_threads()}; load average before: {LOAD_BEFORE}; median (best) of {args.rounds} "
        f"interleaved rounds after {args.warmup} warm-up; ratios to the first row; 'same at 1-4 threads' "
        f"compares the 8-bit outputs at {args.identity_threads or 'no'} thread counts"
    )
    print()
    print("| model | size | variant | ms/img median (best) | ratio median (best) | same at 1-4 threads |")
    print("|---|---|---|---:|---:|---|")
    for name, size, cfg, eval_mode in DETERMINISM_CASES:
        if wanted is not None and f"{name.split()[0]}@{size}" not in wanted:
            continue
        path = tmp / f"det_{name.split()[0]}_{size}.safetensors"
        make_model(cfg, min(size, 256), path)
        if not eval_mode:
            from img2img.models.weights import load_generator

            loaded = load_generator(path, "cpu")
            save_generator(path, loaded.net.state_dict(), WeightsMetadata(generator=cfg, eval_mode=False))
        variants = {}
        for key, (norm, deconv) in DETERMINISM_VARIANTS.items():
            if wanted_variants and not any(w in key for w in wanted_variants):
                continue
            translator = Translator(
                path, device="cpu", precision="fp32", channels_last=True, tile="off", engine="torch"
            )
            _swap(translator.net, norm, deconv)
            variants[key] = translator
        x = torch.rand(1, cfg.input_nc, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
        same = {}
        threads = torch.get_num_threads()
        for key, translator in variants.items():
            outputs = []
            for t in args.identity_threads:
                torch.set_num_threads(t)
                outputs.append(to_uint8(translator.translate_tensor(x)))
            same[key] = all(np.array_equal(outputs[0], o) for o in outputs[1:]) if outputs else None
        torch.set_num_threads(threads)
        for translator in variants.values():
            for _ in range(args.warmup):
                translator.translate_tensor(x)
        times: dict[str, list[float]] = {key: [] for key in variants}
        for _ in range(args.rounds):
            for key, translator in variants.items():
                times[key].append(timed(lambda: translator.translate_tensor(x), torch.device("cpu")))
        first = next(iter(variants))
        for key in variants:
            median, best = statistics.median(times[key]), min(times[key])
            ratio, best_ratio = median / statistics.median(times[first]), best / min(times[first])
            print(
                f"| {name} ngf{cfg.ngf} | {size}² | {key} | {median * 1000:.0f} ({best * 1000:.0f}) | "
                f"{ratio:.3f} ({best_ratio:.3f}) | {'-' if same[key] is None else 'yes' if same[key] else 'no'} |",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


# --- floor and profile -------------------------------------------------------------------------

# torch.profiler operator name -> group; the first matching substring wins (checked in order).
OP_GROUPS = [
    ("convolution_backward", "other"),
    # oneDNN runs transposed convolutions inside aten::_convolution / mkldnn_convolution too, so
    # on the CPU they are counted with the convolutions unless a slow_conv_transpose kernel ran.
    ("conv_transpose", "transposed convolution (own kernels)"),
    ("slow_conv_transpose", "transposed convolution (own kernels)"),
    ("conv", "convolution (oneDNN, transposed included)"),
    ("instance_norm", "normalisation"),
    ("group_norm", "normalisation"),
    ("batch_norm", "normalisation"),
    ("native_layer_norm", "normalisation"),
    # the thread-count independent norms (img2img.models.determinism): statistics, then one multiply-add
    ("var_mean", "normalisation"),
    ("addcmul", "normalisation"),
    ("reflection_pad", "padding"),
    ("pad", "padding"),
    ("relu", "activations (ReLU, LeakyReLU, tanh)"),
    ("clamp_min", "activations (ReLU, LeakyReLU, tanh)"),  # in-place ReLU runs as clamp_min_
    ("tanh", "activations (ReLU, LeakyReLU, tanh)"),
    ("leaky", "activations (ReLU, LeakyReLU, tanh)"),
    ("copy_", "layout copies (copy_, contiguous, clone)"),
    ("contiguous", "layout copies (copy_, contiguous, clone)"),
    ("clone", "layout copies (copy_, contiguous, clone)"),
    ("add", "residual adds and concatenation"),
    ("cat", "residual adds and concatenation"),
]


def op_group(name: str) -> str:
    lowered = name.lower()
    for needle, group in OP_GROUPS:
        if needle in lowered:
            return group
    return "other"


def conv_peak(rounds: int) -> dict[str, float]:
    """GFLOP/s of an fp32 3x3 convolution 256 -> 256 channels on 64x64 (batch 1, padding 1),
    median of ``rounds`` calls after warm-up, NCHW and channels-last."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval()
    flops = 2 * 256 * 256 * 9 * 64 * 64
    results = {}
    for layout, fmt in (("NCHW", torch.contiguous_format), ("channels-last", torch.channels_last)):
        net = conv.to(memory_format=fmt)
        x = torch.randn(1, 256, 64, 64).contiguous(memory_format=fmt)
        with torch.inference_mode():
            for _ in range(3):
                net(x)
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                net(x)
                times.append(time.perf_counter() - start)
        results[layout] = flops / statistics.median(times) / 1e9
        results[layout + " best"] = flops / min(times) / 1e9
    return results


def model_flops(net: torch.nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(x)
    return counter.get_total_flops()


def image_path_ms(size: int, rounds: int, tmp: Path) -> tuple[float, float]:
    """Median ms to decode a size x size PNG photo-like image into the model input
    (read_image + to_model_input) and to encode a model output into a PNG (from_model_output +
    encode_image): the image path around the network in `img2img translate`."""
    from PIL import Image

    from img2img.files import imageio

    photo = sorted((Path(__file__).resolve().parent.parent / "examples" / "inputs").glob("*.png"))[0]
    path = tmp / "input.png"
    Image.open(photo).convert("RGB").resize((size, size), Image.BICUBIC).save(path)
    output = torch.rand(1, 3, size, size) * 2 - 1
    decode, encode = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        item = imageio.to_model_input(imageio.read_image(path), 3)
        torch.from_numpy(item.pixels).permute(2, 0, 1)[None] * 2 - 1
        decode.append(time.perf_counter() - start)
        start = time.perf_counter()
        pixels = to_uint8(output[0].permute(1, 2, 0))
        imageio.encode_image(imageio.from_model_output(pixels, item.alpha, item.icc_profile), "PNG")
        encode.append(time.perf_counter() - start)
    return statistics.median(decode) * 1000, statistics.median(encode) * 1000


def floor_case(name: str, size: int, cfg: GeneratorConfig, rounds: int, warmup: int, tmp: Path, peak: float) -> None:
    from torch.profiler import ProfilerActivity, profile

    path = tmp / f"{name}_{size}.safetensors"
    reference = make_model(cfg, size, path)
    # PyTorch's path is profiled (its operators are what the table groups); onnxruntime's fp32,
    # the default on CPUs without native bf16 when the onnx extra is installed, is timed beside it.
    translators = {"PyTorch": Translator(path, device="cpu", precision="auto", engine="torch")}
    from img2img.translate.engines import has_onnx_extra

    if has_onnx_extra() and not cpu_has_native_bf16():
        translators["onnxruntime"] = Translator(path, device="cpu", precision="fp32", engine="onnxruntime")
    translator = translators["PyTorch"]
    default = Translator(path, device="cpu").engine.name
    x = torch.rand(1, cfg.input_nc, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    flops = model_flops(reference, x)
    for each in translators.values():
        for _ in range(warmup):
            each.translate_tensor(x)
    times: dict[str, list[float]] = {key: [] for key in translators}
    for _ in range(rounds):
        for key, each in translators.items():  # interleaved
            start = time.perf_counter()
            each.translate_tensor(x)
            times[key].append(time.perf_counter() - start)
    floor_ms = flops / peak / 1e6
    print(
        f"\n{name} ngf {cfg.ngf} ({cfg.norm}), {size}², {flops / 1e9:.1f} GFLOP per image; floor at "
        f"{peak:.0f} GFLOP/s = {floor_ms:.0f} ms; translate's default engine here: {default}"
    )
    for key, values in times.items():
        measured = statistics.median(values) * 1000
        layout = f", {'channels-last' if translator.channels_last else 'NCHW'}" if key == "PyTorch" else ""
        print(
            f"  {key} ({translators[key].precision}{layout}): {measured:.0f} ms median of {rounds} "
            f"(best {min(values) * 1000:.0f}) = {floor_ms / measured:.0%} of the floor's speed; "
            f"{flops / (measured / 1000) / 1e9:.0f} GFLOP/s achieved"
        )
    print("  profile below: PyTorch's path")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(rounds):
            translator.translate_tensor(x)
    groups: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith("aten::") or event.key.startswith("mkldnn"):
            groups[op_group(event.key)] = groups.get(op_group(event.key), 0.0) + event.self_cpu_time_total
    total = sum(groups.values())
    decode_ms, encode_ms = image_path_ms(size, rounds, tmp)
    network_ms = total / rounds / 1000
    whole = network_ms + decode_ms + encode_ms
    print()
    print("| where the time goes | ms per image | share of network + image path |")
    print("|---|---:|---:|")
    for group, micros in sorted(groups.items(), key=lambda item: -item[1]):
        ms = micros / rounds / 1000
        print(f"| {group} | {ms:.0f} | {ms / whole:.0%} |")
    print(f"| image path: decode PNG -> model input | {decode_ms:.1f} | {decode_ms / whole:.1%} |")
    print(f"| image path: model output -> PNG bytes | {encode_ms:.1f} | {encode_ms / whole:.1%} |")
    top = sorted(prof.key_averages(), key=lambda event: -event.self_cpu_time_total)[:12]
    print(
        "\ntop operators (self CPU time per image):",
        ", ".join(f"{event.key} {event.self_cpu_time_total / rounds / 1000:.0f} ms" for event in top),
    )


def floor(args: argparse.Namespace) -> None:
    print(machine_summary())
    print(f"load average before: {LOAD_BEFORE} (the cores are shared when above 0)")
    peaks = conv_peak(max(args.rounds, 5))
    print(
        "fp32 3x3 convolution 256->256 channels at 64x64 (4.8 GFLOP): "
        + ", ".join(f"{layout} {value:.0f} GFLOP/s" for layout, value in peaks.items())
    )
    peak = max(value for key, value in peaks.items() if not key.endswith("best"))
    wanted = set(args.cases.split(",")) if args.cases else {"resnet_9blocks@256"}
    with tempfile.TemporaryDirectory() as tmp:
        for name, size, cfg in CASES:
            if f"{name}@{size}" in wanted:
                floor_case(name, size, cfg, args.rounds, args.warmup, Path(tmp), peak)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


def main() -> None:
    # onnxruntime's exports of the benchmark's random weights go to a cache of this run only
    cache = tempfile.TemporaryDirectory()
    os.environ.setdefault("IMG2IMG_CACHE", cache.name)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", action="append", help="cpu, cuda, ... (repeatable) [default: cpu, and cuda if present]"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads [default: torch's choice]")
    parser.add_argument("--cases", help="comma-separated subset, e.g. resnet_9blocks@256,unet_256@256")
    parser.add_argument(
        "--part",
        choices=["speed", "determinism", "floor"],
        default="speed",
        help="speed: translate against the reference [default]; determinism: the cost of "
        "thread-count independent norms and transposed convolutions; floor: peak conv "
        "throughput, FLOPs, profile",
    )
    parser.add_argument("--variants", help="--part determinism: comma-separated substrings of the variants to run")
    parser.add_argument(
        "--identity-threads",
        default="1,2,3,4",
        type=lambda v: [int(t) for t in v.split(",") if t],
        help="--part determinism: thread counts whose outputs are compared ('' to skip) [default: 1,2,3,4]",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part == "floor":
        floor(args)
        return
    if args.part == "determinism":
        with tempfile.TemporaryDirectory() as tmp:
            bench_determinism(args, Path(tmp))
        return
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    wanted = set(args.cases.split(",")) if args.cases else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            for name, size, cfg in CASES:
                if wanted is None or f"{name}@{size}" in wanted:
                    rows += bench_case(name, size, cfg, torch.device(device), args.rounds, args.warmup, Path(tmp))
    print(machine_summary())
    print(
        f"load average before: {LOAD_BEFORE}, after: {os.getloadavg()[0]:.2f}; median of {args.rounds} interleaved rounds after {args.warmup} warm-up"
    )
    if not cpu_has_native_bf16():
        print(
            "no native bf16 on this CPU: bf16 rows not measured here (emulated bf16 is minutes per image); "
            "the defaults for the native-bf16 class come from the README's figures measured on one"
        )
    print()
    print(
        "| model | size | device | path | ms/img median (best) | ratio to reference, median (best) | PSNR vs reference dB |"
    )
    print("|---|---|---|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['size']} | {r['device']} | {r['path']} | {r['ms']:.0f} ({r['best_ms']:.0f}) | {r['ratio']:.2f} ({r['best_ratio']:.2f}) | {r['psnr']:.1f} |"
        )


if __name__ == "__main__":
    main()
