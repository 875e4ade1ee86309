"""`img2img translate`: images in, translated images out (files, folders, globs, stdin/stdout).

The command parses options, has img2img.jobs plan which input goes to which output, hands the
images to img2img.inference.Translator and reports: failures of single inputs one line each on
stderr (the others still run), JSON lines on stdout, a progress bar; the exit code says whether
everything was written.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional

import typer

from img2img.cli._app import app
from img2img.cli._options import Direction

if TYPE_CHECKING:  # img2img.jobs loads Pillow and numpy: imported when the command runs
    from img2img.jobs import Job


class PrecisionChoice(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


_HELP = "\n\n".join(
    (
        "Translate images with a trained generator. Outputs have the inputs' size.",
        "Name the output: -o FILE for one input, --out-dir DIR for any number. There is no default "
        "for files, so nothing is written where you did not ask. INPUT - reads one image from "
        "stdin and writes PNG to stdout (or to -o FILE).",
        "An existing output is an error unless --overwrite; an input is never overwritten. Each "
        "output is written under a temporary name and renamed, so no file is ever half written.",
        "Grayscale stays grayscale with a one-channel model; alpha is kept where the output format "
        "can hold it. In folders, hidden files and files without an image extension are skipped.",
        'With --json, each input gives one line on stdout: {"input", "output", "width", "height", '
        '"seconds", "status": "ok"} or {"input", "output", "status": "error", "error"}, in the '
        "order they finish.",
        "--shard K/N (K from 0 to N-1) translates only the K-th of N disjoint parts of the inputs, "
        "for job arrays: N processes given the same INPUTs and --out-dir cover every input exactly "
        "once, whatever the order of listing. A part is chosen by a hash of each output's name. "
        "With --json each line also has \"shard\": \"K/N\".",
        "Exit status: 0 all written; 1 some input failed (one line on stderr each, the others are "
        "still written); 2 usage error.",
    )
)


@app.command("translate", help=_HELP)
def translate(
    inputs: List[str] = typer.Argument(
        ...,
        metavar="INPUT",
        help="Image files, folders (searched recursively), globs (quoted globs are expanded "
        "here, ** included) or - for one image on stdin.",
        show_default=False,
    ),
    model: str = typer.Option(..., "--model", "-m", help="A weights file or a model name."),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Output file for a single input; its extension sets the format."
    ),
    out_dir: Optional[Path] = typer.Option(
        None,
        "--out-dir",
        help="Output folder for any number of inputs; names relative to each folder (or glob) "
        "input are kept.",
    ),
    ext: Optional[str] = typer.Option(
        None,
        "--ext",
        help="With --out-dir: output format (png, jpg, ...). Default: the input's extension when "
        "Pillow can write it, else png.",
    ),
    direction: Optional[Direction] = typer.Option(
        None, help="Check that the weights map this direction (they map only one)."
    ),
    device: str = typer.Option("auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps."),
    precision: PrecisionChoice = typer.Option(
        PrecisionChoice.auto,
        help="auto: bf16 on CPUs with native bf16, fp16 on CUDA, else fp32 (output within "
        "40 dB PSNR of fp32); fp32 forces full precision.",
    ),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Images of equal (padded) size run together."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object per input on stdout (status ok or error)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (errors are still shown)."),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        metavar="K/N",
        help="Translate only part K (0-based) of N disjoint parts of the inputs, e.g. "
        '--shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" with --array=0-(N-1). Needs --out-dir.',
    ),
) -> None:
    """Translate images with a trained generator; outputs have the inputs' size."""
    # Imported here rather than at the top so that `img2img --help` does not load torch.
    from img2img.inference import Translator
    from img2img.jobs import parse_shard, plan_jobs

    to_stdout = _check_options(inputs, output, out_dir, ext, as_json)
    part = parse_shard(shard) if shard is not None else None
    jobs, errors = plan_jobs(
        inputs, output=output, out_dir=out_dir, ext=ext, overwrite=overwrite, to_stdout=to_stdout, shard=part
    )
    translator = Translator(
        model,
        device=device,
        precision=precision.value,
        direction=direction.value if direction else None,
    )
    reporter = _Reporter(as_json=as_json, shard=part, show_progress=not quiet and len(jobs) + len(errors) > 1 and sys.stderr.isatty())
    try:
        with reporter.progress(total=len(jobs) + len(errors)):
            for error in errors:
                reporter.failed(error.label, error.output, error.message)
            if jobs:
                _run(translator, jobs, batch_size, reporter)
    except BrokenPipeError:
        # Whoever read stdout has gone (`... --json | head -1`): stop quietly, like a tool that
        # SIGPIPE ends, and keep Python from failing again when it flushes stdout at exit.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(141) from None
    if reporter.failures:
        raise typer.Exit(1)


