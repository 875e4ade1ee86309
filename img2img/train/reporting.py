"""What a run tells its user: the opening lines (:func:`announce`), RUN/status.json at the
start, at each checkpoint and at the end (:func:`record_start`, :func:`record_checkpoint`,
:func:`record_end`; see :mod:`img2img.files.run_status`), RUN/report.html at an epoch's end (at
most every :data:`REPORT_INTERVAL` seconds) and when the run ends (:func:`write_report`), and
the closing summary (:func:`summary`). Rank 0 only: the other processes of a torchrun run stay
silent.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

from img2img.errors import Img2ImgError, TrainingDiverged, TrainingInterrupted
from img2img.files.run_status import STATUS_FILE, StatusWriter, describe
from img2img.train.progress import format_duration

if TYPE_CHECKING:
    from img2img.train.trainer import Trainer, TrainResult

# Seconds between two epoch-end rewrites of report.html. Drawing its charts costs a few seconds
# whatever the run's size (2.5 s for a 6-row run on the 2-core AVX2 machine); with epochs of a
# second or two (a small dataset) a rewrite at every epoch's end took 87 % of the training time.
# Epochs longer than this get a page each, as before; the run's end always writes one.
REPORT_INTERVAL = 60.0


def announce(trainer: Trainer) -> None:
    """The lines that open a run: what, where, the data, and how it runs (device, precision,
    memory layout, workers, batch, processes)."""
    cfg = trainer.config
    verb = "resuming" if trainer.resume else "training"
    where = f" from epoch {trainer.epoch + 1}, iteration {trainer.iteration}" if trainer.resume else ""
    trainer.log(f"{verb} {trainer.model.task} in {trainer.run.root}{where}")
    trainer.log(f"  data: {trainer.data.description}")
    for warning in trainer.data.warnings:
        trainer.log(f"  warning: {warning}")
    speed = [str(trainer.device)]
    if trainer.runtime.amp.enabled:
        speed.append(f"{cfg.amp_dtype} autocast")
    if trainer.runtime.channels_last:
        speed.append("channels-last")
    if trainer.runtime.compile:
        speed.append("compiled")
    workers = trainer.loader.num_workers
    speed.append(f"{workers} loader worker{'s' if workers != 1 else ''}")
    batch = f"batch {cfg.batch_size}"
    if trainer.dist.world_size > 1:
        processes = trainer.dist.world_size
        batch += f" per process x {processes} processes = {cfg.batch_size * processes}"
        speed.insert(0, "DDP " + ("NCCL" if trainer.device.type == "cuda" else "gloo"))
        if trainer.runtime.sync_bn:
            speed.append("SyncBatchNorm")
    trainer.log(
        f"  {cfg.total_epochs} epoch{'s' if cfg.total_epochs != 1 else ''} x {trainer.iters_per_epoch} iterations ({batch}), "
        f"seed {cfg.seed}, {', '.join(speed)}"
    )
    for note in trainer._notes:
        trainer.log(f"  note: {note}")


def record_start(trainer: Trainer) -> None:
    """status.json says "running" with this process's id and host (rank 0, once the run folder
    and config.json are written; a resumed run: from its checkpoint)."""
    if not trainer.dist.is_main:
        return
    status = StatusWriter(trainer.run.root, total_epochs=trainer.config.total_epochs)
    where = None
    if trainer._saved is not None:  # resumed
        where = {"epoch": trainer.epoch, "epoch_iter": trainer.epoch_iter, "iteration": trainer.iteration}
    with trainer._writing(status.path):
        status.start(epoch=trainer.epoch, iteration=trainer.iteration, checkpoint=where)
    trainer.status = status


def record_checkpoint(trainer: Trainer) -> None:
    """status.json: a checkpoint was written where the trainer stands (rank 0)."""
    if trainer.status is None:
        return
    with trainer._writing(trainer.status.path):
        trainer.status.checkpoint(epoch=trainer.epoch, epoch_iter=trainer.epoch_iter, iteration=trainer.iteration)


def _ending(trainer: Trainer, exc: BaseException | None) -> tuple[str, dict[str, str]]:
    """The status.json end state for a session that returned (``exc`` None) or raised ``exc``."""
    if exc is None:
        return ("finished" if trainer.epoch >= trainer.config.total_epochs else "stopped"), {}
    if isinstance(exc, TrainingInterrupted):  # exit code 128 + the signal's number
        try:
            return "interrupted", {"signal": signal.Signals(exc.exit_code - 128).name}
        except ValueError:
            return "interrupted", {}
    if isinstance(exc, KeyboardInterrupt):  # a second Ctrl-C
        return "interrupted", {"signal": "SIGINT"}
    if hasattr(exc, "signal_name"):  # the CLI's signal handler (img2img.runtime.signals.Interrupted)
        return "interrupted", {"signal": str(exc.signal_name)}
    if isinstance(exc, TrainingDiverged):
        return "diverged", {}
    text = exc.message if isinstance(exc, Img2ImgError) else str(exc)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return "failed", {"reason": first}


def record_end(trainer: Trainer, exc: BaseException | None) -> None:
    """How the session ended, in status.json, then report.html to match (rank 0). Never raises:
    the error that ended the run (if any) is the one to report; a status that cannot be written
    is a note."""
    status = trainer.status
    if status is None or not trainer.run.config.is_file():
        return  # the session never started, or its new run folder was removed
    state, details = _ending(trainer, exc)
    try:
        status.end(state, epoch=trainer.epoch, iteration=trainer.iteration, **details)
    except Exception as error:  # noqa: BLE001 - never hide the error that ended the run
        trainer.log(f"note: {STATUS_FILE} not written: {error}")
    write_report(trainer)


def write_report(trainer: Trainer, *, epoch_end: bool = False) -> None:
    """RUN/report.html (rank 0), with the status status.json holds. At an epoch's end
    (``epoch_end``) only when :data:`REPORT_INTERVAL` seconds have passed since this session's
    start or last report. A report that cannot be written is a note, never the end of the run;
    without matplotlib the note comes once."""
    if not trainer.dist.is_main or trainer._report_disabled or not trainer.run.latest.exists():
        return  # no checkpoint yet: nothing to report (a run that failed before one is removed)
    if epoch_end and time.monotonic() - trainer._report_time < REPORT_INTERVAL:
        return
    trainer._report_time = time.monotonic()
    from img2img.report.page import matplotlib_missing
    from img2img.report.page import write_report as write_page

    try:
        if (missing := matplotlib_missing()) is not None:
            trainer._report_disabled = True
            trainer.log(f"note: no report.html: {missing}")
            return
        status = describe(trainer.status.record) if trainer.status is not None else None
        write_page(trainer.run.root, status=status)
    except Exception as exc:  # noqa: BLE001 - the report must never stop training
        trainer.log(f"note: report.html not written: {type(exc).__name__}: {exc}")


def _can_report() -> bool:
    from img2img.report.page import matplotlib_missing

    return matplotlib_missing() is None


def summary(trainer: Trainer, result: TrainResult, *, finished: bool) -> None:
    """The closing lines: what was trained, where the weights, samples, metrics and report
    are, and the commands to continue and to translate."""
    task, run = trainer.model.task, trainer.run
    lines = [
        "",
        f"{'finished' if finished else 'stopped'}: {task}, {result.epochs} epoch"
        f"{'s' if result.epochs != 1 else ''}, "
        f"{result.iterations} iterations, {format_duration(result.seconds)}",
    ]
    for direction, path in result.weights.items():
        lines.append(f"  weights ({direction}): {path}")
    if result.val_metrics:
        source = {"held-out": " (held-out training images)", "train": " (training images)"}
        figures = ", ".join(f"{k} {v:.4g}" for k, v in result.val_metrics.items())
        lines.append(f"  validation: {figures}{source.get(trainer.data.val_source, '')}")
    last_sample = run.sample_file(trainer.epoch)
    if last_sample.exists():
        lines.append(f"  samples:    {last_sample}")
    lines.append(f"  metrics:    {run.metrics}")
    report_page = run.root / "report.html"  # written when the session ends, unless matplotlib is missing
    if report_page.is_file() or (not trainer._report_disabled and _can_report()):
        lines.append(f"  report:     {report_page}")
    if not finished:
        lines.append(f"  continue:   img2img train {task} --resume {run.root}")
    for path in result.weights.values():  # one per direction a run exports
        lines.append(f"  translate:  img2img translate INPUT... --model {path} --out-dir OUT")
    trainer.log("\n".join(lines))
