"""`img2img eval`: FID, KID and IS against a real set; PSNR, SSIM and LPIPS against targets.

The command checks which inputs go together, builds the comparisons (img2img.eval.data), runs
them through img2img.eval.Evaluator (translating with the same Translator and image decoding
as `translate`), and prints a table, or one JSON object with --json. Inputs that cannot be read
are reported one line each on stderr and left out; the exit code is then 1.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from img2img.cli._app import app
from img2img.cli._options import MaxPixelsOpt, check_existing_options, overwrite_option, skip_existing_option

_HELP = "\n\n".join(
    (
        "Measure translations: FID, KID and IS against a real set; PSNR, SSIM and LPIPS against "
        "targets paired by relative name.",
        "Forms: --model M --input DIR --real DIR [--target DIR] (translate, then compare); "
        "--model M --data DATASET [--split S] (pix2pix layouts: A->B vs B, paired and unpaired; "
        "CycleGAN layout: testA-> vs testB, or testB-> vs testA for a BtoA model; give --model "
        "twice for both directions); --fake DIR --real DIR (FID, KID, IS of images made "
        "elsewhere); --fake DIR --target DIR (PSNR, SSIM, LPIPS).",
        "Exit status: 0 all measured; 1 some input could not be read (one line on stderr each, "
        "left out and counted); 2 usage error.",
    )
)


class ResizeChoice(str, Enum):
    tf1 = "tf1"
    clean = "clean"


@app.command("eval", help=_HELP)
def eval_(
    model: Optional[List[str]] = typer.Option(
        None, "--model", "-m", help="A weights file or a model name (twice: both CycleGAN directions with --data)."
    ),
    input_dir: Optional[Path] = typer.Option(None, "--input", help="Images to translate with --model."),
    real: Optional[Path] = typer.Option(None, "--real", help="The real images of the target domain (FID, KID)."),
    fake: Optional[Path] = typer.Option(None, "--fake", help="Translations made elsewhere."),
    target: Optional[Path] = typer.Option(
        None, "--target", help="Ground truth paired with the fakes/inputs by relative name (PSNR, SSIM, LPIPS)."
    ),
    data: Optional[Path] = typer.Option(None, "--data", help="A dataset folder in a training layout (with --model)."),
    split: Optional[str] = typer.Option(None, "--split", help="With --data: the split (default val, else test)."),
    metrics: Optional[str] = typer.Option(
        None, "--metrics", help="Comma-separated: fid,kid,is,psnr,ssim,lpips (default: what the inputs allow)."
    ),
    resize: ResizeChoice = typer.Option(
        ResizeChoice.tf1, "--resize", help="tf1: torch-fidelity/pytorch-fid's resize; clean: clean-fid's."
    ),
    inception_weights: Optional[Path] = typer.Option(
        None, "--inception-weights", help="The FID Inception weights file."
    ),
    lpips_weights: Optional[Path] = typer.Option(
        None, "--lpips-weights", help="LPIPS weights: torchvision's AlexNet file, or a full LPIPS state dict."
    ),
    save_outputs: Optional[Path] = typer.Option(None, "--save-outputs", help="Keep the translations here (PNG)."),
    overwrite: Annotated[bool, overwrite_option("Replace --save-outputs files that exist.")] = False,
    skip_existing: Annotated[
        bool,
        skip_existing_option(
            "Keep --save-outputs files that exist (their translations are still scored) and write the missing ones."
        ),
    ] = False,
    device: str = typer.Option("auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", help="The generator's precision (features are always float32)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per Inception (and generator) batch."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the feature cache."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or notes (errors are still shown)."),
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Measure translations; see the help text above."""
    from img2img.errors import OutOfMemory
    from img2img.eval.run import EvalSettings, Evaluator, Hooks

    models = list(model or [])
    check_existing_options(overwrite, skip_existing)
    _check_forms(models, input_dir, real, fake, target, data, split, save_outputs)
    if (overwrite or skip_existing) and save_outputs is None:
        from img2img.errors import UsageError

        raise UsageError(f"{'--overwrite' if overwrite else '--skip-existing'} goes with --save-outputs DIR")
    settings = EvalSettings(
        metrics=_parse_metrics(metrics), resize=resize.value, device=device, batch_size=batch_size,
        inception_weights=str(inception_weights) if inception_weights else None,
        lpips_weights=str(lpips_weights) if lpips_weights else None, use_cache=not no_cache,
        options=_options_of_this_command(),
    )  # fmt: skip
    if max_pixels is not None:
        from img2img.files.imageio import use_max_pixels

        use_max_pixels(max_pixels)  # every reader of this run, the cache key included
    reporter = _Reporter(show_progress=not quiet and sys.stderr.isatty())
    evaluator = Evaluator(settings, Hooks(error=reporter.error, advance=reporter.advance, add_total=reporter.add_total))
    results = []
    try:
        with reporter.progress():
            for comparison, translator in _plan(models, input_dir, real, fake, target, data, split, device, precision):
                out_dir = None
                if save_outputs is not None and translator is not None:
                    out_dir = (
                        save_outputs / comparison.direction
                        if len(models) > 1 and comparison.direction
                        else save_outputs
                    )
                result = evaluator.evaluate(
                    comparison, translator, save_outputs=out_dir, overwrite=overwrite, skip_existing=skip_existing
                )
                if translator is not None:
                    result["model"] = {"path": str(translator.path), "task": translator.metadata.task,
                                       "direction": translator.metadata.direction, "precision": translator.precision}  # fmt: skip
                results.append(result)
    except OutOfMemory as exc:
        hint = (f"lower --batch-size (now {batch_size}), e.g. --batch-size {max(1, batch_size // 4)}" if batch_size > 1
                else "--batch-size is already 1: free memory, or use a machine with more")  # fmt: skip
        raise OutOfMemory(exc.message, hint=hint) from None
    failed = sum(r["samples"]["failed"] for r in results)
    unsaved = sum(r["samples"].get("unsaved", 0) for r in results)
    if as_json:
        typer.echo(json.dumps({"evaluations": results, "failed": failed}, allow_nan=False))
    else:
        for result in results:
            typer.echo(_table(result))
    if not quiet:
        for note in dict.fromkeys(n for r in results for n in r["notes"]):
            reporter.note(f"note: {note}")
    if failed or unsaved:
        raise typer.Exit(1)


