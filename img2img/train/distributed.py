"""Several processes, one or more machines: PyTorch's own engine, torchrun +
DistributedDataParallel (DDP). No launcher or DataParallel of our own.

torchrun starts one process per GPU (or a few CPU processes) and sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; :class:`~img2img.train.trainer.Trainer`
then calls :func:`init_process_group` (NCCL on CUDA with one GPU per process, gloo on the
CPU), wraps the networks the step calls in DDP (:func:`data_parallel`, through
``Runtime.wrap``), optionally with SyncBatchNorm, and uses the few collectives below: the seed
from rank 0, the stop request of any rank, losses averaged over the ranks for the log, every
rank's RNG streams (and image pools) gathered into rank 0's checkpoint, and an agreement on
set-up errors so that a bad option is reported once.

The GAN steps need no special DDP mode. Every DDP forward is followed by a backward that
reaches all of that network's parameters before the same network runs forward again, or by no
backward into it at all: a discriminator frozen for the generator's update gets no gradients,
so DDP has nothing to reduce; calling a discriminator on real and on fake images and
back-propagating their sum reduces once; CycleGAN's parts (cycle A, cycle B, identity)
back-propagated one after the other reduce once each, and since the gradients already
averaged stay equal on every rank, averaging their sum again gives the average of the whole
(``tests/test_distributed.py`` checks the result against one process with the global batch).

``img2img train ... --nproc N`` hands over to torchrun on this machine (:func:`launch_local`).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import signal
import sys
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from img2img.errors import DeviceError, Img2ImgError, UsageError

# Rank 0 validates, draws samples and writes checkpoints while the others wait in their next
# collective; NCCL's default of 10 minutes is short for a large validation set on a busy disk.
TIMEOUT = datetime.timedelta(minutes=30)
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


# --- where this process stands ------------------------------------------------------------------


def under_torchrun() -> bool:
    """Started by torchrun (or anything that sets its variables), whatever the world size."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def local_world_size() -> int:
    try:
        return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        return 1


def available() -> bool:
    return torch.distributed.is_available()


