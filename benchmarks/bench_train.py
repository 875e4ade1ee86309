"""Training speed: seconds per iteration of pix2pix or CycleGAN with each speed option off and on.

    python benchmarks/bench_train.py                      # default pix2pix: unet_256, 256x256, batch 1
    python benchmarks/bench_train.py --rounds 5 --iters 10 --variants baseline,channels_last,amp
    python benchmarks/bench_train.py --ngf 8 --ndf 8 --size 64 --netg unet_64   # a quick look
    python benchmarks/bench_train.py --model cyclegan     # default CycleGAN: resnet_9blocks, 256x256, batch 1
    python benchmarks/bench_train.py --model cyclegan --rounds 3 --iters 2 --warmup 1 \
        --variants baseline,one_backward,channels_last,amp,channels_last+amp
    # against the reference implementation's own training loop (a checkout of
    # junyanz/pytorch-CycleGAN-and-pix2pix; its only extra dependency here is dominate)
    pip install --target /tmp/refdeps dominate
    python benchmarks/bench_train.py --variants baseline,default --rounds 5 --iters 3 --warmup 2 \
        --reference-dir ~/src/pytorch-CycleGAN-and-pix2pix --reference-pythonpath /tmp/refdeps

Each variant runs in its own process (so its peak memory is its own) on the real training path:
a PairedDataset of synthetic 256x256 A|B images (decoding, resize 286, random crop 256, flip)
or, for CycleGAN, an UnpairedDataset of synthetic trainA/ and trainB/ images, the DataLoader,
the Runtime (device, AMP, channels-last, compile) and the model's train_step. The CycleGAN
variant one_backward is the reference's step (one backward of the summed generator losses, all
six generator graphs alive at once), to measure what back-propagating each part as soon as it
is computed saves in memory.
The processes take turns, a few iterations each, for several rounds: on a machine whose cores
are shared, slow spells then hit every variant alike, and the ratios to the baseline stay
meaningful even when the absolute times drift. Reported: the median and the best seconds per iteration over
all rounds, the ratios to the baseline (lower is faster), and each process's peak RSS (and
peak CUDA memory on a GPU). The variant "default" is what `img2img train` picks on this
machine when no speed option is given (it prints what that resolved to).

With --reference-dir, the reference's own train.py runs once per round, after the variants'
turn, in a fresh process on the same synthetic data (its aligned train/ or trainA/trainB
layout), architecture, sizes and batch size, for --warmup + --iters iterations, with
--display_id -1 --no_html (nothing displayed, no HTML) and --print_freq 1: its loss log then
times every iteration itself ("time", the step, plus "data", the wait for the batch). Those two
are summed, the first --warmup iterations of each process dropped (as the variants' warm-up
is), and its start-up is reported separately. Its peak RSS is that process's (wait4).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# name -> options of the run (see make_runtime); "baseline" is everything off.
VARIANTS = {
    "baseline": {},
    # what `img2img train` picks on this machine when no speed option is given
    "default": {"amp": None, "channels_last": None, "num_workers": None},
    "reference_loader": {"num_workers": 4},  # the reference's 4 DataLoader workers
    "workers_1": {"num_workers": 1},
    "channels_last": {"channels_last": True},
    "amp": {"amp": True},
    "channels_last+amp": {"channels_last": True, "amp": True},
    "compile": {"compile": True},
    "channels_last+compile": {"channels_last": True, "compile": True},
    "one_backward": {"one_backward": True},  # CycleGAN only: the reference's G step
    "channels_last+amp+one_backward": {"channels_last": True, "amp": True, "one_backward": True},
}
REFERENCE = "reference train.py"
DEFAULT_VARIANTS = "baseline,default,reference_loader,workers_1,channels_last,amp,channels_last+amp"


def worker(conn, options: dict, args: argparse.Namespace, data_dir: str) -> None:
    import warnings

    import torch
    from torch.utils.data import DataLoader

    warnings.filterwarnings("ignore", message=".*worker processes in total.*")
    if args.threads:
        torch.set_num_threads(args.threads)

    from img2img.data import EpochSampler
    from img2img.runtime.devices import resolve_device
    from img2img.train.runtime import Amp, Runtime, default_amp, default_channels_last, default_num_workers

    config_cls, model_cls, make_data = trainer_parts(args.model)
    config = config_cls(
        data=data_dir,
        netg=args.netg,
        ngf=args.ngf,
        ndf=args.ndf,
        load_size=args.load_size,
        crop_size=args.size,
        batch_size=args.batch_size,
        device=args.device,
        seed=0,
        amp=options.get("amp", False),
        amp_dtype=args.amp_dtype,
        channels_last=options.get("channels_last", False),
        num_workers=options.get("num_workers", 0),
        compile=options.get("compile", False),
    )
    torch.manual_seed(0)
    device = resolve_device(config.device)
    # None: the trainer's default for this machine, resolved as img2img.train.trainer does
    use_amp = config.amp if config.amp is not None else default_amp(device, config.amp_dtype)
    channels_last = config.channels_last
    if channels_last is None:
        channels_last = default_channels_last(device, config.generator_config, amp=use_amp)
    runtime = Runtime(device, Amp(use_amp, config.amp_dtype, device), channels_last, config.compile)
    data = make_data(config)
    workers = config.num_workers if config.num_workers is not None else default_num_workers(device)
    if "amp" in options and options["amp"] is None:
        conn.send(("resolved", f"amp {use_amp}, channels-last {channels_last}, {workers} loader workers"))
    sampler = EpochSampler(len(data.train), seed=0)
    loader = DataLoader(
        data.train,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),
    )
    model = model_cls(config)
    model.setup(runtime)
    step = model.train_step
    if options.get("one_backward"):
        if args.model != "cyclegan":
            raise SystemExit("one_backward is a CycleGAN variant")
        step = lambda batch: reference_cyclegan_step(model, batch)  # noqa: E731
    model.train()
    epoch = 0

    def batches():
        nonlocal epoch
        while True:
            sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    stream = batches()

    def run(n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            batch = runtime.to_device(next(stream))
            losses = step(batch)
            runtime.amp.end_iteration()
            float(next(iter(losses.values())))  # waits for the GPU
            times.append(time.perf_counter() - start)
        return times

    start = time.perf_counter()
    run(args.warmup)
    conn.send(("ready", time.perf_counter() - start))
    while True:
        command, value = conn.recv()
        if command == "run":
            conn.send(("times", run(value)))
        else:
            peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
            peak_cuda = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
            conn.send(("memory", (peak_rss, peak_cuda)))
            return


def trainer_parts(model: str):
    """(config class, model class, data function) of a trainer."""
    if model == "cyclegan":
        from img2img.train.config import CycleGANConfig
        from img2img.train.cyclegan import CycleGANModel, cyclegan_data

        return CycleGANConfig, CycleGANModel, cyclegan_data
    from img2img.train.config import Pix2PixConfig
    from img2img.train.pix2pix import Pix2PixModel, pix2pix_data

    return Pix2PixConfig, Pix2PixModel, pix2pix_data


def reference_cyclegan_step(model, batch):
    """The reference's CycleGAN step: the same losses and updates as CycleGANModel.train_step,
    but the generators' losses summed and back-propagated once, so that the graphs of all six
    generator passes (fake, rec and idt for each direction) are alive together."""
    from torch.nn import functional as F

    from img2img.train.model import frozen

    cfg, amp = model.config, model.runtime.amp
    real_a, real_b = batch["A"], batch["B"]
    idt = cfg.lambda_identity
    with frozen(model.networks["D_A"]), frozen(model.networks["D_B"]), amp.autocast():
        fake_b, fake_a = model.g_a(real_a), model.g_b(real_b)
        rec_a, rec_b = model.g_b(fake_b), model.g_a(fake_a)
        idt_a, idt_b = model.g_a(real_b), model.g_b(real_a)
        loss_g_a = model.gan_loss(model.d_a(fake_b), True)
        loss_g_b = model.gan_loss(model.d_b(fake_a), True)
    loss_cycle_a = F.l1_loss(rec_a.float(), real_a.float()) * cfg.lambda_a
    loss_cycle_b = F.l1_loss(rec_b.float(), real_b.float()) * cfg.lambda_b
    loss_idt_a = F.l1_loss(idt_a.float(), real_b.float()) * cfg.lambda_b * idt
    loss_idt_b = F.l1_loss(idt_b.float(), real_a.float()) * cfg.lambda_a * idt
    amp.step(loss_g_a + loss_g_b + loss_cycle_a + loss_cycle_b + loss_idt_a + loss_idt_b, model.optimizers["G"])
    optimizer_d = model.optimizers["D"]
    optimizer_d.zero_grad(set_to_none=True)
    loss_d_a, _ = model.discriminator_loss(model.d_a, real_b, model.fake_b_pool.query(fake_b))
    amp.backward(loss_d_a)
    loss_d_b, _ = model.discriminator_loss(model.d_b, real_a, model.fake_a_pool.query(fake_a))
    amp.backward(loss_d_b)
    amp.step_optimizer(optimizer_d)
    return {"cycle_A": loss_cycle_a.detach(), "D_A": loss_d_a.detach()}


def loader_epoch_starts(data_dir: str, args: argparse.Namespace, epochs: int = 3) -> dict[str, float]:
    """Seconds to the first batch of an epoch (mean over ``epochs``): the stall at every epoch
    start that DataLoader workers started anew each epoch (the reference's 4) cost."""
    import warnings

    import torch
    from torch.utils.data import DataLoader

    from img2img.data import EpochSampler

    warnings.filterwarnings("ignore", message=".*worker processes in total.*")
    config_cls, _, make_data = trainer_parts(args.model)
    config = config_cls(data=data_dir, netg=args.netg, load_size=args.load_size, crop_size=args.size, seed=0)
    dataset = make_data(config).train
    results = {}
    for name, workers, persistent in (
        ("0 workers (img2img's CPU default)", 0, False),
        ("4 workers, new each epoch (the reference)", 4, False),
        ("1 persistent worker", 1, True),
    ):
        sampler = EpochSampler(len(dataset), seed=0)
        loader = DataLoader(
            dataset,
            batch_size=args.batch_size,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=persistent,
            generator=torch.Generator(),
        )
        starts = []
        for epoch in range(epochs + 1):
            sampler.set_epoch(epoch)
            start = time.perf_counter()
            iterator = iter(loader)
            next(iterator)
            if epoch:  # the first epoch also pays for starting persistent workers
                starts.append(time.perf_counter() - start)
            del iterator
        results[name] = statistics.mean(starts)
        del loader
    return results


REFERENCE_LOG_LINE = re.compile(r"\(epoch: \d+, iters: (\d+), time: ([0-9.]+), data: ([0-9.]+)\)")


def reference_command(
    reference_dir: Path, args: argparse.Namespace, data_dir: str, checkpoints: str, iters: int
) -> list[str]:
    """The command line that runs the reference's train.py (junyanz/pytorch-CycleGAN-and-pix2pix)
    for ``iters`` iterations of the same workload: one epoch over the first ``iters`` images
    (--max_dataset_size), no learning-rate decay, nothing displayed or saved, and its loss log
    written every iteration (--print_freq 1), which carries its own per-iteration timing."""
    options = (reference_dir / "options" / "train_options.py").read_text(encoding="utf-8", errors="replace")
    epochs = ("--n_epochs", "--n_epochs_decay") if "n_epochs_decay" in options else ("--niter", "--niter_decay")
    model = "cycle_gan" if args.model == "cyclegan" else "pix2pix"
    command = [
        sys.executable,
        str(reference_dir / "train.py"),
        "--dataroot",
        data_dir,
        "--name",
        "bench",
        "--checkpoints_dir",
        checkpoints,
        "--model",
        model,
        "--netG",
        args.netg,
        "--ngf",
        str(args.ngf),
        "--ndf",
        str(args.ndf),
        "--load_size",
        str(args.load_size),
        "--crop_size",
        str(args.size),
        "--batch_size",
        str(args.batch_size),
        "--gpu_ids",
        "-1" if args.device == "cpu" else "0",
        "--display_id",
        "-1",
        "--no_html",
        "--print_freq",
        "1",
        epochs[0],
        "1",
        epochs[1],
        "0",
        "--max_dataset_size",
        str(iters * args.batch_size),
        "--save_epoch_freq",
        "1000000",
        "--save_latest_freq",
        "1000000000",
    ]
    if args.reference_workers is not None:
        command += ["--num_threads", str(args.reference_workers)]
    return command


def run_reference(
    reference_dir: Path, args: argparse.Namespace, data_dir: str, iters: int
) -> tuple[list[float], float, float]:
    """Runs the reference's train.py once for ``args.warmup + iters`` iterations. Returns the
    seconds of each iteration after the warm-up (its own log's compute time + data-wait time,
    which together cover the loop body as our worker's timing does: fetching a batch, moving it
    to the device, the step and reading a loss), the process's wall time, and its peak RSS in
    MiB (from wait4, so it is this child's alone)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(reference_dir), args.reference_pythonpath]))
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as checkpoints:
        command = reference_command(reference_dir, args, data_dir, checkpoints, args.warmup + iters)
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=checkpoints, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = proc.stdout.read().decode("utf-8", "replace")
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            sys.exit(f"the reference's train.py failed (exit code {proc.returncode}):\n{output[-3000:]}")
        log = Path(checkpoints) / "bench" / "loss_log.txt"
        rows = [REFERENCE_LOG_LINE.search(line) for line in log.read_text().splitlines()]
    seconds = [float(row[2]) + float(row[3]) for row in rows if row]
    if len(seconds) != args.warmup + iters:
        sys.exit(f"expected {args.warmup + iters} timed iterations in the reference's loss log, found {len(seconds)}")
    return seconds[args.warmup :], wall, usage.ru_maxrss / 1024


def receive(conn, proc):
    """The worker's next message; exits if the worker died (its traceback is on stderr)."""
    while not conn.poll(1.0):
        if not proc.is_alive():
            sys.exit(f"a benchmark process failed (exit code {proc.exitcode})")
    return conn.recv()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated, from: {', '.join(VARIANTS)} (default: {DEFAULT_VARIANTS}, and one_backward for cyclegan)",
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iters", type=int, default=3, help="iterations per variant per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--model", choices=("pix2pix", "cyclegan"), default="pix2pix")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--netg", default=None, help="default: unet_256 (pix2pix), resnet_9blocks (cyclegan)")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--size", type=int, default=256, help="crop size (training resolution)")
    parser.add_argument("--load-size", type=int, default=None, help="default: size * 286 / 256")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--amp-dtype", default="bf16")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    parser.add_argument(
        "--reference-dir",
        type=Path,
        default=None,
        help="a checkout of junyanz/pytorch-CycleGAN-and-pix2pix: its train.py runs on the same data, "
        "architecture and iteration count, once per round (a fresh process each time: start-up and "
        "--warmup iterations are excluded, see run_reference)",
    )
    parser.add_argument(
        "--reference-pythonpath",
        default="",
        help="extra PYTHONPATH for the reference's own dependencies (dominate), e.g. a pip --target folder",
    )
    parser.add_argument(
        "--reference-workers",
        type=int,
        default=None,
        help="the reference's --num_threads (DataLoader workers; default: its own, 4)",
    )
    args = parser.parse_args()
    args.load_size = args.load_size or round(args.size * 286 / 256)
    args.netg = args.netg or ("resnet_9blocks" if args.model == "cyclegan" else "unet_256")
    if args.variants is None:
        args.variants = DEFAULT_VARIANTS + (",one_backward" if args.model == "cyclegan" else "")
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}")
    if args.reference_dir is not None and not (args.reference_dir / "train.py").is_file():
        parser.error(f"--reference-dir {args.reference_dir}: no train.py there")

    import torch

    from img2img.data.synthetic import write_palette_dataset, write_shapes_dataset
    from img2img.runtime.devices import cpu_has_native_bf16, machine_summary

    print(machine_summary())
    if not cpu_has_native_bf16() and any("amp" in name for name in names):
        print(
            "note: no native bf16 on this CPU: the amp variants measure emulated bf16, which the "
            "defaults leave off here (img2img.train.runtime.default_amp)"
        )
    print(
        f"{args.model} {args.netg} ngf {args.ngf}, basic D ndf {args.ndf}, {args.size}x{args.size}, "
        f"batch {args.batch_size}, device {args.device}; torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, {args.threads or torch.get_num_threads()} threads; "
        f"load average before starting {os.getloadavg()[0]:.2f} (above 0: other processes share the cores)",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "cyclegan":
            data_dir = write_palette_dataset(Path(tmp) / "palettes", n_a=32, n_b=24, n_test=2, size=args.size)
        else:
            data_dir = write_shapes_dataset(Path(tmp) / "shapes", n_train=32, n_val=0, size=args.size)
        ctx = mp.get_context("spawn")
        procs = {}
        for name in names:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(child, VARIANTS[name], args, str(data_dir)))
            proc.start()
            kind, seconds = receive(parent, proc)  # warm-up runs one variant at a time
            if kind == "resolved":
                print(f"  {name}: {seconds}", flush=True)
                _, seconds = receive(parent, proc)
            print(f"  {name}: ready after {seconds:.1f} s warm-up", flush=True)
            procs[name] = (proc, parent)
        times: dict[str, list[float]] = {name: [] for name in names}
        reference_rss, reference_walls = [], []
        if args.reference_dir is not None:
            times[REFERENCE] = []
        for round_index in range(args.rounds):
            for name in names:
                _, conn = procs[name]
                conn.send(("run", args.iters))
                times[name] += receive(conn, procs[name][0])[1]
            if args.reference_dir is not None:
                seconds, wall, rss = run_reference(args.reference_dir.resolve(), args, str(data_dir), args.iters)
                times[REFERENCE] += seconds
                reference_rss.append(rss)
                reference_walls.append(wall)
            print(f"  round {round_index + 1}/{args.rounds} done", flush=True)
        memory = {}
        for name, (proc, conn) in procs.items():
            conn.send(("quit", None))
            memory[name] = receive(conn, proc)[1]
            proc.join()
        epoch_starts = loader_epoch_starts(str(data_dir), args)
    if args.reference_dir is not None:
        memory[REFERENCE] = (max(reference_rss), None)
        names.append(REFERENCE)

    base = statistics.median(times[names[0]])
    base_min = min(times[names[0]])
    print()
    print(
        f"| variant | s/iter (median) | s/iter (best) | ratio to {names[0]} (median, best) | peak RSS (MiB) |"
        + (" peak CUDA (MiB) |" if args.device != "cpu" else "")
    )
    print("|---|---|---|---|---|" + ("---|" if args.device != "cpu" else ""))
    for name in names:
        median, best = statistics.median(times[name]), min(times[name])
        rss, cuda = memory[name]
        row = f"| {name} | {median:.3f} | {best:.3f} | {median / base:.2f}, {best / base_min:.2f} | {rss:.0f} |"
        if args.device != "cpu":
            row += f" {cuda:.0f} |" if cuda is not None else " - |"
        print(row)
    print()
    if args.reference_dir is not None:
        iterations = args.warmup + args.iters
        print(
            f"{REFERENCE}: its loss log's time + data per iteration, iterations {args.warmup + 1}-{iterations} "
            f"of a fresh process each round; whole process (start-up, {iterations} iterations) "
            f"{statistics.median(reference_walls):.1f} s median"
        )
        print()
    print("| DataLoader | seconds to an epoch's first batch |")
    print("|---|---|")
    for name, seconds in epoch_starts.items():
        print(f"| {name} | {seconds:.3f} |")


if __name__ == "__main__":
    sys.exit(main())
