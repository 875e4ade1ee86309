"""Training quality with and without the speed defaults (on a CPU with native bf16: bf16
autocast, and channels-last for U-Nets): the learning tasks of the tests, trained to the end for
several seeds, scored on held-out images.

    python benchmarks/quality_amp.py                       # both trainers, seeds 0 1 2
    python benchmarks/quality_amp.py --seeds 0 1 2 3 4 5 --threads 1   # the README's table

pix2pix: outlines -> filled shapes (32x32, unet_32), validation L1 to the true targets.
CycleGAN: one scene in two palettes (64x64, resnet_2blocks), L1 of G_A(testA) to the true
testB counterparts, and the cycle reconstruction L1. Lower is better for all; the two variants
should agree within the spread over seeds.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
from pathlib import Path

import torch

from img2img.data import list_images, load_image, to_tensor
from img2img.data.synthetic import write_palette_dataset, write_shapes_dataset
from img2img.models.weights import load_generator
from img2img.train import train_cyclegan, train_pix2pix
from img2img.train.config import CycleGANConfig, Pix2PixConfig

# "defaults" is what a run gets without speed options: on a CPU with native bf16, bf16 autocast,
# with channels-last for U-Nets (pix2pix) but not for ResNets (CycleGAN).
VARIANTS = {"fp32": dict(amp=False, channels_last=False), "defaults": dict(amp=None, channels_last=None)}


def pix2pix_score(root: Path, seed: int, speed: dict) -> dict[str, float]:
    data = write_shapes_dataset(root / "shapes", n_train=96, n_val=16, size=32, seed=0)
    config = Pix2PixConfig(
        data=str(data),
        out=str(root / "run"),
        netg="unet_32",
        ngf=16,
        ndf=16,
        preprocess="none",
        load_size=32,
        crop_size=32,
        lr=1e-3,
        n_epochs=5,
        n_epochs_decay=3,
        seed=seed,
        print_freq=1000,
        val_size=16,
        device="cpu",
        **speed,
    )
    return {"val L1": train_pix2pix(config, stream=io.StringIO()).val_metrics["val_L1"]}


def _images(folder: Path) -> list[torch.Tensor]:
    return [to_tensor(load_image(path, 3)).unsqueeze(0) for path in list_images(folder)]


def cyclegan_score(root: Path, seed: int, speed: dict) -> dict[str, float]:
    data = write_palette_dataset(root / "palettes", n_a=48, n_b=40, n_test=8, size=64, seed=0)
    config = CycleGANConfig(
        data=str(data),
        out=str(root / "run"),
        netg="resnet_2blocks",
        ngf=16,
        ndf=16,
        preprocess="none",
        load_size=64,
        crop_size=64,
        lr=5e-4,
        n_epochs=3,
        n_epochs_decay=3,
        seed=seed,
        print_freq=1000,
        val_size=8,
        device="cpu",
        **speed,
    )
    result = train_cyclegan(config, stream=io.StringIO())
    g_a = load_generator(result.weights["AtoB"]).net
    real_a, true_b = _images(data / "testA"), _images(data / "testB")
    with torch.no_grad():
        error = statistics.mean(float((g_a(a) - b).abs().mean()) for a, b in zip(real_a, true_b))
    return {"L1 to true B": error, "val cycle A": result.val_metrics["val_cycle_A"]}


SCORES = {"pix2pix": pix2pix_score, "cyclegan": cyclegan_score}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=(*SCORES, "both"), default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = list(SCORES) if args.model == "both" else [args.model]
    for model in models:
        print(f"{model}, seeds {args.seeds}, {torch.get_num_threads()} threads", flush=True)
        rows: dict[str, dict[str, list[float]]] = {}
        for seed in args.seeds:
            for variant, speed in VARIANTS.items():  # alternating, so drift hits both alike
                with tempfile.TemporaryDirectory() as tmp:
                    scores = SCORES[model](Path(tmp), seed, speed)
                for name, value in scores.items():
                    rows.setdefault(variant, {}).setdefault(name, []).append(value)
                print(f"  seed {seed} {variant}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()), flush=True)
        names = list(next(iter(rows.values())))
        print()
        print("| variant | " + " | ".join(f"{name}: median (mean ± sd)" for name in names) + " |")
        print("|---|" + "---|" * len(names))
        for variant, values in rows.items():
            cells = [
                f"{statistics.median(v):.4f} ({statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0:.4f})"
                for v in (values[name] for name in names)
            ]
            print(f"| {variant} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