# --- options ------------------------------------------------------------------------------------


def _check_options(
    inputs: list[str], output: Path | None, out_dir: Path | None, ext: str | None, as_json: bool
) -> bool:
    """Usage errors that need no file system; returns whether the output goes to stdout."""
    from img2img.errors import UsageError
    from img2img.imageio import format_for_path
    from img2img.jobs import STDIN, normalise_ext

    if output is not None and out_dir is not None:
        raise UsageError("give either -o FILE or --out-dir DIR, not both")
    if STDIN in inputs and len(inputs) > 1:
        raise UsageError("- (stdin) must be the only INPUT")
    if ext is not None:
        if out_dir is None:
            raise UsageError("--ext goes with --out-dir (with -o the file's extension sets the format)")
        format_for_path(f"out{normalise_ext(ext)}")
    if output is not None:
        format_for_path(output)
    to_stdout = inputs == [STDIN] and output is None and out_dir is None
    if inputs == [STDIN] and sys.stdin.isatty():
        raise UsageError("- reads an image from stdin, but stdin is a terminal; pipe an image in")
    if inputs == [STDIN] and out_dir is not None:
        raise UsageError("stdin has no file name for --out-dir; use -o FILE, or no option for stdout")
    if not to_stdout and output is None and out_dir is None:
        raise UsageError("say where to write: -o FILE for one input, or --out-dir DIR")
    if to_stdout:
        if as_json:
            raise UsageError("--json and an image on stdout cannot share stdout; use -o FILE")
        if sys.stdout.isatty():
            raise UsageError("refusing to write image data to a terminal; redirect stdout or use -o FILE")
    return to_stdout


# --- running ------------------------------------------------------------------------------------


def _run(translator, jobs: list[Job], batch_size: int, reporter: _Reporter) -> None:
    from img2img.errors import ImageError
    from img2img.imageio import encode_image, read_image, write_image

    read_seconds: dict[int, float] = {}

    def decoded() -> Iterator[tuple[int, object]]:
        for index, job in enumerate(jobs):
            start = time.perf_counter()
            try:
                if job.source is None:
                    image = read_image(typer.get_binary_stream("stdin").read(), name="stdin")
                else:
                    image = read_image(job.source, name=job.label)
            except ImageError as exc:  # its message names the file
                reporter.failed(job.label, job.output, str(exc))
                continue
            try:
                item = translator.to_input(image)
            except ImageError as exc:
                reporter.failed(job.label, job.output, f"{job.label}: {exc}")
                continue
            read_seconds[index] = time.perf_counter() - start
            yield index, item

    for result in translator.translate_stream(decoded(), batch_size=batch_size):
        job = jobs[result.key]
        if result.error is not None:
            reporter.failed(job.label, job.output, f"{job.label}: {result.error}")
            continue
        start = time.perf_counter()
        try:
            if job.output is None:
                stdout = typer.get_binary_stream("stdout")
                stdout.write(encode_image(result.image, job.fmt))
                stdout.flush()
            else:
                write_image(result.image, job.output, job.fmt)
        except ImageError as exc:
            reporter.failed(job.label, job.output, str(exc))
            continue
        seconds = read_seconds.pop(result.key) + result.seconds + time.perf_counter() - start
        reporter.done(job, result.image.size, seconds)


class _Reporter:
    """Where results go: error lines on stderr, JSON lines on stdout, a progress bar on stderr."""

    def __init__(self, *, as_json: bool, show_progress: bool, shard=None):
        self.as_json, self.show_progress = as_json, show_progress
        self.shard = None if shard is None else str(shard)
        self.failures = 0
        self._progress = None
        self._task = None

    def progress(self, total: int):
        if not self.show_progress:
            return contextlib.nullcontext()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("translating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task("translate", total=total)
        return self._progress

    def failed(self, label: str, output: Path | None, message: str) -> None:
        self.failures += 1
        line = f"img2img: error: {message}"
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)
        self._json({"input": label, "output": _path_str(output), "status": "error", "error": message})
        self._advance()

    def done(self, job: Job, size: tuple[int, int], seconds: float) -> None:
        self._json(
            {
                "input": job.label,
                "output": _path_str(job.output),
                "width": size[0],
                "height": size[1],
                "seconds": round(seconds, 4),
                "status": "ok",
            }
        )
        self._advance()

    def _json(self, record: dict) -> None:
        if self.as_json:
            if self.shard is not None:
                record["shard"] = self.shard
            typer.echo(json.dumps(record))

    def _advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)


def _path_str(path: Path | None) -> str | None:
    return None if path is None else str(path)
