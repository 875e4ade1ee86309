"""onnxruntime vs PyTorch per image on the CPU, and export time and file size per shipped model.

    python benchmarks/bench_onnx.py                    # both parts
    python benchmarks/bench_onnx.py --part speed --rounds 9
    python benchmarks/bench_onnx.py --part export
    python benchmarks/bench_onnx.py --part int8 --int8-models shipped   # int8 vs fp32: PSNR, speed

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

int8: each model exported in fp32, then quantised by onnxruntime.quantization (see
INT8_VARIANTS: dynamic, and static QDQ/QOperator per tensor or per channel, calibrated on images
other than the evaluation photos); PSNR of the int8 output against the fp32 one on
examples/inputs/*, and speed against onnxruntime fp32 and translate fp32, in one shuffled run.

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

from img2img.models.config import GeneratorConfig
from img2img.models.networks import build_generator, init_weights
from img2img.models.weights import WeightsMetadata, save_generator
from img2img.onnx.export import export_onnx
from img2img.translate.translator import Translator

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

    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {torch.get_num_threads()} threads, "
        f"CPU {platform.processor() or platform.machine()} ({cpu_flags()})"
    )
    print(
        "| model | size | torch_ref | torch_fp32 | torch_bf16 | ort_fp32 | ort_fp32 / torch_fp32 | ort_fp32 / torch_ref | max abs diff ort-torch |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in MODELS:
        weights = tmp / f"{name}.safetensors"
        reference = make_model(name, weights)
        onnx_path = tmp / f"{name}.onnx"
        export_onnx(weights, onnx_path)
        variants = {
            "torch_fp32": Translator(weights, device="cpu", precision="fp32", engine="torch"),
            "torch_bf16": Translator(weights, device="cpu", precision="bf16"),
            "ort_fp32": Translator(onnx_path, device="cpu"),
        }
        if not MODELS[name][1]:
            from img2img.models.networks import use_per_image_batch_norm

            use_per_image_batch_norm(reference)  # what translate computes for this model
        for size in sizes:
            x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1

            def run_reference(x=x):
                with torch.no_grad():
                    return reference(x)

            calls = {
                "torch_ref": run_reference,
                **{k: (lambda t=t, x=x: t.translate_tensor(x)) for k, t in variants.items()},
            }
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


# --- int8 quantisation -------------------------------------------------------------------------
# name -> (kind, options). "dynamic": quantize_dynamic (weights int8 offline, activations'
# scales computed per call: ConvInteger). "static": quantize_static with scales from the
# calibration images; QDQ (QuantizeLinear/DequantizeLinear pairs that onnxruntime fuses into
# int8 kernels) or QOperator (QLinearConv ...), per tensor or per output channel. uint8
# activations and int8 weights (onnxruntime's recommended x86 combination), MinMax calibration.
INT8_VARIANTS = {
    "dynamic_u8": ("dynamic", {"weight_type": "QUInt8", "per_channel": False}),
    "static_qdq": ("static", {"quant_format": "QDQ", "per_channel": False}),
    "static_qdq_pc": ("static", {"quant_format": "QDQ", "per_channel": True}),
    "static_qop_pc": ("static", {"quant_format": "QOperator", "per_channel": True}),
    "static_qdq_pc_rr": ("static", {"quant_format": "QDQ", "per_channel": True, "reduce_range": True}),
}
INT8_SIZE = 256  # every generator here takes 256x256 (unet_256's size multiple)


def image_tensor(image, channels: str) -> "torch.Tensor":
    """A PIL image -> 1xCxHxW float32 in [-1, 1] (translate's input mapping)."""
    import numpy as np

    array = np.asarray(image.convert(channels), dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1)[None] / 127.5 - 1


def calibration_images(channels: str, count: int = 8) -> list["torch.Tensor"]:
    """Calibration inputs, none of which is an evaluation image: procedural scenes (the library's
    default calibration set, img2img.onnx.quantize.procedural_scenes: palette scenes with noise
    and a gradient) and random crops of the example photos at another scale (resized to 384 on
    the short side, 256x256 crops, flipped), as a user would calibrate on images of the kind the
    model is meant for."""
    from PIL import Image

    from img2img.onnx.quantize import CALIBRATION_SEED, procedural_scenes

    rng = random.Random(0)
    scenes = procedural_scenes(count // 2, (INT8_SIZE, INT8_SIZE), 1 if channels == "L" else 3, CALIBRATION_SEED)
    images = []
    photos = sorted((REPO / "examples" / "inputs").glob("*.*"))
    for index in range(count - len(scenes)):
        photo = Image.open(photos[index % len(photos)]).convert("RGB")
        scale = 384 / min(photo.size)
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC)
        x, y = rng.randint(0, photo.width - INT8_SIZE), rng.randint(0, photo.height - INT8_SIZE)
        crop = photo.crop((x, y, x + INT8_SIZE, y + INT8_SIZE))
        images.append(crop.transpose(Image.FLIP_LEFT_RIGHT) if index % 2 else crop)
    return [torch.from_numpy(scene) for scene in scenes] + [image_tensor(image, channels) for image in images]


def evaluation_images(channels: str) -> dict[str, "torch.Tensor"]:
    """examples/inputs/*, each resized to 256x256 (whole image, aspect not kept)."""
    from PIL import Image

    return {
        path.name: image_tensor(Image.open(path).convert("RGB").resize((INT8_SIZE, INT8_SIZE), Image.BICUBIC), channels)
        for path in sorted((REPO / "examples" / "inputs").glob("*.*"))
    }


def quantize(fp32: Path, target: Path, kind: str, options: dict, calibration: list["torch.Tensor"]) -> None:
    from onnxruntime import quantization as q

    options = dict(options)
    if kind == "dynamic":
        options["weight_type"] = getattr(q.QuantType, options["weight_type"])
        q.quantize_dynamic(fp32, target, **options)
        return

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"input": item.numpy()}

    options["quant_format"] = getattr(q.QuantFormat, options["quant_format"])
    q.quantize_static(
        fp32, target, Reader(), activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8, **options
    )


