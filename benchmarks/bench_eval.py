"""Evaluation speed on the CPU: Inception feature extraction, the whole `eval`, the cache, FID.

    python benchmarks/bench_eval.py                 # 8 + 8 images of 256x256
    python benchmarks/bench_eval.py --images 32 --rounds 5

Uses an Inception with the standard file's layout and random (He-initialised) weights: the
published weights cannot be downloaded here, and speed does not depend on the values (PyTorch's
default init would, by sinking activations into slow denormals). Variants are run in
interleaved rounds and the median is reported, so a machine shared with other work skews them
alike: read the ratios.

1. features: images/s of FIDInception.features on prepared images (resize to 299 + network),
   channels-last (what eval uses) vs contiguous, batch 1 vs batch 8.
2. whole eval: Evaluator.compare_folders (decode, resize, network, FID, KID, IS) on --fake and
   --real folders without the cache, then again with the real folder's features cached.
3. FID statistic alone: torch-fidelity's 2048x2048 eigenvalue problem vs the same in the
   samples' span (metrics.span_coordinates).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def random_inception(path: Path) -> None:
    from img2img.eval.inception import standard_layout

    generator = torch.Generator().manual_seed(0)
    tensors = standard_layout()
    for key, value in tensors.items():
        if key.endswith("conv.weight"):
            tensors[key] = torch.randn(value.shape, generator=generator) * math.sqrt(2 / value[0].numel())
    torch.save(tensors, path)


def write_images(folder: Path, count: int, size: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        noisy = np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC)).astype(int)
        noisy = np.clip(noisy + rng.integers(-10, 10, noisy.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="images per folder")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from img2img.eval import EvalSettings, Evaluator
    from img2img.eval.inception import FIDInception
    from img2img.eval.pretrained import load_tensors

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    from img2img.runtime.devices import machine_summary

    print(machine_summary())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["IMG2IMG_CACHE"] = str(root / "cache")
        weights = root / "inception.pth"
        random_inception(weights)
        write_images(root / "fake", args.images, args.size, 1)
        write_images(root / "real", args.images, args.size, 2)

        # 1. features
        tensors = load_tensors(weights)
        nets = {"channels_last": FIDInception(tensors, path=weights, device=torch.device("cpu"))}
        contiguous = FIDInception(tensors, path=weights, device=torch.device("cpu"))
        contiguous._memory_format = torch.contiguous_format
        contiguous.net = contiguous.net.to(memory_format=torch.contiguous_format)
        nets["contiguous"] = contiguous
        from img2img.files.imageio import read_image

        images = [nets["channels_last"].prepare(read_image(p)) for p in sorted((root / "fake").iterdir())]
        variants = [(name, batch) for name in nets for batch in (1, 8)]
        times: dict = {v: [] for v in variants}
        for _ in range(args.rounds):
            for name, batch in variants:
                start = time.perf_counter()
                for i in range(0, len(images), batch):
                    nets[name].features(images[i : i + batch])
                times[(name, batch)].append(time.perf_counter() - start)
        base = statistics.median(times[("channels_last", 8)])
        print(
            f"\n1. feature extraction, {len(images)} images of {args.size}x{args.size}, median of {args.rounds} rounds"
        )
        for variant in variants:
            seconds = statistics.median(times[variant])
            print(
                f"   {variant[0]:14} batch {variant[1]:2}: {len(images) / seconds:6.2f} img/s  ({seconds / base:.2f}x the time of channels_last batch 8)"
            )

        # 2. whole eval
        settings = dict(inception_weights=str(weights), device="cpu", batch_size=8)
        uncached, cached = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            Evaluator(EvalSettings(use_cache=False, **settings)).compare_folders(fake=root / "fake", real=root / "real")
            uncached.append(time.perf_counter() - start)
            Evaluator(EvalSettings(**settings)).compare_folders(fake=root / "fake", real=root / "real")  # fill
            start = time.perf_counter()
            result = Evaluator(EvalSettings(**settings)).compare_folders(fake=root / "fake", real=root / "real")
            cached.append(time.perf_counter() - start)
            assert result["settings"]["inception"]["feature_cache"]["real"] == "hit"
        total = 2 * args.images
        print(f"\n2. whole eval (FID, KID, IS), {args.images} fake + {args.images} real images")
        print(
            f"   no cache:          {statistics.median(uncached):7.2f} s  ({total / statistics.median(uncached):.2f} img/s)"
        )
        print(f"   both sets cached:  {statistics.median(cached):7.2f} s")

        # 3. the FID statistic
        from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

        from img2img.eval.metrics import span_coordinates

        generator = torch.Generator().manual_seed(0)
        a, b = torch.randn(args.images, 2048, generator=generator), torch.randn(args.images, 2048, generator=generator)
        start = time.perf_counter()
        full = fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), False)
        full_s = time.perf_counter() - start
        start = time.perf_counter()
        pa, pb = span_coordinates(a, b)
        span = fid_statistics_to_metric(fid_features_to_statistics(pa), fid_features_to_statistics(pb), False)
        span_s = time.perf_counter() - start
        key = "frechet_inception_distance"
        print(f"\n3. FID statistic, {args.images} + {args.images} samples (one round)")
        print(f"   2048x2048 eigenvalues: {full_s:7.2f} s   in the span ({pa.shape[1]} dims): {span_s:.3f} s   "
              f"relative difference {abs(full[key] - span[key]) / full[key]:.1e}")  # fmt: skip
    print(f"\nload average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
