"""Scores during training (``--val-metrics``, ``--keep-best``): the trainer's validation split,
translated by the generators as they would be exported, measured by the same
:class:`~img2img.eval.run.Evaluator` as ``img2img eval``.

pix2pix: the validation pairs' inputs are translated and compared with their targets, as a set
(FID, KID, IS) and pair by pair (PSNR, SSIM, LPIPS). CycleGAN: the A images translated by the
AtoB generator are compared with the B images, and the other way round (FID, KID, IS); each
score is logged per direction (``val_fid_AtoB``) and as the mean of both (``val_fid``).

The validation images are the trainer's validation dataset's tensors (preprocessed without
randomness), turned into 8-bit images; the real set's features are computed once per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from PIL import Image

from img2img.errors import UsageError
from img2img.eval import metrics as M

LOWER_IS_BETTER = frozenset({"fid", "kid", "lpips"})
DIRECTIONS = ("AtoB", "BtoA")


def parse_metrics(text: str | None, task: str) -> tuple[str, ...]:
    """``"fid,kid"`` -> ("fid", "kid") in the canonical order; UsageError for unknown names and
    for paired metrics on CycleGAN (its validation has no targets)."""
    if not text:
        return ()
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in M.ALL]
    if unknown:
        raise UsageError(f"--val-metrics: unknown metric {unknown[0]!r}; valid: {', '.join(M.ALL)}")
    if task == "cyclegan":
        paired = [n for n in names if n in M.PAIRED]
        if paired:
            raise UsageError(
                f"--val-metrics {paired[0]}: CycleGAN's validation images are unpaired; use fid, kid or is"
            )
    return tuple(m for m in M.ALL if m in names)


def check_keep_best(keep_best: str | None, metrics: tuple[str, ...]) -> None:
    if keep_best is not None and keep_best not in metrics:
        raise UsageError(f"--keep-best {keep_best}: not among --val-metrics ({', '.join(metrics) or 'none'})")


def better(metric: str, value: float, best: float | None) -> bool:
    """Whether ``value`` beats ``best`` (lower FID, KID, LPIPS; higher IS, PSNR, SSIM)."""
    if best is None:
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best


@dataclass
class ValidationScores:
    """One validation: the flat figures for metrics.csv / the progress line / TensorBoard, and
    the full record (scores with settings and sample counts) for the exported weights."""

    figures: dict[str, float]
    record: dict[str, Any]


class ValidationScorer:
    """Scores a trainer's generators on its validation split. Construct it before training:
    it finds (or downloads) the Inception and LPIPS weights, so a missing file stops the run
    before anything is written."""

    def __init__(
        self, metrics: tuple[str, ...], *, task: str, device: torch.device | str,
        inception_weights: str | None = None, lpips_weights: str | None = None,
    ):  # fmt: skip
        from img2img.eval.run import EvalSettings, Evaluator

        self.metrics, self.task = metrics, task
        self.evaluator = Evaluator(
            EvalSettings(
                metrics=metrics,
                device=str(device),
                inception_weights=inception_weights,
                lpips_weights=lpips_weights,
                use_cache=False,
            )  # fmt: skip
        )
        self.evaluator.find_weights(metrics)

    def names(self) -> list[str]:
        """The metrics.csv columns this scorer fills."""
        if self.task == "cyclegan":
            return [f"val_{m}_{d}" for m in self.metrics for d in DIRECTIONS] + [f"val_{m}" for m in self.metrics]
        return [f"val_{m}" for m in self.metrics]

    def score(
        self,
        batches: Iterable[Mapping[str, Any]],
        generators: Mapping[str, Any],
        direction: str = "AtoB",
        *,
        check_stop: Callable[[], None] | None = None,
    ) -> ValidationScores:
        """``batches``: the validation loader's batches (CPU tensors in [-1, 1]); ``generators``:
        the model's ``export_generators()`` (direction -> ExportedGenerator). ``check_stop`` is
        called between images and batches of every stage (translation, features, pairs); what
        it raises ends the scoring (a stop signal during a long validation)."""
        from img2img.eval.run import Hooks

        previous = self.evaluator.hooks
        if check_stop is not None:
            self.evaluator.hooks = Hooks(advance=lambda n: check_stop())
        try:
            return self._score(batches, generators, direction, check_stop or (lambda: None))
        finally:
            self.evaluator.hooks = previous

    def _score(self, batches, generators, direction: str, check_stop: Callable[[], None]) -> ValidationScores:
        from img2img.eval.data import Comparison
        from img2img.eval.features import ImageItem

        images: dict[str, dict[str, Image.Image]] = {"input": {}, "target": {}, "A": {}, "B": {}}
        for batch in batches:
            check_stop()
            if "input" in batch:  # pix2pix: {"input", "target", "name"}, direction applied
                for i, name in enumerate(_names(batch["name"])):
                    images["input"][name] = _to_image(batch["input"][i])
                    images["target"][name] = _to_image(batch["target"][i])
            else:  # CycleGAN: {"A", "B", "A_path", "B_path"}, the smaller domain comes round again
                for side in ("A", "B"):
                    for i, path in enumerate(_names(batch[f"{side}_path"])):
                        images[side].setdefault(path, _to_image(batch[side][i]))
        if self.task == "cyclegan":
            plans = [
                (d, images["A" if d == "AtoB" else "B"], images["B" if d == "AtoB" else "A"], None) for d in DIRECTIONS
            ]
        else:
            plans = [(direction, images["input"], images["target"], images["target"])]
        figures: dict[str, float] = {}
        record: dict[str, Any] = {}
        for plan_direction, inputs, reals, targets in plans:
            if not inputs or not reals or plan_direction not in generators:
                continue
            items = lambda d: [ImageItem(name, image=image, name=name) for name, image in d.items()]  # noqa: E731
            comparison = Comparison(
                label=f"validation {plan_direction}", inputs=items(inputs), reals=items(reals),
                targets={name: ImageItem(name, image=image, name=name) for name, image in targets.items()} if targets else None,
                direction=plan_direction,
            )  # fmt: skip
            translator = _translator(generators[plan_direction], self.evaluator.device, self.task, plan_direction)
            result = self.evaluator.evaluate(comparison, translator)
            record[plan_direction] = {
                "scores": result["scores"],
                "samples": result["samples"],
                "settings": result["settings"],
            }
            suffix = f"_{plan_direction}" if self.task == "cyclegan" else ""
            for metric in self.metrics:
                value = (result["scores"].get(metric) or {}).get("value")
                if value is not None:
                    figures[f"val_{metric}{suffix}"] = float(value)
        if self.task == "cyclegan":
            for metric in self.metrics:
                both = [figures[f"val_{metric}_{d}"] for d in DIRECTIONS if f"val_{metric}_{d}" in figures]
                if len(both) == 2:
                    figures[f"val_{metric}"] = float(np.mean(both))
        return ValidationScores(figures, record)


def _names(values) -> list[str]:
    return [str(v) for v in (values if isinstance(values, (list, tuple)) else [values])]


def _to_image(x: torch.Tensor) -> Image.Image:
    """(C, H, W) in [-1, 1] -> an 8-bit L or RGB image, rounded as the exported outputs are."""
    pixels = ((x.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    array = pixels.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def _translator(exported, device: torch.device, task: str, direction: str):
    """A Translator (float32) running ``exported`` exactly as its exported weights would run."""
    from img2img.models.networks import build_generator, use_per_image_batch_norm
    from img2img.models.weights import LoadedGenerator, WeightsMetadata
    from img2img.translate.translator import Translator

    net = build_generator(exported.config)
    net.load_state_dict({k: v.detach().to("cpu") for k, v in exported.state_dict.items()}, strict=True)
    net.eval()
    if not exported.eval_mode:
        use_per_image_batch_norm(net)
    metadata = WeightsMetadata(generator=exported.config, task=task, direction=direction, eval_mode=exported.eval_mode)
    return Translator(LoadedGenerator(net, metadata, "training"), device=device, precision="fp32")


def scorer_for(config, device: torch.device) -> ValidationScorer | None:
    """The scorer a training config asks for (``--val-metrics``), or None. Built before training
    starts: a missing extra or weights file is reported then, not at the first validation."""
    metrics = parse_metrics(config.val_metrics, config.task)
    if not metrics:
        return None
    return ValidationScorer(
        metrics, task=config.task, device=device,
        inception_weights=config.inception_weights, lpips_weights=config.lpips_weights,
    )  # fmt: skip


def check_validation_size(metrics: tuple[str, ...], val, *, task: str, val_size: int) -> None:
    """UsageError before training when the validation split ``val`` (the trainer's validation
    dataset, or None) holds too few images for ``metrics`` (metrics.MINIMUM_IMAGES), or none at
    all: otherwise the first validation, an epoch later, would fail or score nothing."""
    if not metrics:
        return
    if task == "cyclegan":
        fake = len(val.files_a) if val is not None else 0
        real = min(fake, len(val.files_b)) if val is not None else 0
        fake = min(fake, len(val.files_b)) if val is not None else 0  # both directions: the smaller domain
    else:
        fake = real = len(val) if val is not None else 0
    where = f"the validation split (--val-size {val_size})"
    if fake == 0:
        raise UsageError(
            f"--val-metrics {','.join(metrics)}: {where} has no images",
            hint="give --val-size 1 or more, or leave out --val-metrics",
        )
    M.check_image_counts(metrics, fake, real if set(metrics) & {"fid", "kid"} else None, where)
    needed = M.IS_MIN_PER_SPLIT * M.IS_SPLITS
    if "is" in metrics and fake < needed:  # eval notes it; an epoch's validation would score null every time
        raise UsageError(
            f"IS is not estimated on fewer than {needed} images ({M.IS_SPLITS} splits of {M.IS_MIN_PER_SPLIT}); {where} has {fake}",
            hint=f"give --val-size {needed} or more, or use --val-metrics fid or kid",
        )


class BestEpoch:
    """``--keep-best METRIC``: the best validation score so far and its epoch, kept in the
    checkpoint's info so that a resumed run goes on comparing with it. For CycleGAN the score
    is the mean over both directions (``val_fid``)."""

    def __init__(self, metric: str | None):
        self.metric = metric
        self.value: float | None = None
        self.epoch: int | None = None

    def update(self, figures: Mapping[str, float], epoch: int) -> bool:
        """Take this epoch's figures; True when they hold a new best."""
        if self.metric is None:
            return False
        value = figures.get(f"val_{self.metric}")
        if value is None or not np.isfinite(value) or not better(self.metric, value, self.value):
            return False
        self.value, self.epoch = float(value), epoch
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "epoch": self.epoch}

    def load(self, state: Mapping[str, Any] | None) -> None:
        if state and state.get("metric") == self.metric:
            self.value, self.epoch = state.get("value"), state.get("epoch")

    @staticmethod
    def keep(checkpoint, weights) -> list:
        """Copy the latest checkpoint to ``best.pt`` beside it and each weights file to
        ``best_NAME`` beside it (through temporary files: never half written)."""
        import shutil
        from pathlib import Path

        from img2img.files.atomic import atomic_path

        kept = []
        for source in [Path(checkpoint), *(Path(p) for p in weights)]:
            target = (
                source.with_name("best" + source.suffix)
                if source == Path(checkpoint)
                else source.with_name("best_" + source.name)
            )
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
            kept.append(target)
        return kept