def int8(rounds: int, tmp: Path, shipped: bool, random_init: bool, variants: list[str]) -> None:
    import numpy as np
    import onnx
    import onnxruntime
    from onnxruntime import quantization as q

    from img2img.onnx.quantize import psnr, to_pixels
    from img2img.runtime.devices import machine_summary

    print(machine_summary())
    print(
        f"onnxruntime {onnxruntime.__version__}, {torch.get_num_threads()} threads, CPU flags {cpu_flags()}; "
        f"load average {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())}"
    )
    print(
        f"PSNR: int8 onnxruntime output vs fp32 onnxruntime output in pixels (0-255), on examples/inputs/* "
        f"at {INT8_SIZE}x{INT8_SIZE} (min over the images); calibration on other images (calibration_images). "
        f"Speed: one {INT8_SIZE}x{INT8_SIZE} image, median of {rounds} rounds in shuffled order."
    )
    models: list[tuple[str, Path]] = []
    if random_init:
        for name in MODELS:
            weights = tmp / f"{name}.safetensors"
            make_model(name, weights)
            models.append((f"{name} ngf 64 (random init)", weights))
    if shipped:
        models += [(f"{path.stem} (shipped)", path) for path in sorted((REPO / "weights").glob("*.safetensors"))]
    print("| model | variant | PSNR min (dB) | PSNR mean (dB) | ms | / ort fp32 | / translate fp32 | file MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    for label, weights in models:
        fp32_path = tmp / f"{weights.stem}.onnx"
        export_onnx(weights, fp32_path)
        model = onnx.load(fp32_path)
        props = {prop.key: prop.value for prop in model.metadata_props}
        channels = props.get("img2img.input_channels", "RGB")
        prepared = tmp / f"{weights.stem}.pre.onnx"
        q.quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        calibration = calibration_images(channels)
        evaluation = evaluation_images(channels)
        sessions = {"ort_fp32": onnxruntime.InferenceSession(fp32_path, options, providers=["CPUExecutionProvider"])}
        sizes = {"ort_fp32": fp32_path.stat().st_size}
        for variant in variants:
            kind, quant_options = INT8_VARIANTS[variant]
            target = tmp / f"{weights.stem}.{variant}.onnx"
            try:
                quantize(prepared, target, kind, quant_options, calibration)
                sessions[variant] = onnxruntime.InferenceSession(target, options, providers=["CPUExecutionProvider"])
                sizes[variant] = target.stat().st_size
            except Exception as exc:  # a variant onnxruntime cannot build or run is a result too
                print(
                    f"| {label} | {variant} | failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]} | | | | | |",
                    flush=True,
                )
        translator = Translator(weights, device="cpu", precision="fp32", engine="torch")

        def run(session):
            return lambda x: session.run(None, {"input": x.numpy()})[0]

        calls = {
            "translate_fp32": lambda x: translator.translate_tensor(x).numpy(),
            **{k: run(v) for k, v in sessions.items()},
        }
        reference = {name: to_pixels(calls["ort_fp32"](x)) for name, x in evaluation.items()}
        scores = {}
        for key in sessions:
            values = [psnr(to_pixels(calls[key](x)), reference[name]) for name, x in evaluation.items()]
            scores[key] = (min(values), float(np.mean([min(v, 99.0) for v in values])))
        x = next(iter(evaluation.values()))
        for call in calls.values():
            call(x)
        times: dict[str, list[float]] = {key: [] for key in calls}
        for _ in range(rounds):
            order = list(calls)
            random.shuffle(order)
            for key in order:
                start = time.perf_counter()
                calls[key](x)
                times[key].append(time.perf_counter() - start)
        median = {key: statistics.median(values) * 1000 for key, values in times.items()}
        print(
            f"| {label} | translate fp32 (torch) | - | - | {median['translate_fp32']:.0f} | "
            f"{median['translate_fp32'] / median['ort_fp32']:.2f} | 1.00 | - |"
        )
        for key in sessions:
            low, mean = scores[key]
            print(
                f"| {label} | {key} | {low:.1f} | {mean:.1f} | {median[key]:.0f} | "
                f"{median[key] / median['ort_fp32']:.2f} | {median[key] / median['translate_fp32']:.2f} | "
                f"{sizes[key] / 1e6:.1f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=["speed", "export", "int8", "all"],
        default="all",
        help="all: speed and export (int8 only when asked)",
    )
    parser.add_argument("--int8-models", choices=["random", "shipped", "both"], default="both")
    parser.add_argument("--int8-variants", default=",".join(INT8_VARIANTS), help=f"from {', '.join(INT8_VARIANTS)}")
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
        if args.part == "int8":
            variants = [name.strip() for name in args.int8_variants.split(",") if name.strip()]
            if unknown := [name for name in variants if name not in INT8_VARIANTS]:
                parser.error(f"unknown int8 variants: {', '.join(unknown)}")
            int8(args.rounds, tmp, args.int8_models != "random", args.int8_models != "shipped", variants)


if __name__ == "__main__":
    main()
