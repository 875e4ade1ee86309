"""What the :class:`~img2img.train.trainer.Trainer` measures and shows at an epoch's end, on
the validation split: the model's validation losses (:func:`validate`), ``--val-metrics``
scores every ``--val-freq`` epochs (:func:`score`, measured as ``img2img eval`` measures: see
:mod:`img2img.eval.validation`) and the sample grid of fixed validation images
(:func:`fixed_samples`, :func:`write_samples`). Each runs under its own fork of the RNG, so
validating leaves training's random streams (and a resumed run's bit-identity) untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch

from img2img.train.progress import TensorBoard
from img2img.train.samples import image_grid, save_png

if TYPE_CHECKING:
    from img2img.train.trainer import Trainer


class Stopping(Exception):
    """A stop signal arrived during a long end-of-epoch stage (validation, scores, samples):
    the stage is left out, so that the epoch's checkpoint is written and the run stops within
    one batch rather than after the whole stage."""


def check_stop(trainer: Trainer) -> None:
    """Raise :class:`Stopping` when a stop was asked for (one process: with several, every
    rank must reach the same collective calls, so they stop at the epoch's end together)."""
    if trainer.stop_pending():
        raise Stopping


def _until_stop(trainer: Trainer, batches):
    for batch in batches:
        check_stop(trainer)
        yield batch


def _left_out(trainer: Trainer, what: str) -> None:
    trainer.log(f"  {what} left out: stopping")


def rng_devices(trainer: Trainer) -> list[int]:
    """The CUDA devices whose RNG a fork must save (none on the CPU)."""
    return [trainer.device.index or 0] if trainer.device.type == "cuda" else []


def fixed_samples(trainer: Trainer) -> list[Mapping[str, Any]]:
    """The first ``--n-samples`` validation batches (batch 1), shown every epoch."""
    if trainer.val_loader is None or not trainer.config.n_samples:
        return []
    samples = []
    for index in range(min(trainer.config.n_samples, len(trainer.data.val))):
        batch = trainer.val_loader.collate_fn([trainer.data.val[index]])
        samples.append(batch)
    return samples


def validate(trainer: Trainer) -> dict[str, float]:
    """The model's validation figures (e.g. ``val_L1``) over the validation split."""
    if trainer.val_loader is None:
        return {}
    try:
        with torch.random.fork_rng(devices=rng_devices(trainer)), torch.no_grad():
            batches = _until_stop(trainer, trainer.val_loader)
            return trainer.model.validate(trainer.runtime.to_device(batch) for batch in batches)
    except Stopping:
        _left_out(trainer, "validation")
        return {}


def score(trainer: Trainer) -> dict[str, float]:
    """--val-metrics every --val-freq epochs (rank 0): the generators as exported, on the
    validation split, measured as `img2img eval` measures (img2img.eval.validation)."""
    if trainer.scorer is None or trainer.val_loader is None or (trainer.epoch + 1) % trainer.config.val_freq:
        return {}
    try:
        with torch.random.fork_rng(devices=rng_devices(trainer)), torch.no_grad():
            scores = trainer.scorer.score(
                trainer.val_loader,
                trainer.model.export_generators(),
                trainer.config.direction,
                check_stop=lambda: check_stop(trainer),
            )
    except Stopping:
        _left_out(trainer, "--val-metrics")
        return {}
    trainer._scored = {"epoch": trainer.epoch + 1, "directions": scores.record}
    return scores.figures


def write_samples(trainer: Trainer, samples: list[Mapping[str, Any]], tensorboard: TensorBoard | None) -> None:
    """samples/epoch_NNN.png (and TensorBoard's image): one row per fixed sample."""
    if not samples:
        return
    try:
        with torch.random.fork_rng(devices=rng_devices(trainer)), torch.no_grad():
            rows = []
            for batch in _until_stop(trainer, samples):
                rows += trainer.model.sample_rows(trainer.runtime.to_device(batch))
    except Stopping:
        _left_out(trainer, "the sample grid")
        return
    grid = image_grid(rows)
    path = trainer.run.sample_file(trainer.epoch)
    save_png(grid, path)
    if tensorboard:
        tensorboard.image("samples", grid, trainer.iteration)
