"""Translate a folder of images with Ray Data: one model per actor, outputs under the same names.

    python examples/ray_translate.py photos/ out/ --model photo2sketch --concurrency 2
    python examples/ray_translate.py s3://bucket/photos /shared/out --model hf:me/model \\
        --concurrency 8 --num-gpus 1

INPUT is a folder or file, local or any URI Ray and pyarrow read (s3://, gs://, abfs://, where
credentials are set up). Files are read with ``read_binary_files`` and decoded by img2img's own
reader in the actors, so the outputs are byte-identical to ``img2img translate INPUT --out-dir
OUTPUT_DIR`` with the same model, device and precision, whatever ``--num-cpus`` (the actors'
torch threads) and translate's own thread count (README "Same bytes at any thread count"), and
an unreadable file is one error line, not a failed job. OUTPUT_DIR is a local
folder (on a cluster: a filesystem every node mounts). Connects to the cluster in RAY_ADDRESS
or ``--address``, else starts Ray on this machine.

Prints one line per failed input on stderr and a summary on stdout; exit status 0 when every
input was written (or kept with --skip-existing), 1 when some failed, 2 for usage errors, 130
(Ctrl-C) or 143 (SIGTERM) when stopped, with one line saying what had been written. An output
that exists is an error unless --overwrite (replace it) or --skip-existing (keep it: re-run a
partly failed or interrupted run with it).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", metavar="INPUT", help="a folder or image file, local or s3://...")
    parser.add_argument(
        "output_dir", metavar="OUTPUT_DIR", type=Path, help="where outputs go, under the same relative names"
    )
    parser.add_argument(
        "--model", "-m", required=True, help="a weights file, a model name or hf:... (resolved on each worker)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="number of actors, each with its own copy of the model (default 1)"
    )
    parser.add_argument("--num-gpus", type=float, default=0, help="GPUs per actor (default 0: CPU)")
    parser.add_argument(
        "--num-cpus",
        type=float,
        default=1,
        help="CPUs per actor; Ray sets OMP_NUM_THREADS, so torch runs as many threads (default 1)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="images per Ray batch handed to an actor (default 16)"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when the actor has a GPU), cpu, cuda")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument(
        "--ext", default=None, help="output format (png, jpg, ...); default: the input's when writable, else png"
    )
    # The same pair of options as every img2img command that writes (img2img.cli._options).
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep outputs that exist and write only the missing ones (re-run an interrupted or partly failed run with it)",
    )
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no Ray progress bars")
    args = parser.parse_args(argv)
    for name in ("concurrency", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def run(args: argparse.Namespace, tally=None) -> int:
    from img2img.runtime import signals as _signals
    from img2img.translate.ray import Tally, Translate, check_arguments, import_ray, plan_inputs, write_outputs

    tally = tally if tally is not None else Tally()
    ray = import_ray()
    # A mistyped model or device fails here in one line, not in every actor after Ray started.
    check_arguments(args.model, device=args.device, encode=args.ext)
    out_dir = args.output_dir.absolute()
    kept: list[str] = []
    root, files, errors = plan_inputs(
        args.input,
        out_dir,
        ext=args.ext,
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        on_skip=kept.append,
    )
    tally.kept += len(kept)
    for line in errors:  # inputs that get no output: existing outputs, two inputs for one output
        print(f"ray_translate: error: {line}", file=sys.stderr)
    tally.errors += errors
    start = time.perf_counter()
    if files:
        if not ray.is_initialized():
            local = {}
            if args.address is None and not os.environ.get("RAY_ADDRESS"):
                local["_node_ip_address"] = "127.0.0.1"  # a new one-machine Ray: loopback only
            ray.init(address=args.address, include_dashboard=False, **local)
            # Ray's driver takes SIGTERM for itself (exit 15 after stack dumps): a stop signal
            # ends this run as it ends `img2img translate` (main() says what was written).
            _signals.install()
        if args.quiet:
            ray.data.DataContext.get_current().enable_progress_bars = False
        # Reading and writing files is I/O (decoding and encoding run in the actors): those
        # tasks ask for no CPU, so actors that take every CPU cannot starve them (with
        # --concurrency equal to the CPUs, the default 1 CPU per read task never got a slot).
        io_tasks = {"num_cpus": 0}
        if "num_cpus" in inspect.signature(ray.data.read_binary_files).parameters:
            dataset = ray.data.read_binary_files(files, include_paths=True, **io_tasks)
        else:  # Ray before 2.4x
            dataset = ray.data.read_binary_files(files, include_paths=True, ray_remote_args=io_tasks)
        dataset = dataset.map_batches(
            Translate,
            fn_constructor_kwargs={
                "model": args.model,
                "device": args.device,
                "precision": args.precision,
                "encode": args.ext or "auto",
            },
            batch_size=args.batch_size,
            compute=ray.data.ActorPoolStrategy(size=args.concurrency),
            num_cpus=args.num_cpus,
            num_gpus=args.num_gpus,
        )
        dataset = dataset.map_batches(
            write_outputs,
            fn_kwargs={
                "root": root,
                "out_dir": str(out_dir),
                "overwrite": args.overwrite,
                "skip_existing": args.skip_existing,
            },
            batch_size=args.batch_size,
            **io_tasks,
        )
        planned = len(tally.errors)
        for row in dataset.select_columns(["path", "error", "kept"]).iter_rows():
            tally.add(row)
        for line in tally.errors[planned:]:
            print(f"ray_translate: error: {line}", file=sys.stderr)
    seconds = time.perf_counter() - start
    written, failed = tally.written, len(tally.errors)
    total = written + tally.kept + failed
    rate = f", {written / seconds:.2f} images/s" if written and seconds > 0 else ""
    kept_text = f"; {tally.kept} kept (already there)" if tally.kept else ""
    print(f"{written} of {total} images written to {out_dir} in {seconds:.1f} s{rate}{kept_text}; {failed} failed")
    return 1 if failed else 0


def _interrupted(signal_name: str, tally, out_dir: Path) -> None:
    """The one line a stopped run ends with: the signal and what had been written. Ray's
    workers are stopped first, then the temporary files of those killed mid-write removed."""
    import contextlib

    from img2img.files.atomic import TEMP_PREFIX, remove_stale_temporaries

    with contextlib.suppress(Exception):
        import ray

        if ray.is_initialized():
            ray.shutdown()
    # ray.shutdown() returns before every worker process is gone: the temporaries of workers
    # killed mid-write are removed as their processes go (each is checked by its process id).
    deadline = time.monotonic() + 10
    while True:
        left = []
        for folder, _, names in os.walk(out_dir):
            remove_stale_temporaries(folder, force=True)
            left += [name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    print(f"ray_translate: interrupted by {signal_name}: {tally.describe()} to {out_dir}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from img2img.errors import Img2ImgError
    from img2img.runtime import signals as _signals
    from img2img.translate.ray import Tally, find_error

    args = parse_args(argv)
    tally = Tally()
    try:
        with _signals.installed():  # SIGINT, SIGTERM, SIGHUP: raise Interrupted, as in the CLI
            return run(args, tally)
    except _signals.Interrupted as exc:  # 130 for Ctrl-C, 143 for SIGTERM, as `translate`
        _interrupted(exc.signal_name, tally, args.output_dir.absolute())
        return exc.exit_code
    except KeyboardInterrupt:  # a Ctrl-C that arrived while Ray's own handler was in place
        _interrupted("SIGINT", tally, args.output_dir.absolute())
        return 130
    except Exception as exc:  # usage and model errors, also from the actors: one line, no traceback
        error = exc if isinstance(exc, Img2ImgError) else find_error(exc)
        if error is None:
            raise
        print(f"ray_translate: error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
