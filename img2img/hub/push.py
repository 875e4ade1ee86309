"""`img2img push MODEL_OR_RUN --repo OWNER/NAME`: a trained model on the Hugging Face Hub, with
a model card.

What is pushed (``build_folder``):

- ``model.safetensors``: the generator, with its img2img metadata, unchanged (so that
  ``translate --model hf:OWNER/NAME`` gives the same bytes as the local file). From a CycleGAN
  run, the run's other direction as well, ``model_BtoA.safetensors`` (or ``model_AtoB``);
- ``README.md``: a card made with huggingface_hub's ``ModelCard``/``ModelCardData``: task,
  architecture, dataset, the training options, the validation scores the run measured (the
  last epoch's ``val_*`` figures of metrics.csv and the ``--val-metrics`` scores in the
  weights' metadata) as ``model-index`` eval results, the sample grid, the licence and the
  exact ``img2img translate`` lines;
- ``sample.png`` (the last epoch's sample grid) and ``training_config.json`` (the run's
  config.json), when the source is a run folder.

The upload is huggingface_hub's (``HfApi.create_repo``, ``create_branch``, ``upload_folder``)
and so is the token (``HF_TOKEN`` or ``hf auth login``): no client code of ours.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from img2img.errors import Img2ImgError, OutputError, PushError, UsageError, exists_message, first_line

_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
MAIN_FILE = "model.safetensors"


@dataclass
class PushSource:
    """What a model or run folder gives to push: weights files by direction (the main one
    first), the scores measured, the sample grid, the run's config and the dataset's licence."""

    weights: dict[str, Path]
    task: str
    architecture: str
    scores: dict[str, float] = field(default_factory=dict)
    epoch: int | None = None
    sample: Path | None = None
    config: Path | None = None
    dataset: str = ""
    dataset_licence: str = ""


def read_source(spec: str) -> PushSource:
    """A run folder (config.json + weights/) or a model (a weights file or a model name) ->
    PushSource. Raises UsageError for a run folder without exported weights, and what
    ``resolve_model``/``read_metadata`` raise for a model."""
    from img2img.models.weights import read_metadata

    path = Path(spec)
    if path.is_dir():
        config_file = path / "config.json"
        weights = sorted((path / "weights").glob("*.safetensors")) if (path / "weights").is_dir() else []
        if not config_file.is_file() or not weights:
            raise UsageError(f"{path}: not a finished training run (no config.json or no weights/*.safetensors)")
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{config_file}: cannot read ({exc})") from None
        by_direction = {}
        for file in weights:
            by_direction[read_metadata(file).direction] = file
        main = (
            config.get("direction", "AtoB")
            if config.get("direction", "AtoB") in by_direction
            else next(iter(by_direction))
        )
        ordered = {main: by_direction[main], **{d: f for d, f in by_direction.items() if d != main}}
        meta = read_metadata(ordered[main])
        # The scores of the epoch the weights come from (--keep-best may export an earlier one).
        weights_epoch = meta.validation.get("epoch") if isinstance(meta.validation, dict) else None
        scores, epoch = _run_scores(path / "metrics.csv", weights_epoch if isinstance(weights_epoch, int) else None)
        scores.update(_metadata_scores(meta.validation, meta.task))
        samples = sorted((path / "samples").glob("epoch_*.png")) if (path / "samples").is_dir() else []
        data = Path(str(config.get("data", "")))
        dataset, licence = data.name, ""
        manifest = data / "img2img-dataset.json"
        if manifest.is_file():
            try:
                info = json.loads(manifest.read_text(encoding="utf-8"))
                dataset, licence = str(info.get("name", dataset)), str(info.get("licence", ""))
            except (OSError, ValueError):
                pass
        return PushSource(
            weights=ordered, task=meta.task, architecture=meta.generator.reference_name, scores=scores,
            epoch=epoch, sample=samples[-1] if samples else None, config=config_file,
            dataset=dataset, dataset_licence=licence,
        )  # fmt: skip
    from img2img.hub.registry import resolve_model

    file = resolve_model(spec)
    meta = read_metadata(file)
    return PushSource(
        weights={meta.direction: file}, task=meta.task, architecture=meta.generator.reference_name,
        scores=_metadata_scores(meta.validation, meta.task),
        epoch=meta.validation.get("epoch") if isinstance(meta.validation, dict) else None,
    )  # fmt: skip


def _run_scores(metrics: Path, epoch: int | None = None) -> tuple[dict[str, float], int | None]:
    """The ``val_*`` figures of metrics.csv's row for ``epoch`` (default: the last epoch row),
    and that epoch."""
    try:
        with open(metrics, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("scope") == "epoch"]
    except OSError:
        return {}, None
    if epoch is not None:
        rows = [row for row in rows if row.get("epoch") == str(epoch)]
    if not rows:
        return {}, None
    last = rows[-1]
    scores = {}
    for key, value in last.items():
        if key and key.startswith("val_") and value not in (None, ""):
            try:
                scores[key] = float(value)
            except ValueError:
                pass
    found = int(last["epoch"]) if str(last.get("epoch", "")).isdigit() else None
    return scores, found


def _metadata_scores(validation: Any, task: str) -> dict[str, float]:
    """The ``--val-metrics`` scores stored in the weights' metadata
    (``{"epoch", "directions": {DIRECTION: {"scores": {METRIC: {"value"...}}}}}``, written by
    training), named as metrics.csv names them: ``val_METRIC`` (pix2pix), ``val_METRIC_DIRECTION``
    (CycleGAN)."""
    if not isinstance(validation, dict) or not isinstance(validation.get("directions"), dict):
        return {}
    scores = {}
    for direction, record in validation["directions"].items():
        metrics = record.get("scores") if isinstance(record, dict) else None
        for metric, result in (metrics or {}).items():
            value = result.get("value") if isinstance(result, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                suffix = f"_{direction}" if task == "cyclegan" else ""
                scores[f"val_{metric}{suffix}"] = float(value)
    return scores


def repo_files(source: PushSource) -> dict[str, Path]:
    """Repo file name -> local file: the main direction as model.safetensors, others as
    model_DIRECTION.safetensors."""
    files = {}
    for i, (direction, path) in enumerate(source.weights.items()):
        files[MAIN_FILE if i == 0 else f"model_{direction}.safetensors"] = path
    return files


def translate_lines(repo: str, revision: str | None, source: PushSource) -> list[str]:
    at = f"@{revision}" if revision else ""
    lines = []
    for name in repo_files(source):
        spec = f"hf:{repo}{at}" if name == MAIN_FILE else f"hf:{repo}{at}/{name}"
        lines.append(f"img2img translate INPUT... --model {spec} --out-dir OUT")
    return lines


def model_card(source: PushSource, repo: str, revision: str | None, licence: str):  # -> ModelCard
    """The card: ``ModelCardData`` (library, licence, tags, datasets, model-index eval results)
    and a text saying what the model is, how it was trained and how to run it."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    dataset = source.dataset or "unknown"
    results = [
        EvalResult(
            task_type="image-to-image",
            task_name="Image-to-image translation",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="val",
            metric_type=name,
            metric_name=name,
            metric_value=round(value, 6),
        )
        for name, value in sorted(source.scores.items())
    ]
    data = ModelCardData(
        library_name="img2img", license=licence, pipeline_tag="image-to-image",
        tags=["image-to-image", source.task, "gan", source.architecture],
        model_name=repo.split("/", 1)[1], eval_results=results or None,
    )  # fmt: skip
    directions = ", ".join(
        f"`{name}` ({direction})" for (name, _), direction in zip(repo_files(source).items(), source.weights)
    )
    options = ""
    if source.config is not None:
        config = json.loads(source.config.read_text(encoding="utf-8"))
        keep = ("netg", "ngf", "netd", "ndf", "norm", "gan_mode", "lr", "batch_size", "n_epochs", "n_epochs_decay",
                "load_size", "crop_size", "preprocess", "direction", "lambda_l1", "lambda_a", "lambda_b",
                "lambda_identity", "seed")  # fmt: skip
        options = "\n".join(f"| `{k}` | `{config[k]}` |" for k in keep if k in config)
        options = f"\n## Training options\n\n| option | value |\n|---|---|\n{options}\n\nAll of them: `training_config.json`.\n"
    scores = "\n".join(f"| {name} | {value:.4g} |" for name, value in sorted(source.scores.items()))
    epoch = f" (epoch {source.epoch})" if source.epoch is not None else ""
    scores = (
        f"\n## Scores\n\nMeasured on the validation split during training{epoch}:\n\n| metric | value |\n|---|---|\n{scores}\n"
        if scores
        else ""
    )
    sample = "\n## Samples\n\n![validation samples](sample.png)\n" if source.sample else ""
    licence_note = f"\nDataset licence note: {source.dataset_licence}\n" if source.dataset_licence else ""
    usage = "\n".join(translate_lines(repo, revision, source))
    text = f"""
# {repo.split("/", 1)[1]}

A {source.task} generator (`{source.architecture}`) trained with
img2img on {dataset}. Files: {directions}.

## Use

```bash
pip install img2img
{usage}
```
{scores}{sample}{options}
## Licence

Weights: {licence}.{licence_note}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{text}")


def build_folder(
    spec: str,
    repo: str,
    folder: Path,
    *,
    revision: str | None = None,
    licence: str = "other",
    overwrite: bool = False,
) -> PushSource:
    """Write what would be pushed into ``folder``, built aside and moved into place. A folder
    that exists is refused (UsageError naming --overwrite and --skip-existing, before any work)
    unless ``overwrite``: then it is replaced once the new one is complete. Raises UsageError
    (a bad repo id, the folder exists) and read_source's errors."""
    from img2img.data.fetch import temporary_folder
    from img2img.files.atomic import rename_no_replace

    check_repo(repo)
    if folder.exists() and not overwrite:
        raise UsageError(exists_message(folder))
    source = read_source(spec)
    with temporary_folder(folder.parent, what="the --dry-run folder", error=OutputError) as staging:
        for name, path in repo_files(source).items():
            shutil.copyfile(path, staging / name)
        if source.sample is not None:
            shutil.copyfile(source.sample, staging / "sample.png")
        if source.config is not None:
            shutil.copyfile(source.config, staging / "training_config.json")
        model_card(source, repo, revision, licence).save(staging / "README.md")
        if overwrite and folder.exists():
            # The old folder goes aside first, then the new one in: never a half-written folder.
            with temporary_folder(folder.parent, what="the --dry-run folder", error=OutputError) as old:
                folder.rename(old / "replaced")
                try:
                    rename_no_replace(staging, folder)
                except BaseException:
                    (old / "replaced").rename(folder)  # the old folder back, as it was
                    raise
            return source
        try:
            rename_no_replace(staging, folder)
        except FileExistsError:
            raise UsageError(exists_message(folder)) from None
    return source