# --- options -----------------------------------------------------------------------------------


def _options_of_this_command() -> frozenset[str] | None:
    """eval's own option names (--batch-size, ...), so that messages name only those."""
    import click

    context = click.get_current_context(silent=True)
    if context is None:
        return None
    return frozenset(opt for param in context.command.params for opt in (*param.opts, *param.secondary_opts))


def _parse_metrics(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))


def _check_forms(models, input_dir, real, fake, target, data, split, save_outputs) -> None:
    from img2img.errors import UsageError

    if models and fake is not None:
        raise UsageError("--fake is for translations made elsewhere; with --model use --input or --data")
    if models:
        if data is not None and input_dir is not None:
            raise UsageError("give either --data DATASET or --input DIR, not both")
        if data is None and input_dir is None:
            raise UsageError(
                "--model needs the images to translate: --input DIR (with --real/--target) or --data DATASET"
            )
        if data is not None and (real is not None or target is not None):
            raise UsageError("--data brings its own real images and targets; leave out --real and --target")
        if input_dir is not None and real is None and target is None:
            raise UsageError("--input needs something to compare with: --real DIR and/or --target DIR")
        if input_dir is not None and len(models) > 1:
            raise UsageError("--model twice is for --data (one model per direction)")
        if len(models) > 2:
            raise UsageError("--model at most twice (AtoB and BtoA)")
    else:
        if input_dir is not None or data is not None:
            raise UsageError(f"{'--input' if input_dir is not None else '--data'} needs --model to translate it")
        if save_outputs is not None:
            raise UsageError("--save-outputs keeps translations; it needs --model")
        if fake is None:
            raise UsageError("nothing to measure: give --fake DIR, or --model with --input or --data")
        if real is None and target is None:
            raise UsageError("--fake needs --real DIR (FID, KID, IS) and/or --target DIR (PSNR, SSIM, LPIPS)")
    if split is not None and data is None:
        raise UsageError("--split goes with --data")