def active() -> bool:
    """A process group of more than one process is up: DDP, collectives and all."""
    return available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def rank_seed(seed: int, rank: int, iteration: int = 0) -> int:
    """The seed of rank ``rank``'s own RNG streams (dropout, the gradient penalty's mixes). Rank
    0 keeps the run's seed, so that one process trains as a plain run does; the others get
    their own streams, not copies of rank 0's."""
    if rank == 0 and iteration == 0:
        return seed
    digest = hashlib.sha256(f"img2img:{seed}:{rank}:{iteration}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


# --- the process group ----------------------------------------------------------------------------


def check_device_option(device_option: str, world_size: int) -> None:
    """With several processes each takes the GPU of its LOCAL_RANK: a fixed cuda:N would put
    them all on one GPU."""
    if world_size > 1 and device_option.startswith("cuda:"):
        raise UsageError(
            f"--device {device_option}: with {world_size} processes each one takes the GPU of its "
            "LOCAL_RANK; give --device cuda (or auto) and choose the GPUs with CUDA_VISIBLE_DEVICES"
        )


def init_process_group(world_size: int, rank: int, device: torch.device) -> bool:
    """Join torchrun's process group (NCCL for CUDA, gloo for the CPU) when this process is one
    of several and none is up yet. Returns whether it started one (and so must end it)."""
    if world_size < 2 or not available() or torch.distributed.is_initialized():
        return False
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        return False  # a rank told it is one of several but not started by torchrun: no group
    options: dict[str, Any] = {}
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_world_size() > count:
            raise DeviceError(
                f"{local_world_size()} processes on this machine but {count} CUDA device(s): "
                f"NCCL needs one GPU per process (use --nproc {count} / --nproc_per_node {count})"
            )
        torch.cuda.set_device(device)
        backend = "nccl"
        options["device_id"] = device
    else:
        backend = "gloo"
    torch.distributed.init_process_group(backend, rank=rank, world_size=world_size, timeout=TIMEOUT, **options)
    return True


def destroy_process_group() -> None:
    global _CPU_GROUP
    _CPU_GROUP = None
    if available() and torch.distributed.is_initialized():
        with contextlib.suppress(Exception):
            torch.distributed.destroy_process_group()


# --- networks ---------------------------------------------------------------------------------------


def data_parallel(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` wrapped in DDP (parameters broadcast from rank 0 now, gradients averaged over the
    ranks in each backward, batch-norm buffers broadcast from rank 0 at each forward)."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(net, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(net)


def convert_sync_batchnorm(net: nn.Module) -> nn.Module:
    """Batch norm layers -> SyncBatchNorm (statistics over the global batch), sharing their
    parameters and buffers: the optimizers and the state-dict keys are unchanged."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(net)


def revert_sync_batchnorm(net: nn.Module) -> nn.Module:
    """SyncBatchNorm layers back to BatchNorm2d sharing their parameters and buffers (for the
    rank-0-only inference copy, which must neither wait for the other ranks nor differ from
    what `translate` runs)."""
    if isinstance(net, nn.SyncBatchNorm):
        plain = nn.BatchNorm2d(net.num_features, net.eps, net.momentum, net.affine, net.track_running_stats)
        for name in ("weight", "bias"):
            if getattr(net, name, None) is not None:
                setattr(plain, name, getattr(net, name))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            if getattr(net, name, None) is not None:
                setattr(plain, name, getattr(net, name))
        plain.train(net.training)
        return plain
    for name, child in net.named_children():
        reverted = revert_sync_batchnorm(child)
        if reverted is not child:
            setattr(net, name, reverted)
    return net


# --- collectives (no-ops in a single process) -------------------------------------------------------


_CPU_GROUP: Any = None


def cpu_group() -> Any:
    """The group for the small bookkeeping collectives, on CPU tensors: the default group with
    gloo; with NCCL a gloo group beside it (created on first use, by every rank at the same
    point), so that a stop flag costs no GPU synchronisation."""
    global _CPU_GROUP
    if torch.distributed.get_backend() == "gloo":
        return None
    if _CPU_GROUP is None:
        _CPU_GROUP = torch.distributed.new_group(backend="gloo")
    return _CPU_GROUP


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0, group=cpu_group())
    return box[0]


def max_over_ranks(value: int, device: torch.device | None = None) -> int:
    """The largest ``value`` of any rank (a stop request: the signal number, 0 for none)."""
    if not active():
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX, group=cpu_group())
    return int(tensor.item())


def mean_over_ranks(values: Mapping[str, float], device: torch.device | None = None) -> dict[str, float]:
    """Each figure averaged over the ranks (they all hold the same names)."""
    if not active() or not values:
        return dict(values)
    names = sorted(values)
    tensor = torch.tensor([float(values[n]) for n in names], dtype=torch.float64)
    torch.distributed.all_reduce(tensor, group=cpu_group())
    tensor /= torch.distributed.get_world_size()
    averaged = dict(zip(names, tensor.tolist()))
    return {name: averaged[name] for name in values}


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` (tensors moved to the CPU) as a list on rank 0, None elsewhere."""
    if not active():
        return [obj]
    obj = to_cpu(obj)
    rank = torch.distributed.get_rank()
    gathered: list[Any] | None = [None] * torch.distributed.get_world_size() if rank == 0 else None
    torch.distributed.gather_object(obj, gathered, dst=0, group=cpu_group())
    return gathered


def to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Mapping):
        return {key: to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, tuple):
        return tuple(to_cpu(value) for value in obj)
    if isinstance(obj, list):
        return [to_cpu(value) for value in obj]
    return obj


# --- errors -----------------------------------------------------------------------------------------


class RankFailed(Img2ImgError):
    """This rank stops because another one failed (or, ``quiet``, because they all hit the same
    problem and rank 0 reports it)."""

    def __init__(self, message: str, *, exit_code: int = 1, quiet: bool = False):
        super().__init__(message)
        self.exit_code = exit_code
        self.quiet = quiet


@contextlib.contextmanager
def agreement(rank: int) -> Iterator[None]:
    """Set-up checks (options, run folder, dataset, checkpoint) on every rank, then one
    decision: if any rank failed, all stop; rank 0 reports the first failure (once, not once
    per process), the others stop quietly with the same exit code."""
    failure: Img2ImgError | None = None
    try:
        yield
    except Img2ImgError as exc:
        if not active():
            raise
        failure = exc
    if not active():
        return
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    mine = None if failure is None else (str(failure), int(getattr(failure, "exit_code", 1)))
    torch.distributed.all_gather_object(gathered, mine, group=cpu_group())
    failed = [(r, f) for r, f in enumerate(gathered) if f is not None]
    if not failed:
        return
    first_rank, (message, code) = failed[0]
    if rank == 0:
        if failure is not None:
            raise failure
        raise RankFailed(f"rank {first_rank}: {message}", exit_code=code)
    raise RankFailed(message, exit_code=code, quiet=True)


def record_failure(exc: BaseException) -> None:
    """Under torchrun, leave this process's error in torchrun's error file: torchrun then names
    this rank (not a rank that stopped because of it) as the root cause, with the traceback."""
    if "TORCHELASTIC_ERROR_FILE" not in os.environ or env_world_size() < 2:
        return
    with contextlib.suppress(Exception):
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(exc)


PEER_FAILURE_SIGNS = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "NCCL communicator was aborted",
    "ProcessGroupNCCL",
    "Socket Timeout",
    "timed out",
    "Timed out",
)


def is_peer_failure(exc: BaseException) -> bool:
    """An error from a collective whose cause is another process (crashed, killed, gone)."""
    if not (available() and torch.distributed.is_initialized()):
        return False
    dist_error = getattr(torch.distributed, "DistError", ())
    if dist_error and isinstance(exc, dist_error):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(sign in text for sign in PEER_FAILURE_SIGNS)


# --- `--nproc N`: hand over to torchrun on this machine -------------------------------------------------


def torchrun_arguments(nproc: int, args: Sequence[str]) -> list[str]:
    """torchrun's command line for ``python -m img2img ARGS`` in ``nproc`` processes here."""
    return ["--standalone", "--nproc-per-node", str(nproc), "--module", "img2img", *args]


def root_cause(failures: Mapping[int, Any]) -> tuple[int, Any, bool]:
    """The failure that ended a torchrun job: ``(rank, failure, killed by a signal)``. A process
    that died by a signal other than SIGTERM (SIGKILL: out of memory; SIGSEGV) comes first;
    then the first that exited with its own code (it said why); SIGTERM is how torchrun stops
    the others once one has failed, so it comes last."""

    def when(item: tuple[int, Any]) -> Any:
        return item[1].timestamp

    items = sorted(failures.items(), key=when)
    for rank, failure in items:
        if failure.exitcode < 0 and -failure.exitcode != signal.SIGTERM:
            return rank, failure, True
    for rank, failure in items:
        if failure.exitcode > 0:
            return rank, failure, False
    rank, failure = items[0]
    return rank, failure, failure.exitcode < 0


def launch_local(nproc: int, args: Sequence[str], *, device_option: str, task: str, run_dir: str) -> int:
    """Run ``img2img ARGS`` in ``nproc`` processes on this machine through torchrun (in this
    process: torch.distributed.run) and return the exit code. The processes report for
    themselves (rank 0 the progress and the summary, a failing rank its error); this adds one
    line only when a process died without a word (killed by a signal)."""
    if under_torchrun():
        raise UsageError(
            f"--nproc {nproc}: this process was already started by torchrun "
            f"(WORLD_SIZE={env_world_size()}); give the process count to torchrun only"
        )
    check_device_option(device_option, nproc)
    cuda = device_option.startswith("cuda") or (device_option == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device_option}: this machine has no CUDA device (use --device cpu or auto)")
        if nproc > torch.cuda.device_count():
            raise DeviceError(
                f"--nproc {nproc}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                "NCCL needs one GPU per process"
            )
    elif "OMP_NUM_THREADS" not in os.environ:
        # torchrun would give each process 1 thread; on the CPU share the cores out instead.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["OMP_NUM_THREADS"] = str(max(1, cores // nproc))
    # Ctrl-C: torchrun passes SIGINT on; each process finishes its iteration and rank 0 writes
    # the checkpoint, which may take longer than torchrun's default grace of 30 s.
    os.environ.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "300")

    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # torchrun's own log lines (rendezvous, "closing signal SIGTERM", "failed (exitcode: 1)")
    # repeat what the processes say; its failures come back as exceptions, handled below.
    for name in ["torch.distributed.elastic", "torch.distributed.run", *logging.Logger.manager.loggerDict]:
        if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher", "torch.distributed.run")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(parse_args(torchrun_arguments(nproc, args)))
    except ChildFailedError as exc:
        rank, failure, killed = root_cause(exc.failures)
        if killed:  # it could not say why itself
            code = -failure.exitcode
            name = signal.Signals(code).name if code in signal.valid_signals() else f"signal {code}"
            hint = " (out of memory?)" if code == signal.SIGKILL else ""
            print(
                f"img2img: error: training process rank {rank} was killed by {name}{hint}; the others "
                f"were stopped. The last checkpoint in {run_dir}/checkpoints is intact: resume with "
                f"img2img train {task} --resume {run_dir}",
                file=sys.stderr,
                flush=True,
            )
            return 1
        return failure.exitcode or 1
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0


__all__ = [
    "RankFailed",
    "active",
    "agreement",
    "broadcast_object",
    "check_device_option",
    "convert_sync_batchnorm",
    "data_parallel",
    "destroy_process_group",
    "gather_to_main",
    "init_process_group",
    "is_peer_failure",
    "launch_local",
    "max_over_ranks",
    "mean_over_ranks",
    "rank_seed",
    "record_failure",
    "revert_sync_batchnorm",
    "root_cause",
    "torchrun_arguments",
    "under_torchrun",
]