def check_repo(repo: str) -> None:
    if not _REPO.fullmatch(repo):
        raise UsageError(f"--repo {repo!r}: expected OWNER/NAME (letters, digits, '-', '_', '.')")


def push(spec: str, repo: str, *, private: bool = False, revision: str | None = None, licence: str = "other") -> str:
    """Build the folder and upload it with huggingface_hub; returns the commit URL. Raises
    PushError: no token (HF_TOKEN, `hf auth login`), a token the Hub refuses, no connection."""
    import tempfile

    from huggingface_hub import HfApi, get_token
    from huggingface_hub import errors as hf

    from img2img.files.downloads import is_offline, offline_variable

    check_repo(repo)
    if is_offline():
        raise PushError(
            f"push to {repo}: offline ({offline_variable()} is set); unset it, or write the folder with --dry-run DIR"
        )
    token = get_token()
    if not token:
        raise PushError(
            f"push to {repo}: no Hugging Face token: set HF_TOKEN to a token with write access "
            "(huggingface.co/settings/tokens) or run `hf auth login`"
        )
    with tempfile.TemporaryDirectory(prefix="img2img-push.") as tmp:
        folder = Path(tmp) / "repo"
        build_folder(spec, repo, folder, revision=revision, licence=licence)
        api = HfApi(token=token, library_name="img2img")
        try:
            # None, not False: without --private the account's or organisation's default applies.
            api.create_repo(repo, private=True if private else None, exist_ok=True, repo_type="model")
            if revision:
                api.create_branch(repo, branch=revision, exist_ok=True, repo_type="model")
            info = api.upload_folder(
                repo_id=repo, folder_path=folder, revision=revision, repo_type="model",
                commit_message=f"img2img push of {Path(spec).name}",
            )  # fmt: skip
        except hf.HfHubHTTPError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403):
                raise PushError(
                    f"push to {repo}: the Hub refused the token (HTTP {status}): use a token with "
                    "write access to this repo (HF_TOKEN, or `hf auth login`)"
                ) from None
            raise PushError(f"push to {repo}: the Hub answered {first_line(exc)}") from None
        except (OSError, ValueError) as exc:
            raise PushError(f"push to {repo}: cannot reach the Hub ({first_line(exc)})") from None
        except Exception as exc:  # the HTTP client's connection errors (its own types)
            if isinstance(exc, Img2ImgError):
                raise
            raise PushError(f"push to {repo}: cannot reach the Hub ({first_line(exc)})") from None
    return str(getattr(info, "commit_url", "") or f"https://huggingface.co/{repo}")