def _plan(models, input_dir, real, fake, target, data, split, device, precision):
    """(comparison, translator or None) pairs, built lazily so that usage errors come first."""
    from img2img.eval.data import Comparison, dataset_comparisons, pair_by_name, read_folder
    from img2img.eval.run import folder_comparison

    if not models:
        yield folder_comparison(fake=fake, real=real, target=target), None
        return
    from img2img.errors import UsageError
    from img2img.translate.translator import Translator

    translators = [Translator(m, device=device, precision=precision) for m in models]
    if len(translators) == 2 and translators[0].metadata.direction == translators[1].metadata.direction:
        raise UsageError(f"both models map {translators[0].metadata.direction}; give one per direction")
    if data is not None:
        for translator in translators:
            meta = translator.metadata
            (comparison,) = dataset_comparisons(data, split, [meta.direction], meta.task)
            yield comparison, translator
        return
    (translator,) = translators
    inputs = read_folder(input_dir, "--input")
    reals = read_folder(real, "--real") if real is not None else None
    targets, unmatched = (None, [])
    if target is not None:
        targets, unmatched = pair_by_name(inputs, read_folder(target, "--target"), "--input", "--target")
    described = {
        "input": str(input_dir),
        "real": str(real) if real else None,
        "target": str(target) if target else None,
    }
    label = f"{input_dir}/ -> vs " + " and ".join(f"{p}/" for p in (real, target) if p is not None)
    yield Comparison(label=label, inputs=inputs, reals=reals, targets=targets, unmatched=unmatched,
                     direction=translator.metadata.direction,
                     described={k: v for k, v in described.items() if v}), translator  # fmt: skip


# --- output ------------------------------------------------------------------------------------


def _table(result: dict) -> str:
    lines = [result["label"] + (f"  [{result['model']['path']}, {result['direction']}]" if "model" in result else "")]
    samples = result["samples"]
    counts = ", ".join(f"{v} {k}" for k, v in samples.items() if k not in ("failed", "unsaved"))
    if samples.get("failed"):
        counts += f", {samples['failed']} left out"
    if samples.get("unsaved"):  # scored, but not written to --save-outputs
        counts += f", {samples['unsaved']} not saved"
    lines.append(f"  samples  {counts}")
    scores = result["scores"]
    rows = {
        "fid": lambda s: f"{_num(s['value'])}",
        "kid": lambda s: (
            (
                f"{_num(s['value'])} ± {_num(s['std'])}"
                if s["std"] is not None
                else f"{_num(s['value'])} (no spread: see note)"
            )
            + f"  (subset size {s['subset_size']}, {s['subsets']} subsets)"
        ),
        "is": lambda s: (
            (f"{_num(s['value'])} ± {_num(s['std'])}" if s["value"] is not None else "not estimated (see note)")
            + f"  ({s['splits']} splits)"
        ),
        "psnr": lambda s: (
            (f"{_num(s['value'])} dB" if s["value"] is not None else "inf (identical pairs)")
            + f"  ({s['pairs']} pairs)"
        ),
        "ssim": lambda s: f"{_num(s['value'])}  ({s['pairs']} pairs)",
        "lpips": lambda s: f"{_num(s['value'])}  ({s['pairs']} pairs, AlexNet)",
    }
    for name in result["metrics"]:
        if name in scores:
            lines.append(f"  {name.upper():7}  {rows[name](scores[name])}")
    inception = result["settings"].get("inception")
    if inception:
        lines.append(f"  resize   {inception['resize'].split(':')[0]}; Inception weights {inception['weights']['file']}"
                     + ("" if inception["weights"]["standard"] else " (NOT the published weights)"))  # fmt: skip
    return "\n".join(lines)


def _num(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return f"{value:.6g}" if abs(value) < 1e5 else f"{value:.4e}"


class _Reporter:
    """Error lines and notes on stderr; a progress bar on stderr when it is a terminal."""

    def __init__(self, *, show_progress: bool):
        self.show_progress = show_progress
        self._progress = None
        self._task = None

    def progress(self):
        if not self.show_progress:
            return contextlib.nullcontext()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True,
        )  # fmt: skip
        self._task = self._progress.add_task("eval", total=0)
        return self._progress

    def add_total(self, n: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=(self._progress.tasks[0].total or 0) + n)

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def error(self, message: str) -> None:
        self._print(f"img2img: error: {message}")

    def note(self, message: str) -> None:
        self._print(f"img2img: {message}")

    def _print(self, line: str) -> None:
        from img2img.files.text import one_line

        # File names and messages may come from files and cache entries: never let their
        # control characters (newlines, terminal escapes) reach the terminal as they are.
        line = one_line(line)
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)
