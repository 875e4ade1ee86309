"""Multi-process training speed: images per second with 1 and N processes (torchrun + DDP) at
the same global batch.

    python benchmarks/bench_ddp.py                               # pix2pix unet_128, 128x128, global batch 4, CPU
    python benchmarks/bench_ddp.py --model cyclegan --netg resnet_6blocks
    python benchmarks/bench_ddp.py --device cuda --procs 1,2,4,8 --netg unet_256 --size 256 --global-batch 8

Each configuration is a real training run, `img2img train MODEL ... --nproc N --batch-size
GLOBAL/N` (N = 1: a plain run), on a synthetic dataset of the size that makes one epoch: the
DataLoader, DDP's gradient all-reduce (gloo on the CPU, NCCL on CUDA), the loss averaging for
the log and rank 0's bookkeeping are all in. The speed is read from metrics.csv (a row each
iteration): images of the iterations after the warm-up over the seconds they took, so process
start-up, rendezvous and the first iterations are left out. On the CPU the cores are shared
out (OMP_NUM_THREADS = cores / N): there this shows the plumbing's cost, not a speed-up; the
speed-up is for machines with one GPU per process.
Configurations take turns for several rounds, so that slow spells of a shared machine hit them
alike; reported are the median and the best over the rounds.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def make_data(root: Path, args: argparse.Namespace, images: int) -> Path:
    if args.model == "cyclegan":
        from img2img.data.synthetic import write_palette_dataset

        return write_palette_dataset(root / "palettes", n_a=images, n_b=images, n_test=0, size=args.size)
    from img2img.data.synthetic import write_shapes_dataset

    return write_shapes_dataset(root / "shapes", n_train=images, n_val=0, size=args.size)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parse_configs(text: str) -> list[tuple[int, int]]:
    """ "1x2,1x1,2x1" -> [(processes, threads per process)]; "2" = 2 processes sharing the cores."""
    configs = []
    for item in text.split(","):
        procs, _, threads = item.strip().partition("x")
        configs.append((int(procs), int(threads) if threads else max(1, cores() // int(procs))))
    return configs


def one_run(procs: int, threads: int, data: Path, out: Path, args: argparse.Namespace) -> tuple[float, str]:
    """Images per second of the measured iterations of one run (and its first log lines)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [
        sys.executable,
        "-m",
        "img2img",
        "train",
        args.model,
        "--data",
        str(data),
        "--out",
        str(out),
        "--netg",
        args.netg,
        "--ngf",
        str(args.ngf),
        "--ndf",
        str(args.ndf),
        "--load-size",
        str(args.size),
        "--crop-size",
        str(args.size),
        "--device",
        args.device,
        "--batch-size",
        str(args.global_batch // procs),
        "--n-epochs",
        "1",
        "--n-epochs-decay",
        "0",
        "--print-freq",
        "1",
        "--val-size",
        "0",
        "--n-samples",
        "0",
        "--save-latest-freq",
        "100000",
        "--seed",
        "0",
        *args.extra,
    ]
    if procs > 1:
        command += ["--nproc", str(procs)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)}\nfailed ({done.returncode}):\n{done.stderr}")
    rows = [r for r in csv.DictReader(open(out / "metrics.csv")) if r["scope"] == "iter"]
    first, last = rows[args.warmup - 1], rows[-1]
    iterations = int(last["iteration"]) - int(first["iteration"])
    seconds = float(last["elapsed_s"]) - float(first["elapsed_s"])
    header = next((line for line in done.stderr.splitlines() if "iterations (batch" in line), "")
    return iterations * args.global_batch / seconds, header.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("pix2pix", "cyclegan"), default="pix2pix")
    parser.add_argument(
        "--configs",
        default=None,
        help="PROCESSESxTHREADS, comma-separated (default on the CPU: 1 process with every core, 1 with "
        "half of them, 2 with half each, e.g. 1x2,1x1,2x1; with CUDA: 1,2)",
    )
    parser.add_argument("--global-batch", type=int, default=4, help="images per iteration over all processes")
    parser.add_argument("--netg", default=None, help="default: unet_128 (pix2pix), resnet_6blocks (cyclegan)")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--size", type=int, default=128, help="training resolution")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iters", type=int, default=12, help="measured iterations per run")
    parser.add_argument("--warmup", type=int, default=3, help="iterations left out at the start")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more training options, after --")
    args = parser.parse_args()
    args.netg = args.netg or ("resnet_6blocks" if args.model == "cyclegan" else "unet_128")
    default = (
        "1,2" if args.device.startswith("cuda") else f"1x{cores()},1x{max(1, cores() // 2)},2x{max(1, cores() // 2)}"
    )
    configs = list(dict.fromkeys(parse_configs(args.configs or default)))
    if any(args.global_batch % p for p, _ in configs):
        parser.error(f"--global-batch {args.global_batch} must divide by every process count")

    results: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    headers: dict[tuple[int, int], str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_data(root, args, args.global_batch * (args.warmup + args.iters))
        for round_ in range(args.rounds):
            for procs, threads in configs:
                out = root / f"run_{round_}_{procs}x{threads}"
                speed, headers[procs, threads] = one_run(procs, threads, data, out, args)
                results[procs, threads].append(speed)
                print(
                    f"round {round_ + 1}/{args.rounds}: {procs} process{'es' if procs > 1 else ''} x "
                    f"{threads} thread{'s' if threads > 1 else ''}: {speed:.2f} img/s",
                    file=sys.stderr,
                    flush=True,
                )

    base = statistics.median(results[configs[0]])
    print(
        f"\n{args.model} {args.netg} ngf {args.ngf} ndf {args.ndf}, {args.size}x{args.size}, global batch "
        f"{args.global_batch}, device {args.device}, {args.iters} iterations measured x {args.rounds} rounds"
    )
    print("| processes | batch/process | threads/process | img/s (median) | img/s (best) | vs first row |")
    print("|---|---|---|---|---|---|")
    for procs, threads in configs:
        speeds = results[procs, threads]
        median = statistics.median(speeds)
        print(
            f"| {procs} | {args.global_batch // procs} | {threads if args.device == 'cpu' else '-'} | "
            f"{median:.2f} | {max(speeds):.2f} | {median / base:.2f}x |"
        )
    for (procs, threads), header in headers.items():
        print(f"  {procs}x{threads}: {header}")


if __name__ == "__main__":
    main()
