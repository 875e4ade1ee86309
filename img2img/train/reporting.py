"""What a run tells its user: the opening lines (:func:`announce`), RUN/report.html at each
epoch's end and when the run ends (:func:`write_report`), and the closing summary
(:func:`summary`). Rank 0 only: the other processes of a torchrun run stay silent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from img2img.train.progress import format_duration

if TYPE_CHECKING:
    from img2img.train.trainer import Trainer, TrainResult


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


def write_report(trainer: Trainer, status: str) -> None:
    """RUN/report.html (rank 0). A report that cannot be written is a note, never the end
    of the run; without matplotlib the note comes once."""
    if not trainer.dist.is_main or trainer._report_disabled or not trainer.run.latest.exists():
        return  # no checkpoint yet: nothing to report (a run that failed before one is removed)
    from img2img.report import matplotlib_missing, write_report as write_page

    try:
        if (missing := matplotlib_missing()) is not None:
            trainer._report_disabled = True
            trainer.log(f"note: no report.html: {missing}")
            return
        write_page(trainer.run.root, status=status)
    except Exception as exc:  # noqa: BLE001 - the report must never stop training
        trainer.log(f"note: report.html not written: {type(exc).__name__}: {exc}")


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
    report_page = run.root / "report.html"  # written just before, unless matplotlib is missing
    if report_page.is_file():
        lines.append(f"  report:     {report_page}")
    if not finished:
        lines.append(f"  continue:   img2img train {task} --resume {run.root}")
    for path in result.weights.values():  # one per direction a run exports
        lines.append(f"  translate:  img2img translate INPUT... --model {path} --out-dir OUT")
    trainer.log("\n".join(lines))
