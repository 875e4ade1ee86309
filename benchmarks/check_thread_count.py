"""Which layers of translate's network give different bits at different torch thread counts?

    python benchmarks/check_thread_count.py                       # every case below
    python benchmarks/check_thread_count.py --cases photo2night --threads 1,2,3,4,8,16

For each model (the shipped ones in weights/, and random resnet_9blocks / unet_256 ngf 64 with
instance, per-image batch, eval-mode batch and no norm), size (256x256 and an odd 301x237) and
layout (channels-last and NCHW), a Translator (the path `img2img translate` runs, fp32) is run
once at 1 thread with every leaf layer's input and output recorded. Then, at each other thread
count, every layer is re-run on its recorded input and compared bit for bit with its 1-thread
output (so each layer is judged on its own, not on what earlier layers changed), and the whole
output too: float values and 8-bit pixels that differ. More threads than cores is fine: the
question is how the work is split, not how fast it runs. README "Same bytes at any thread count".

    python benchmarks/check_thread_count.py --engine onnxruntime

The onnxruntime engine (translate's --engine; its session takes torch's thread count when it is
made): a Translator per thread count, whole outputs compared with the 1-thread one (onnxruntime
exposes no layers to hook). Needs the onnx extra; its exports go to a temporary cache.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from img2img.models.config import GeneratorConfig
from img2img.models.networks import build_generator, init_weights
from img2img.models.weights import WeightsMetadata, save_generator
from img2img.runtime.devices import machine_summary
from img2img.translate.translator import Translator

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
RANDOM = {
    "resnet_9blocks-instance": (GeneratorConfig(arch="resnet", n_blocks=9, ngf=64, norm="instance"), True),
    "unet_256-per-image-batch": (GeneratorConfig(arch="unet", num_downs=8, ngf=64, norm="batch"), False),
    "unet_256-eval-batch": (GeneratorConfig(arch="unet", num_downs=8, ngf=64, norm="batch"), True),
    "resnet_9blocks-none": (GeneratorConfig(arch="resnet", n_blocks=9, ngf=64, norm="none"), True),
}


def random_model(cfg: GeneratorConfig, eval_mode: bool, path: Path) -> Path:
    torch.manual_seed(0)
    net = init_weights(build_generator(cfg))
    if cfg.norm == "batch":  # running statistics other than (0, 1)
        net.train()
        with torch.no_grad():
            for _ in range(2):
                net(torch.rand(2, cfg.input_nc, 256, 256) * 2 - 1)
    save_generator(path, net.state_dict(), WeightsMetadata(generator=cfg, eval_mode=eval_mode))
    return path


def leaves(net: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [(name, m) for name, m in net.named_modules() if not list(m.children())]


def check(path: Path, size: tuple[int, int], channels_last: bool, counts: list[int]) -> tuple[dict, dict, int]:
    torch.set_num_threads(1)
    translator = Translator(
        path, device="cpu", precision="fp32", channels_last=channels_last, tile="off", engine="torch"
    )
    recorded: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, module in leaves(translator.net):
        hooks.append(
            module.register_forward_pre_hook(lambda m, a, name=name: recorded.__setitem__(name, [a[0].clone()]))
        )
        hooks.append(module.register_forward_hook(lambda m, a, out, name=name: recorded[name].append(out.clone())))
    x = torch.rand(1, translator.config.input_nc, *size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    first = translator.translate_tensor(x)
    for hook in hooks:
        hook.remove()
    modules = dict(leaves(translator.net))
    differing: dict[str, list[int]] = {}
    outputs: dict[int, tuple[int, int]] = {}
    to_uint8 = lambda y: ((y + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # noqa: E731
    for count in counts:
        torch.set_num_threads(count)
        with torch.inference_mode():
            for name, (inputs, output) in recorded.items():
                if not torch.equal(modules[name](inputs.clone()), output):  # clone: ReLU is in place
                    differing.setdefault(f"{name} ({type(modules[name]).__name__})", []).append(count)
        y = translator.translate_tensor(x)
        outputs[count] = (int((y != first).sum()), int((to_uint8(y) != to_uint8(first)).sum()))
    return differing, outputs, len(recorded)


def check_onnxruntime(path: Path, size: tuple[int, int], counts: list[int]) -> dict[int, tuple[int, int]]:
    """Whole outputs of the onnxruntime engine at each thread count against 1 thread:
    {threads: (float values differing, 8-bit values differing)}."""
    to_uint8 = lambda y: ((y + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # noqa: E731
    x = None
    outputs: dict[int, tuple[int, int]] = {}
    first = None
    for count in [1, *counts]:
        torch.set_num_threads(count)
        translator = Translator(path, device="cpu", precision="fp32", tile="off", engine="onnxruntime")
        if x is None:
            x = torch.rand(1, translator.config.input_nc, *size, generator=torch.Generator().manual_seed(1)) * 2 - 1
        y = translator.translate_tensor(x)
        if first is None:
            first = y
        else:
            outputs[count] = (int((y != first).sum()), int((to_uint8(y) != to_uint8(first)).sum()))
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["torch", "onnxruntime"], default="torch")
    parser.add_argument("--cases", help="comma-separated substrings of the case names [default: all]")
    parser.add_argument("--threads", default="2,3,4,8", help="thread counts compared with 1 [default: 2,3,4,8]")
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    print(machine_summary())
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["IMG2IMG_CACHE"] = tmp  # the onnxruntime engine's exports
        cases = {name: WEIGHTS / f"{name}.safetensors" for name in ("photo2sketch", "photo2night", "night2photo")}
        cases.update({name: (cfg, eval_mode) for name, (cfg, eval_mode) in RANDOM.items()})
        for name, source in cases.items():
            if args.cases and not any(w in name for w in args.cases.split(",")):
                continue
            path = source if isinstance(source, Path) else random_model(*source, Path(tmp) / f"{name}.safetensors")
            for size in [(256, 256), (301, 237)]:
                if args.engine == "onnxruntime":
                    print(
                        f"{name} {size[0]}x{size[1]} (HxW) onnxruntime: output (float values, 8-bit values) "
                        f"differing at {check_onnxruntime(path, size, counts)}",
                        flush=True,
                    )
                    continue
                for channels_last in (True, False):
                    differing, outputs, n = check(path, size, channels_last, counts)
                    layout = "channels-last" if channels_last else "NCHW"
                    print(
                        f"{name} {size[0]}x{size[1]} (HxW) {layout}: {len(differing)} of {n} layers differ; "
                        f"output (float values, 8-bit values) differing at {outputs}",
                        flush=True,
                    )
                    for layer, at in differing.items():
                        print(f"    {layer}: at {at} threads")


if __name__ == "__main__":
    main()
