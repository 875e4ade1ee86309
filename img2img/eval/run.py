"""Running an evaluation: translate (when there is a model), extract features, score.

    from img2img.eval import Evaluator, EvalSettings
    evaluator = Evaluator(EvalSettings(metrics=("fid", "kid")))
    result = evaluator.compare_folders(fake=Path("out"), real=Path("testB"))

The CLI (img2img/cli/eval.py) and the trainers' validation both go through :class:`Evaluator`,
so scores mean the same wherever they are computed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from img2img import __version__
from img2img.errors import ImageError, OutOfMemory, UsageError, WeightsError
from img2img.eval import metrics as M
from img2img.eval.data import Comparison, pair_by_name, read_folder
from img2img.eval.features import FeatureSet, ImageItem, cached_extract, extract, read_item
from img2img.eval.inception import RESIZE_MODES, FIDInception
from img2img.eval.pretrained import ALEXNET, INCEPTION, FoundWeights, eval_cache_dir, find_weights, load_tensors
from img2img.files.imageio import naming

_SIZE_REASONS = {
    "ssim": "SSIM's 11x11 window",
    "lpips": "the smallest input of LPIPS' AlexNet, which does not resize",
}
_HIGH_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclass
class EvalSettings:
    """How to evaluate. ``metrics``: names from :data:`img2img.eval.metrics.ALL`, or None for
    every one the inputs allow. ``resize``: "tf1" (torch-fidelity, pytorch-fid) or "clean"
    (clean-fid). ``device``: for feature extraction and LPIPS (float32 always)."""

    metrics: tuple[str, ...] | None = None
    resize: str = "tf1"
    device: str = "auto"
    batch_size: int = 32
    inception_weights: str | None = None
    lpips_weights: str | None = None
    use_cache: bool = True
    # The options of the command running the evaluation (e.g. {"--batch-size", ...}), when it
    # is a command: hints of the shared translator that name another option are left out.
    options: frozenset[str] | None = None
    kid_subsets: int = M.KID_SUBSETS
    kid_subset_size: int = M.KID_SUBSET_SIZE
    is_splits: int = M.IS_SPLITS
    download: bool = True

    def __post_init__(self) -> None:
        if self.metrics is not None:
            unknown = [m for m in self.metrics if m not in M.ALL]
            if unknown:
                raise UsageError(f"unknown metric {unknown[0]!r}; valid: {', '.join(M.ALL)}")
            if not self.metrics:
                raise UsageError("--metrics names no metric")
        if self.resize not in RESIZE_MODES:
            raise UsageError(f"unknown --resize {self.resize!r}; valid: {', '.join(RESIZE_MODES)}")
        if self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")


@dataclass
class Hooks:
    """Where the evaluator reports: one line per failed input, progress in images."""

    error: Callable[[str], None] = lambda message: None
    advance: Callable[[int], None] = lambda n: None
    add_total: Callable[[int], None] = lambda n: None


@dataclass
class _Outcome:
    failures: int = 0  # inputs left out of the scores
    unsaved: int = 0  # translations scored but not written to --save-outputs
    kept: set[str] = field(default_factory=set)  # names whose saved output --skip-existing keeps
    skip_existing: bool = False
    notes: list[str] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)  # labels already reported: one line per file


class Evaluator:
    """Scores for translations. Networks and weights are found once and loaded on first use."""

    def __init__(self, settings: EvalSettings, hooks: Hooks | None = None):
        from img2img.runtime.devices import resolve_device

        self.settings = settings
        self.hooks = hooks or Hooks()
        self.device = resolve_device(settings.device)
        self._inception: FIDInception | None = None
        self._lpips: M.LPIPS | None = None
        self.inception_weights: FoundWeights | None = None
        self.lpips_weights: FoundWeights | None = None
        self._remembered: dict[str, FeatureSet] = {}  # real sets held in memory (training's validation)

    # -- weights, found before any work is done

    def find_weights(self, metrics: tuple[str, ...]) -> None:
        """Locate (or download) the weights ``metrics`` need, so that a missing file stops the
        run before any translation or training."""
        if set(metrics) & set(M.UNPAIRED) and self.inception_weights is None:
            self.inception_weights = find_weights(
                INCEPTION, self.settings.inception_weights, download=self.settings.download
            )
        if "lpips" in metrics and self.lpips_weights is None:
            self.lpips_weights = find_weights(ALEXNET, self.settings.lpips_weights, download=self.settings.download)

    @property
    def inception(self) -> FIDInception:
        if self._inception is None:
            self.find_weights(("fid",))
            assert self.inception_weights is not None
            path = self.inception_weights.path
            self._inception = FIDInception(
                load_tensors(path), path=path, device=self.device, resize=self.settings.resize
            )
        return self._inception

    @property
    def lpips(self) -> M.LPIPS:
        if self._lpips is None:
            self.find_weights(("lpips",))
            assert self.lpips_weights is not None
            path = self.lpips_weights.path
            tensors = load_tensors(path)
            linear = None if any(k.startswith("lin0.") for k in tensors) else load_tensors(M.lpips_linear_file())
            try:
                tensors = M.lpips_tensors(tensors, linear)
            except WeightsError as exc:
                raise WeightsError(f"{path}: not LPIPS AlexNet weights ({exc})") from None
            self._lpips = M.LPIPS(tensors, path=path, device=self.device)
        return self._lpips

    # -- the comparisons

    def metrics_for(self, comparison: Comparison) -> tuple[str, ...]:
        """The metrics to compute, in the canonical order: those asked for, or by default every
        one the inputs allow (FID, KID and IS with a real set; PSNR, SSIM and LPIPS with
        targets). With targets but no real set, an explicit FID or KID uses the targets as the
        real set. UsageError for a metric the inputs cannot give."""
        allowed = {"is"} | ({"fid", "kid"} if comparison.reals is not None or comparison.targets else set())
        allowed |= set(M.PAIRED) if comparison.targets is not None else set()
        if self.settings.metrics is None:
            default = set(M.PAIRED) if comparison.targets is not None else set()
            default |= set(M.UNPAIRED) if comparison.reals is not None else set()
            return tuple(m for m in M.ALL if m in default)
        missing = [m for m in self.settings.metrics if m not in allowed]
        if missing:
            need = (
                "a real set (--real, or --data)"
                if missing[0] in ("fid", "kid")
                else "targets (--target, or --data with a paired layout)"
            )
            raise UsageError(f"{missing[0]} needs {need}")
        return tuple(m for m in M.ALL if m in self.settings.metrics)

    def evaluate(
        self,
        comparison: Comparison,
        translator=None,
        *,
        save_outputs: Path | None = None,
        overwrite: bool = False,
        skip_existing: bool = False,
    ) -> dict:
        """Scores for one comparison, as a JSON-ready dict (see the README's eval section).

        ``save_outputs``: the translations are also written there as NAME.png. Outputs that
        exist are refused before any work (UsageError) unless ``overwrite`` (replaced) or
        ``skip_existing`` (kept; the translation is still scored). One that appears while the
        evaluation runs is an error line counted in ``samples["unsaved"]``; its translation is
        still scored (``samples["failed"]`` counts only inputs left out of the scores).

        A file that cannot be read or converted is reported once through ``hooks.error`` (one
        line naming it), counted in ``samples["failed"]`` and left out; the others are scored.
        Raises OutOfMemory (one line, no allocator internals) when the work does not fit in
        memory; the CLI adds which option to lower."""
        from img2img.runtime.devices import is_out_of_memory

        try:
            return self._evaluate(
                comparison, translator, save_outputs=save_outputs, overwrite=overwrite, skip_existing=skip_existing
            )
        except Exception as exc:  # noqa: BLE001 -- only out-of-memory is translated, the rest re-raised
            if not is_out_of_memory(exc):
                raise
            raise OutOfMemory(
                f"out of memory measuring {comparison.label} on {self.device}{_allocation(exc)}"
            ) from None

    def _evaluate(
        self, comparison: Comparison, translator, *, save_outputs: Path | None, overwrite: bool, skip_existing: bool
    ) -> dict:
        metrics = self.metrics_for(comparison)
        self._check_counts(comparison, metrics)
        self.find_weights(metrics)
        outcome = _Outcome(skip_existing=skip_existing)
        if save_outputs is not None and translator is not None and not overwrite:
            _check_save_outputs(comparison, save_outputs, skip_existing, outcome)
        for label, message in comparison.unmatched:
            self._fail(outcome, message, label)
        started = time.perf_counter()
        fakes, gray = self._fakes(comparison, translator, save_outputs, outcome, replace=overwrite)
        scores: dict = {}
        samples: dict = {"fake": len(fakes)}
        cache: dict = {}
        if set(metrics) & set(M.UNPAIRED):
            fake_set = self._features(fakes, outcome, cacheable=translator is None)
            samples["fake"] = len(fake_set)
            cache["fake"] = fake_set.cache
            if "is" in metrics:
                scores["is"] = M.inception_score(fake_set.logits, splits=self.settings.is_splits)
                if "note" in scores["is"]:
                    outcome.notes.append(scores["is"]["note"])
            if {"fid", "kid"} & set(metrics):
                reals = comparison.reals
                if reals is None:  # explicit FID/KID with only targets: they are the real set
                    assert comparison.targets is not None
                    reals = list(comparison.targets.values())
                real_set = self._features(reals, outcome, cacheable=True, remember=True)
                samples["real"] = len(real_set)
                cache["real"] = real_set.cache
                if "fid" in metrics:
                    scores["fid"] = M.fid(fake_set.pool, real_set.pool)
                    if "note" in scores["fid"]:
                        outcome.notes.append(scores["fid"]["note"])
                if "kid" in metrics:
                    scores["kid"] = M.kid(
                        fake_set.pool,
                        real_set.pool,
                        subsets=self.settings.kid_subsets,
                        subset_size=self.settings.kid_subset_size,
                    )
                    if "note" in scores["kid"]:
                        outcome.notes.append(scores["kid"]["note"])
        if set(metrics) & set(M.PAIRED):
            assert comparison.targets is not None
            paired = self._paired(fakes, comparison.targets, metrics, gray, outcome)
            scores.update(paired.summary(metrics))
            samples["pairs"] = len(paired.psnr or paired.ssim or paired.lpips)
        samples["failed"] = outcome.failures
        if save_outputs is not None and translator is not None:
            samples["unsaved"] = outcome.unsaved
        return {
            "label": comparison.label,
            "direction": comparison.direction,
            "inputs": comparison.described,
            "metrics": list(metrics),
            "scores": {k: _json_safe(v) for k, v in scores.items()},
            "samples": samples,
            "settings": self._settings(metrics, cache, gray),
            "notes": outcome.notes,
            "seconds": round(time.perf_counter() - started, 3),
            "img2img_version": __version__,
        }

    # -- folders without a model

    def compare_folders(self, *, fake: Path, real: Path | None = None, target: Path | None = None) -> dict:
        """``--fake DIR`` against ``--real DIR`` and/or ``--target DIR``."""
        comparison = folder_comparison(fake=fake, real=real, target=target)
        return self.evaluate(comparison)

    # -- internals

    @staticmethod
    def _check_counts(comparison: Comparison, metrics: tuple[str, ...]) -> None:
        """Too few images for FID, KID or IS: a usage error before anything is translated or
        read (metrics.MINIMUM_IMAGES)."""
        fakes = comparison.fakes if comparison.fakes is not None else comparison.inputs
        reals = comparison.reals if comparison.reals is not None else comparison.targets
        M.check_image_counts(metrics, len(fakes or ()), None if reals is None else len(reals), comparison.label.strip())

    def _own_words(self, error: Exception) -> str:
        """``error`` as this command can say it: a hint naming an option the command does not
        have (the translator's "try a smaller --tile" under `eval`) is left out."""
        hint = getattr(error, "hint", None)
        if hint and self.settings.options is not None:
            import re

            named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", hint))
            if not named <= self.settings.options:
                return getattr(error, "message", str(error))
        return str(error)

    def _fail(self, outcome: _Outcome, message: str, label: str | None = None) -> None:
        """Report one failed input, once: a file that fails on the Inception path and again in
        the paired scores is one line and one count."""
        if label is not None:
            if label in outcome.failed:
                return
            outcome.failed.add(label)
        outcome.failures += 1
        self.hooks.error(message)

    def _fakes(
        self, comparison: Comparison, translator, save_outputs: Path | None, outcome: _Outcome, *, replace: bool = False
    ) -> tuple[list[ImageItem], bool | None]:
        if translator is None:
            assert comparison.fakes is not None
            return comparison.fakes, None
        assert comparison.inputs is not None
        gray = translator.config.output_nc == 1
        self.hooks.add_total(len(comparison.inputs))
        inputs = {i: item for i, item in enumerate(comparison.inputs)}

        def decoded():
            for index, item in inputs.items():
                try:
                    yield index, translator.to_input(read_item(item))
                except ImageError as exc:
                    self._fail(outcome, self._own_words(naming(item.label, exc)), item.label)
                    self.hooks.advance(1)

        results: dict[int, ImageItem] = {}
        for result in translator.translate_stream(decoded(), batch_size=self.settings.batch_size):
            item = inputs[result.key]
            self.hooks.advance(1)
            if result.error is not None:
                self._fail(outcome, f"{item.label}: {self._own_words(result.error)}", item.label)
                continue
            name = item.name or Path(item.label).name
            if save_outputs is not None and name not in outcome.kept:
                from img2img.errors import OutputExistsError
                from img2img.files.imageio import write_image

                try:
                    write_image(result.image, _saved_name(save_outputs, name), replace=replace)
                except OutputExistsError as exc:  # appeared since the check (another process?)
                    if not outcome.skip_existing:
                        outcome.unsaved += 1
                        self.hooks.error(f"{exc}; not saved (still scored)")
                except ImageError as exc:  # not written, but translated: it is still scored
                    outcome.unsaved += 1
                    self.hooks.error(f"{exc}; not saved (still scored)")
            results[result.key] = ImageItem(f"{item.label} (translated)", image=result.image, name=name)
        return [results[i] for i in sorted(results)], gray

    def _features(
        self, items: list[ImageItem], outcome: _Outcome, *, cacheable: bool, remember: bool = False
    ) -> FeatureSet:
        """Features of ``items``: files through the disk cache when ``cacheable``; images in
        memory kept for the life of this evaluator when ``remember`` (a validation set)."""
        self.hooks.add_total(len(items))
        cacheable = cacheable and self.settings.use_cache and all(item.path is not None for item in items)
        errors = lambda label, message: self._fail(outcome, message, label)  # noqa: E731
        if cacheable:
            assert self.inception_weights is not None
            import os

            from img2img.files.imageio import MAX_PIXELS_ENV

            # The pixel limit decides which files are read at all, so it is part of the key.
            settings = {"resize": self.settings.resize, "inception_sha256": self.inception_weights.sha256,
                        "max_pixels": os.environ.get(MAX_PIXELS_ENV) or "default"}  # fmt: skip
            found = cached_extract(
                items, _Lazy(lambda: self.inception), settings, eval_cache_dir(), batch_size=self.settings.batch_size,
                on_error=errors, on_done=self.hooks.advance, on_note=outcome.notes.append,
            )  # fmt: skip
        elif remember:
            key = _memory_key(items, self.settings.resize)
            if key not in self._remembered:  # progress (and a stop request) checked per batch
                self._remembered[key] = extract(
                    items,
                    self.inception,
                    batch_size=self.settings.batch_size,
                    on_error=errors,
                    on_done=self.hooks.advance,
                )
            else:
                self.hooks.advance(len(items))
            found = self._remembered[key]
        else:
            found = extract(
                items, self.inception, batch_size=self.settings.batch_size, on_error=errors, on_done=self.hooks.advance
            )
        return found

    def _paired(
        self,
        fakes: list[ImageItem],
        targets: dict[str, ImageItem],
        metrics: tuple[str, ...],
        gray: bool | None,
        outcome: _Outcome,
    ) -> M.PairedScores:
        scores = M.PairedScores([], [], [])
        limits = M.paired_size_limits(metrics)
        too_small = dict.fromkeys(limits, 0)  # metric -> pairs below its smallest side
        self.hooks.add_total(len(fakes))
        for fake in fakes:
            target = targets.get(fake.name or fake.label)
            self.hooks.advance(1)
            if target is None:
                continue  # reported as unmatched already
            try:
                a_image, b_image = read_item(fake), read_item(target)
            except ImageError as exc:
                self._fail(outcome, str(exc), fake.label if str(exc).startswith(f"{fake.label}:") else target.label)
                continue
            if a_image.size != b_image.size:
                self._fail(
                    outcome,
                    f"{fake.label}: {a_image.size[0]}x{a_image.size[1]}, but its target {target.label} is {b_image.size[0]}x{b_image.size[1]}; left out of the paired scores",
                )
                continue
            one_channel = gray if gray is not None else (a_image.mode in _GRAY_MODES and b_image.mode in _GRAY_MODES)
            try:
                a = _unit_float(a_image, one_channel)
            except ImageError as exc:  # NaN pixels of a float TIFF: this pair only
                self._fail(outcome, f"{naming(fake.label, exc)}; left out of the paired scores", fake.label)
                continue
            try:
                b = _unit_float(b_image, one_channel)
            except ImageError as exc:
                self._fail(outcome, f"{naming(target.label, exc)}; left out of the paired scores", target.label)
                continue
            # A pair smaller than a metric's smallest side is left out of that metric only.
            fits = {m: min(a.shape[:2]) >= side for m, side in limits.items()}
            for m, ok in fits.items():
                too_small[m] += not ok
            ssim_value = lpips_value = None
            try:
                if "ssim" in metrics and fits["ssim"]:
                    ssim_value = M.ssim(a, b)
                if "lpips" in metrics and fits["lpips"]:
                    lpips_value = self.lpips(a, b)
            except (ValueError, RuntimeError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self._fail(outcome, f"{fake.label}: {reason[:200]}; left out of the paired scores")
                continue
            if "psnr" in metrics:
                scores.psnr.append(M.psnr(a, b))
            if ssim_value is not None:
                scores.ssim.append(ssim_value)
            if lpips_value is not None:
                scores.lpips.append(lpips_value)
        for metric, count in too_small.items():
            if count:
                outcome.notes.append(
                    f"{metric.upper()}: {count} pair{'s' if count != 1 else ''} smaller than "
                    f"{limits[metric]}x{limits[metric]} pixels left out of {metric.upper()} only "
                    f"({_SIZE_REASONS[metric]})"
                )
        return scores

    def _settings(self, metrics: tuple[str, ...], cache: dict, gray: bool | None) -> dict:
        out: dict = {"device": str(self.device), "dtype": "float32", "batch_size": self.settings.batch_size}
        if set(metrics) & set(M.UNPAIRED):
            assert self.inception_weights is not None
            out["inception"] = {
                "network": "FID Inception v3 (pt_inception-2015-12-05), torch-fidelity's architecture",
                "resize": {"tf1": "tf1: bilinear like TensorFlow 1.x (torch-fidelity, pytorch-fid)",
                           "clean": "clean: PIL bicubic per channel in float before quantisation (clean-fid)"}[self.settings.resize],
                "weights": self.inception_weights.to_dict(),
                "feature_cache": cache,
            }  # fmt: skip
            if not self.inception_weights.standard:
                out["inception"]["warning"] = "not the published weights: scores are not comparable with published ones"
        if "lpips" in metrics and self.lpips_weights is not None:
            out["lpips_weights"] = self.lpips_weights.to_dict()
        if set(metrics) & set(M.PAIRED):
            out["paired_channels"] = (
                "model's (1: gray, 3: RGB)" if gray is not None else "gray when both images are gray, else RGB"
            )
        return out


def _saved_name(save_outputs: Path, name: str) -> Path:
    """Where --save-outputs keeps the translation of the input named ``name``."""
    return save_outputs / Path(name).with_suffix(".png")


def _check_save_outputs(comparison: Comparison, save_outputs: Path, skip_existing: bool, outcome: _Outcome) -> None:
    """Before any translation: outputs that exist are kept with ``skip_existing`` (noted), else
    refused in one line naming the first and how many."""
    from img2img.errors import exists_advice, exists_message

    names = [item.name or Path(item.label).name for item in comparison.inputs or []]
    existing = [name for name in names if _saved_name(save_outputs, name).exists()]
    if not existing:
        return
    if skip_existing:
        outcome.kept.update(existing)
        outcome.notes.append(
            f"--save-outputs {save_outputs}: kept {len(existing)} outputs already there (still scored)"
        )
        return
    first = _saved_name(save_outputs, existing[0])
    if len(existing) == 1:
        raise UsageError(f"--save-outputs: {exists_message(first)}")
    raise UsageError(
        f"--save-outputs: {first} and {len(existing) - 1} more of the {len(names)} outputs already exist"
        + exists_advice(what="them")
    )


class _Lazy:
    """The Inception, built only when a feature is not in the cache."""

    def __init__(self, build: Callable[[], FIDInception]):
        self._build = build

    def prepare(self, image):
        return self._build().prepare(image)

    def features(self, images):
        return self._build().features(images)


def folder_comparison(*, fake: Path, real: Path | None, target: Path | None) -> Comparison:
    """The comparison of ``--fake`` with ``--real`` and/or ``--target`` folders."""
    fakes = read_folder(fake, "--fake")
    reals = read_folder(real, "--real") if real is not None else None
    targets, unmatched = (None, [])
    if target is not None:
        targets, unmatched = pair_by_name(fakes, read_folder(target, "--target"), "--fake", "--target")
    described = {"fake": str(fake), "real": str(real) if real else None, "target": str(target) if target else None}
    label = f"{fake}/ vs " + " and ".join(f"{p}/" for p in (real, target) if p is not None)
    return Comparison(
        label=label,
        fakes=fakes,
        reals=reals,
        targets=targets,
        unmatched=unmatched,
        described={k: v for k, v in described.items() if v},
    )


def _memory_key(items: list[ImageItem], resize: str) -> str:
    import hashlib

    digest = hashlib.sha256(resize.encode())
    for item in items:
        digest.update(f"\n{item.name}|{item.path}|{item.half}".encode())
        if item.image is not None:
            digest.update(f"{item.image.mode}{item.image.size}".encode())
            digest.update(item.image.tobytes())
    return digest.hexdigest()


def _unit_float(image: Image.Image, gray: bool) -> np.ndarray:
    """float64 [0, 1] (H, W) for gray, (H, W, 3) for RGB (alpha dropped, as the Inception sees
    it), through the project's decoder (img2img.files.imageio). Raises ImageError (without the file's
    name) for NaN pixels or a mode that cannot be converted."""
    from img2img.files.imageio import to_8bit, to_model_input

    channels = 1 if gray else 3
    if image.mode in _HIGH_BIT_MODES:  # 16-bit and float gray: the project's scaling to [0, 1]
        pixels = to_model_input(image, channels).pixels.astype(np.float64)
        return pixels[:, :, 0] if gray else pixels
    # 8-bit data divided in float64, so that PSNR is exact for known differences.
    return np.asarray(to_8bit(image, channels), dtype=np.float64) / 255.0


def _allocation(exc: BaseException) -> str:
    """ ", an allocation of 5.1 GiB failed" from an allocator's message, when it says the size."""
    import re

    from img2img.files.imageio import format_bytes

    found = re.search(r"tried to allocate (\d+) bytes", str(exc), re.IGNORECASE)
    if found:
        return f", an allocation of {format_bytes(int(found.group(1)))} failed"
    found = re.search(r"tried to allocate ([\d.]+ ?[KMGT]i?B)", str(exc), re.IGNORECASE)
    return f", an allocation of {found.group(1)} failed" if found else ""


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
