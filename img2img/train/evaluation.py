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
    with torch.random.fork_rng(devices=rng_devices(trainer)), torch.no_grad():
        return trainer.model.validate(trainer.runtime.to_device(batch) for batch in trainer.val_loader)


def score(trainer: Trainer) -> dict[str, float]:
    """--val-metrics every --val-freq epochs (rank 0): the generators as exported, on the
    validation split, measured as `img2img eval` measures (img2img.eval.validation)."""
    if trainer.scorer is None or trainer.val_loader is None or (trainer.epoch + 1) % trainer.config.val_freq:
        return {}
    with torch.random.fork_rng(devices=rng_devices(trainer)), torch.no_grad():
        scores = trainer.scorer.score(trainer.val_loader, trainer.model.export_generators(), trainer.config.direction)
    trainer._scored = {"epoch": trainer.epoch + 1, "directions": scores.record}
    return scores.figures


def write_samples(trainer: Trainer, samples: list[Mapping[str, Any]], tensorboard: TensorBoard | None) -> None:
    """samples/epoch_NNN.png (and TensorBoard's image): one row per fixed sample."""
    if not samples:
        return
    with torch.random.fork_rng(devices=rng_devices(trainer)), torch.no_grad():
        rows = []
        for batch in samples:
            rows += trainer.model.sample_rows(trainer.runtime.to_device(batch))
    grid = image_grid(rows)
    path = trainer.run.sample_file(trainer.epoch)
    save_png(grid, path)
    if tensorboard:
        tensorboard.image("samples", grid, trainer.iteration)
