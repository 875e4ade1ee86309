"""Images per second through Ray Data (examples/ray_translate.py) with 1 and 2 actors, against
the plain `img2img translate`, on this machine; and what Ray adds per image.

    python benchmarks/bench_ray.py                       # photo2sketch, 48 images, 3 rounds
    python benchmarks/bench_ray.py --model photo2night --images 32 --rounds 5

Every variant translates the same folder of JPEG photos of mixed sizes (--min-size to
--max-size pixels a side) into a fresh output folder, twice per round: all --images, and the
first --small of them. The difference of the two wall times over the difference of the counts
is the steady cost per image, free of what every run pays once (process start, Ray actors
starting, model load); that is what "images/s" reports. Variants:

    cli           img2img translate in a new process (torch's default threads: one per core)
    cli 1 thread  the same with OMP_NUM_THREADS=1, as a Ray actor with num_cpus=1 runs
    ray 1 actor   the example, one actor with num_cpus=1 (so torch runs 1 thread)
    ray 2 actors  the example, two actors with num_cpus=1 each

Ray is started once (ray.init, timed separately) with one logical CPU more than the actors
use, so the read and write tasks always find a slot. Runs are interleaved round by round and
medians reported, so a machine shared with other work skews all variants alike: read ratios.
"Ray adds per image" is ray 1 actor minus cli 1 thread, per image (same threads, same work).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def make_images(folder: Path, count: int, min_size: int, max_size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        width, height = rng.integers(min_size, max_size + 1, size=2)
        # Smooth noise: compresses like a photo rather than like static.
        small = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((int(width), int(height)), Image.BILINEAR)
        image.save(folder / f"img{i:04d}.jpg", quality=90)


def run_cli(inputs: Path, out: Path, model: str, threads: int | None) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "img2img", "translate", str(inputs), "--out-dir", str(out), "-m", model, "-q"],
        check=True,
        env=env,
    )
    return time.perf_counter() - start


def run_ray(example, inputs: Path, out: Path, model: str, actors: int) -> float:
    args = example.parse_args([str(inputs), str(out), "--model", model, "--concurrency", str(actors), "--quiet"])
    start = time.perf_counter()
    code = example.run(args)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"ray_translate failed with {code}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="photo2sketch")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--small", type=int, default=8)
    parser.add_argument("--min-size", type=int, default=160)
    parser.add_argument("--max-size", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import importlib.util

    import ray

    spec = importlib.util.spec_from_file_location("ray_translate", REPO / "examples" / "ray_translate.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        full, small = work / "full", work / "small"
        full.mkdir()
        small.mkdir()
        make_images(full, args.images, args.min_size, args.max_size)
        for path in sorted(full.iterdir())[: args.small]:
            shutil.copy(path, small / path.name)

        start = time.perf_counter()
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        ray.data.DataContext.get_current().enable_progress_bars = False
        ray_start = time.perf_counter() - start

        variants = {
            "cli": lambda i, o: run_cli(i, o, args.model, None),
            "cli 1 thread": lambda i, o: run_cli(i, o, args.model, 1),
            "ray 1 actor": lambda i, o: run_ray(example, i, o, args.model, 1),
            "ray 2 actors": lambda i, o: run_ray(example, i, o, args.model, 2),
        }
        totals: dict[str, list[float]] = {name: [] for name in variants}
        per_image: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            for name, fn in variants.items():
                out_full, out_small = work / "out_full", work / "out_small"
                shutil.rmtree(out_full, ignore_errors=True)
                shutil.rmtree(out_small, ignore_errors=True)
                t_full = fn(full, out_full)
                t_small = fn(small, out_small)
                totals[name].append(t_full)
                per_image[name].append((t_full - t_small) / (args.images - args.small))
                print(
                    f"round {round_ + 1} {name}: {t_full:.1f} s for {args.images}, {t_small:.1f} s for {args.small}",
                    flush=True,
                )
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()
    print()
    print(
        f"model {args.model}, {args.images} JPEGs {args.min_size}-{args.max_size} px a side, "
        f"median of {args.rounds} interleaved rounds; ray.init {ray_start:.1f} s; "
        f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs"
    )
    print()
    cli = statistics.median(per_image["cli"])
    print("| variant | total for all images | steady ms/image | images/s | vs cli |")
    print("|---|---:|---:|---:|---:|")
    for name in variants:
        seconds = statistics.median(per_image[name])
        print(
            f"| {name} | {statistics.median(totals[name]):.1f} s | {seconds * 1000:.0f} | {1 / seconds:.2f} | {cli / seconds:.2f} |"
        )
    added = statistics.median(per_image["ray 1 actor"]) - statistics.median(per_image["cli 1 thread"])
    print(f"\nRay adds per image (ray 1 actor - cli 1 thread): {added * 1000:.0f} ms")


if __name__ == "__main__":
    main()
