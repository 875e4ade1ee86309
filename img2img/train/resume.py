"""Resuming a run (``--resume RUN``): which checkpoint to continue from, whether its facts hold,
loading it into the :class:`~img2img.train.trainer.Trainer` (networks, optimizers, schedules,
AMP scaler, RNG states, each rank's own streams) and restoring a kept copy a kill left unwritten.

Every function here reads or fills a trainer's state; the trainer calls them from its set-up,
inside the check that every process agrees on, before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from img2img.errors import Img2ImgError, RunFolderError, UsageError, WeightsError
from img2img.train import distributed
from img2img.train.checkpoint import Checkpoint, link_or_copy, load_checkpoint, seed_everything, set_rng_state
from img2img.train.schedules import refresh_learning_rate

if TYPE_CHECKING:
    from img2img.train.trainer import Trainer


def resume_checkpoint(trainer: Trainer) -> tuple[Path, Checkpoint]:
    """The checkpoint to resume from: ``latest``, or, when it is missing or unreadable, the
    newest readable kept epoch checkpoint (with a note saying so). RunFolderError when none is
    readable."""
    run = trainer.run
    problems = []
    for path in [run.latest, *run.kept_checkpoints()]:
        if not path.exists():
            problems.append(f"{path.name} is missing")
            continue
        try:
            checkpoint = load_checkpoint(path)
            check_info(path, checkpoint.info, trainer.model.task)
        except (WeightsError, RunFolderError) as exc:
            problems.append(f"{path.name} is unreadable ({exc.message.removeprefix(f'{path}: ')})")
            continue
        if problems:
            trainer._notes.append(f"{'; '.join(problems)}: resuming from {path}, the newest readable checkpoint")
        return path, checkpoint
    raise RunFolderError(
        f"--resume {run.root}: no readable checkpoint in {run.checkpoints} (" + "; ".join(problems) + ")"
    )


def check_info(path: Path, info: Mapping[str, Any], task: str) -> None:
    """Refuse a checkpoint whose facts are missing, of the wrong type or out of range
    (RunFolderError), or of another task (UsageError)."""

    def number(key: str, kind: type, low: float = 0) -> Any:
        value = info.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
            raise RunFolderError(f"{path}: damaged checkpoint ({key} is {value!r}, not a number)")
        if value < low:
            raise RunFolderError(f"{path}: damaged checkpoint ({key} {value} is below {low})")
        return value

    if info.get("task") != task:
        raise UsageError(f"{path}: a {info.get('task')} checkpoint, not a {task} one")
    epoch, epoch_iter, iteration = number("epoch", int), number("epoch_iter", int), number("iteration", int)
    if "elapsed" in info:
        number("elapsed", float)
    iters = info.get("iters_per_epoch")
    if iters is not None and number("iters_per_epoch", int, 1) and epoch_iter > iters:
        raise RunFolderError(f"{path}: damaged checkpoint (iteration {epoch_iter} of an epoch of {iters} iterations)")
    if iteration < epoch_iter or iteration < epoch:  # each epoch has at least one iteration
        raise RunFolderError(
            f"{path}: damaged checkpoint (iteration {iteration} is before epoch {epoch + 1}, "
            f"iteration {epoch_iter} of it)"
        )
    if not isinstance(info.get("config", {}), dict):
        raise RunFolderError(f"{path}: damaged checkpoint (its config is not a JSON object)")


def load(trainer: Trainer, found: tuple[Path, Checkpoint]) -> None:
    """Load ``found`` into ``trainer``; a checkpoint that does not fit (missing entries, tensors
    of other shapes: an edited config.json) is one RunFolderError naming the file."""
    path, checkpoint = found
    trainer._loaded_from = path
    try:
        _load_state(trainer, checkpoint)
    except Img2ImgError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise RunFolderError(f"{path}: damaged checkpoint (missing or wrong entry: {exc!r})") from None
    except RuntimeError as exc:  # load_state_dict: missing keys, shape mismatches
        text = str(exc).strip().splitlines()
        detail = next((line.strip() for line in text[1:] if line.strip()), text[0] if text else "")
        raise RunFolderError(
            f"{path}: does not fit the run's config ({trainer.run.config}: was it edited?): {detail}"
        ) from None


def _load_state(trainer: Trainer, checkpoint: Checkpoint) -> None:
    info, state = checkpoint.info, checkpoint.state
    trainer._loaded_info = info
    for name, net in trainer.model.networks.items():
        net.load_state_dict(state["networks"][name])
    for name, opt in trainer.model.optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
    for name, scheduler in trainer.schedulers.items():
        scheduler.load_state_dict(state["schedulers"][name])
    old_config = info.get("config") or {}
    if any(old_config.get(k) != getattr(trainer.config, k) for k in ("n_epochs", "n_epochs_decay")):
        for scheduler in trainer.schedulers.values():
            refresh_learning_rate(scheduler)  # the schedule was lengthened: rates from the new one
    trainer.runtime.amp.load_state_dict(state.get("amp") or {})
    trainer.model.load_extra_state(state.get("extra") or {})
    trainer._load_epoch_losses(state.get("epoch_losses"))
    set_rng_state(state["rng"])
    trainer.epoch, trainer.epoch_iter = int(info["epoch"]), int(info["epoch_iter"])
    trainer.iteration, trainer.elapsed = int(info["iteration"]), float(info.get("elapsed", 0.0))
    trainer.best.load(info.get("best"))
    trainer._saved = (trainer.epoch, trainer.iteration)
    _load_rank_state(trainer, state.get("rank_states") or [], info)


def _load_rank_state(trainer: Trainer, rank_states: Sequence[Mapping[str, Any]], info: Mapping[str, Any]) -> None:
    """Each rank continues its own random streams (and image pools) when the checkpoint has
    them; a rank the saved run did not have gets fresh streams of its own. With another
    global batch (another number of processes), the position in the epoch is converted:
    the images seen so far are not shown again, bar at most one batch."""
    dist, config = trainer.dist, trainer.config
    rank = dist.rank
    if rank > 0:
        own = rank_states[rank - 1] if rank - 1 < len(rank_states) else None
        if own is not None:
            set_rng_state(own["rng"])
            if own.get("extra"):
                trainer.model.load_extra_state(own["extra"])
            trainer._load_epoch_losses(own.get("epoch_losses"))
        else:
            seed_everything(distributed.rank_seed(config.seed or 0, rank, trainer.iteration))
    old_world = int(info.get("world_size", 1))
    old_batch = int((info.get("config") or {}).get("batch_size", config.batch_size))
    old_global, new_global = old_batch * old_world, config.batch_size * dist.world_size
    if old_world != dist.world_size:
        trainer._notes.append(
            f"the run had {old_world} process{'es' if old_world != 1 else ''}, it resumes with "
            f"{dist.world_size}: global batch {new_global}"
            + (
                f" (was {old_global}; --batch-size {old_global // dist.world_size} keeps it)"
                if old_global != new_global and old_global % dist.world_size == 0
                else f" (was {old_global})"
                if old_global != new_global
                else " as before"
            )
        )
    if old_global != new_global and trainer.epoch_iter:
        trainer.epoch_iter = trainer.epoch_iter * old_global // new_global


def restore_kept_checkpoint(trainer: Trainer) -> None:
    """A run killed between writing ``latest`` at an epoch's end and its kept copy
    (epoch_NNN) gets the copy now."""
    if trainer.epoch_iter or not trainer.epoch or trainer._loaded_from != trainer.run.latest:
        return
    total = (trainer._loaded_info.get("config") or {}).get("n_epochs", 0) + (
        trainer._loaded_info.get("config") or {}
    ).get("n_epochs_decay", 0)
    kept = trainer.run.epoch_checkpoint(trainer.epoch)
    if trainer._keeps_epoch(trainer.epoch, total or None) and not kept.exists():
        with trainer._writing(kept):
            link_or_copy(trainer.run.latest, kept)