def card_scores(spec: str) -> tuple[dict[str, float], str | None]:
    """The model-index scores of the card (README.md) of an ``hf:`` spec's repo, and None; or
    no scores and why there are none. The card is read from the Hugging Face cache, fetched
    (a few kB) when it is not there and the process is not offline."""
    from huggingface_hub import ModelCard

    from img2img.files import downloads
    from img2img.hub.registry import parse_hf_spec

    repo, _, revision = parse_hf_spec(spec)
    try:
        path = downloads.hf_file(
            repo, "README.md", revision, label=spec, download=not downloads.is_offline(),
            force=False, progress=False,
        )  # fmt: skip
    except Img2ImgError as exc:
        return {}, exc.message.removeprefix(f"{spec}: ")
    if path is None:
        return {}, "the card is not in the Hugging Face cache (offline)"
    try:
        card = ModelCard.load(path)
    except Exception as exc:  # the library's YAML/validation errors: a card we cannot read
        return {}, f"unreadable card ({first_line(exc)})"
    results = getattr(card.data, "eval_results", None) or []
    return {
        str(r.metric_type): r.metric_value for r in results
    }, None if results else "the card has no model-index scores"


__all__ = [
    "PushError",
    "PushSource",
    "build_folder",
    "card_scores",
    "model_card",
    "push",
    "read_source",
    "repo_files",
    "translate_lines",
]
