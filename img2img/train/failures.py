"""How a run ends when something goes wrong: the one-line errors the
:class:`~img2img.train.trainer.Trainer` raises, each saying where training stopped, what is
intact on disk and how to go on (README: "When training stops or goes wrong").

- a file of the run that cannot be written (full disk, read-only folder): :func:`write_failure`;
- divergence (a non-finite loss, gradient or state, found by :mod:`~img2img.train.divergence`):
  :func:`diverged`;
- another process of a torchrun run that failed: :func:`peer_failure`;
- a stop signal: :func:`interrupted`; an image that fails to decode: :func:`data_failure`.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

from img2img.errors import (
    DatasetError,
    Img2ImgError,
    RunFolderError,
    TrainingDiverged,
    TrainingInterrupted,
)
from img2img.train import distributed
from img2img.train.checkpoint import read_checkpoint_info

if TYPE_CHECKING:
    from img2img.train.trainer import Trainer


def checkpoint_status(trainer: Trainer) -> str:
    """What is intact on disk: the last checkpoint this process wrote (or loaded), if any, as
    read back from the file now ("the last checkpoint, RUN/checkpoints/latest.safetensors from
    the end of epoch 3 (iteration 120), is intact"), or that it cannot be read."""
    if trainer._saved is None:
        return "no checkpoint had been written yet"
    _, iteration = trainer._saved
    latest = trainer.run.latest
    try:
        info = read_checkpoint_info(latest)
        epoch, epoch_iter, iteration = int(info["epoch"]), int(info.get("epoch_iter", 0)), int(info["iteration"])
    except (Img2ImgError, OSError, KeyError, TypeError, ValueError) as exc:
        reason = exc.message if isinstance(exc, Img2ImgError) else f"{type(exc).__name__}: {exc}"
        return f"the last checkpoint (iteration {iteration}) cannot be read back: {reason}"
    # The checkpoint's epoch counts the epochs completed; one written within an epoch
    # (--save-latest-freq, a stop) is part-way through the next.
    when = f"from the end of epoch {epoch}" if epoch_iter == 0 else f"from part-way through epoch {epoch + 1}"
    return f"the last checkpoint, {latest} {when} (iteration {iteration}), is intact"


def resume_hint(trainer: Trainer) -> str:
    return f"img2img train {trainer.model.task} --resume {trainer.run.root}"


def write_failure(trainer: Trainer, path: Path, exc: OSError) -> RunFolderError:
    """``path`` of the run could not be written: one line naming it and what is intact."""
    reason = exc.strerror or str(exc).strip() or type(exc).__name__
    status = checkpoint_status(trainer)
    then = (
        f"; make room or make the folder writable, then resume with: {resume_hint(trainer)}" if trainer._saved else ""
    )
    return RunFolderError(f"{path}: cannot write ({reason}); {status}{then}")


def diverged(trainer: Trainer, what: str, *, iteration: int | None = None) -> TrainingDiverged:
    """The error that ends a diverging run: where, what, and what to try."""
    iteration = trainer.iteration + 1 if iteration is None else iteration
    amp = ", without mixed precision (--no-amp)" if trainer.runtime.amp.enabled else ""
    return TrainingDiverged(
        f"training diverged at epoch {trainer.epoch + 1}, iteration {iteration}: {what}; nothing was "
        f"saved or exported after that ({checkpoint_status(trainer)}); start again with a lower "
        f"--lr{amp} or another --gan-mode"
    )


def peer_failure(trainer: Trainer) -> distributed.RankFailed:
    """Another process of the run failed (it says why): rank 0 says where things stand."""
    if trainer._saved is not None:
        where = (
            f"the last checkpoint, {trainer.run.latest} (iteration {trainer._saved[1]}), is intact: "
            f"resume with: img2img train {trainer.config.task} --resume {trainer.run.root}"
        )
    else:
        where = "no checkpoint had been written yet"
    return distributed.RankFailed(
        f"stopped because another process of this run failed (see its message); {where}",
        quiet=not trainer.dist.is_main,
    )


def interrupted(trainer: Trainer, signum: int | None, exit_code: int) -> TrainingInterrupted:
    """A stop signal ended the run after its checkpoint: where, and how to resume (said by
    rank 0 for all)."""
    error = TrainingInterrupted(
        f"interrupted ({signal.Signals(signum or signal.SIGINT).name}) at epoch "
        f"{trainer.epoch + 1}, iteration {trainer.iteration}; checkpoint written to {trainer.run.latest}; "
        f"resume with: img2img train {trainer.model.task} --resume {trainer.run.root}",
        exit_code=exit_code,
    )
    error.quiet = not trainer.dist.is_main
    return error


def data_failure(trainer: Trainer, exc: DatasetError) -> DatasetError:
    """An image failed to decode during training (after the checkpoint was written, if one
    could be): the file, where training stopped, and how to go on."""
    if trainer._saved is None:
        return DatasetError(f"{exc.message}; fix or remove the file and start again")
    return DatasetError(
        f"{exc.message}; training stopped at epoch {trainer.epoch + 1}, iteration {trainer.iteration} "
        f"({checkpoint_status(trainer)}); fix or remove the file, then resume with: {resume_hint(trainer)}"
    )


def written_file(exc: OSError, root: Path) -> Path | None:
    """The run-folder file an OSError was writing (a temporary ``.NAME.XXXX.tmp`` of an atomic
    write stands for NAME), or None for an error about something else."""
    if not exc.filename:
        return None
    path = Path(exc.filename)
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    if path.name.startswith(".") and path.name.endswith(".tmp"):
        name = path.name[1:-4].rsplit(".", 1)[0]
        path = path.with_name(name)
    return path
