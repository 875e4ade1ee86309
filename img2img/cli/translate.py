"""`img2img translate`: images in, translated images out (files, folders, globs, stdin/stdout).

The command parses options, has img2img.translate.jobs plan which input goes to which output, hands the
images to img2img.translate.translator.Translator and reports: failures of single inputs one line each on
stderr (the others still run), JSON lines on stdout, a progress bar; the exit code says whether
everything was written.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional

import typer

from img2img.cli._app import app
from img2img.cli._options import Direction, OverwriteOpt, SkipExistingOpt, check_existing_options
from img2img.runtime.signals import Interrupted

if TYPE_CHECKING:  # img2img.translate.jobs loads Pillow and numpy: imported when the command runs
    from img2img.translate.jobs import Job


class TileStatsChoice(str, Enum):
    thumbnail = "thumbnail"
    exact = "exact"
    tile = "tile"


class PrecisionChoice(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class EngineChoice(str, Enum):
    auto = "auto"
    torch = "torch"
    onnxruntime = "onnxruntime"


_HELP = "\n\n".join(
    (
        "Translate images with a trained generator. Outputs have the inputs' size.",
        "Name the output: -o FILE for one input, --out-dir DIR for any number (names relative to "
        "each folder or glob are kept). INPUT - reads stdin; -o - writes stdout. An existing output "
        "is an error unless --overwrite or --skip-existing; nothing is ever left half written.",
        "--engine auto runs ResNet generators in onnxruntime on CPUs without native bf16, however "
        "many images the job has; --tile auto translates images too large for memory in tiles.",
        "Exit status: 0 all written (or skipped); 1 some input failed (one line on stderr each); "
        "2 usage error; 130/143/129 stopped by SIGINT/SIGTERM/SIGHUP.",
    )
)


@app.command("translate", help=_HELP)
def translate(
    inputs: List[str] = typer.Argument(
        ...,
        metavar="INPUT",
        help="Image files, folders, quoted globs (** included), or - for stdin.",
        show_default=False,
    ),
    model: str = typer.Option(..., "--model", "-m", help="A weights file or a model name."),
    output: Optional[Path] = typer.Option(
        None,
        "-o",
        "--output",
        help="Output file for one input; - for stdout.",
    ),
    out_dir: Optional[Path] = typer.Option(
        None,
        "--out-dir",
        help="Output folder for many inputs (relative names kept).",
    ),
    ext: Optional[str] = typer.Option(
        None,
        "--ext",
        help="Format for --out-dir or stdout (default: the input's).",
    ),
    direction: Optional[Direction] = typer.Option(
        None, help="Check that the weights map this direction (they map only one)."
    ),
    device: str = typer.Option("auto", help="auto (CUDA if any), cpu, cuda, cuda:N, mps."),
    precision: PrecisionChoice = typer.Option(
        PrecisionChoice.auto,
        help="auto: bf16 on CPUs with native bf16, fp16 on CUDA, else fp32 (output within "
        "40 dB PSNR of fp32); fp32 forces full precision.",
    ),
    engine: Optional[EngineChoice] = typer.Option(
        None,
        "--engine",
        help="Which library runs the network. auto: onnxruntime for ResNet generators in fp32 on "
        "CPUs without native bf16 when the onnx extra is installed (measured faster there), however "
        "many images the job has (the weights are exported to ONNX once, in seconds, and cached), "
        "else PyTorch; torch; onnxruntime. Tiles always run in PyTorch. "
        "[default: $IMG2IMG_ENGINE, else auto]",
        show_default=False,
    ),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Images of equal (padded) size run together."),
    overwrite: OverwriteOpt = False,
    skip_existing: SkipExistingOpt = False,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per input on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (errors are still shown)."),
    stdin_limit: str = typer.Option(
        "1G",
        "--stdin-limit",
        envvar="IMG2IMG_STDIN_LIMIT",
        metavar="SIZE",
        help="Most bytes read from standard input or from a pipe named as INPUT (K, M, G suffixes).",
    ),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        metavar="K/N",
        help="Translate only part K (0-based) of N disjoint parts of the inputs, e.g. "
        '--shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" with --array=0-(N-1). Needs --out-dir.',
    ),
    # -- tiling (img2img.translate.tiling)
    tile: str = typer.Option(
        "auto",
        "--tile",
        metavar="SIZE|auto|off",
        help="Translate in overlapping tiles of SIZE pixels (a multiple of the network's size "
        "multiple); auto: only images that would not fit in memory in one pass; off: never.",
    ),
    tile_overlap: Optional[int] = typer.Option(
        None,
        "--tile-overlap",
        metavar="PX",
        min=0,
        help="Overlap of neighbouring tiles in pixels (default: a "
        "quarter of the tile, at most 128; for U-Nets three size multiples, 384 for unet_128).",
    ),
    tile_stats: TileStatsChoice = typer.Option(
        TileStatsChoice.thumbnail,
        "--tile-stats",
        help="Normalisation statistics of tiles: thumbnail (from a copy of the whole image "
        "downscaled to at most 1024² or a tile: one extra pass), exact (the full image's, accumulated layer by layer: about "
        "half a tiled pass per norm layer), tile (each tile its own: visible seams).",
    ),
    max_pixels: Optional[int] = typer.Option(
        None,
        "--max-pixels",
        metavar="N",
        min=1,
        envvar="IMG2IMG_MAX_PIXELS",
        help="Read images of up to N pixels, lifting Pillow's decompression-bomb limit on purpose "
        "[env: IMG2IMG_MAX_PIXELS].",
    ),
) -> None:
    """Translate images with a trained generator; outputs have the inputs' size."""
    # Imported here rather than at the top so that `img2img --help` does not load torch.
    from img2img.files.atomic import remove_stale_temporaries
    from img2img.files.imageio import parse_byte_size
    from img2img.translate.jobs import parse_shard, plan_jobs
    from img2img.translate.translator import Translator

    to_stdout = _check_options(inputs, output, out_dir, ext, as_json, overwrite, skip_existing)
    part = parse_shard(shard) if shard is not None else None
    if to_stdout:
        output = None
    limit = parse_byte_size(stdin_limit)
    notes: list[str] = []
    jobs, errors = plan_jobs(
        inputs, output=output, out_dir=out_dir, ext=ext, overwrite=overwrite,
        skip_existing=skip_existing, to_stdout=to_stdout, on_note=notes.append, shard=part,
    )  # fmt: skip
    # Leftovers of killed runs go now, even if this run has nothing left to write there.
    for folder in {path.parent for path in [*(j.output for j in jobs), *(e.output for e in errors)] if path}:
        remove_stale_temporaries(folder, force=True)
    translator = Translator(
        model,
        device=device,
        precision=precision.value,
        engine=engine.value if engine else None,
        # Nothing left to write (--skip-existing, an empty --shard part): no export to pay for.
        # Any other count is the same choice: an image's bytes never depend on its job.
        expected_images=None if jobs else 0,
        direction=direction.value if direction else None,
        tile=tile,
        tile_overlap=tile_overlap,
        tile_stats=tile_stats.value,
    )
    reporter = _Reporter(
        as_json=as_json, shard=part, show_progress=not quiet and len(jobs) + len(errors) > 1 and sys.stderr.isatty()
    )
    try:
        with reporter.progress(total=len(jobs) + len(errors)):
            for message in notes:
                reporter.note(message)
            for error in errors:
                if error.status == "skipped":
                    reporter.skipped(error.label, error.output)
                else:
                    reporter.failed(error.label, error.output, error.message)
            if jobs:
                _run(
                    translator,
                    jobs,
                    batch_size,
                    reporter,
                    limit,
                    replace=overwrite,
                    skip_existing=skip_existing,
                    max_pixels=max_pixels,
                )
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        raise Interrupted(signum, reporter.summary(len(jobs) + len(errors))) from None
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
    inputs: list[str],
    output: Path | None,
    out_dir: Path | None,
    ext: str | None,
    as_json: bool,
    overwrite: bool,
    skip_existing: bool,
) -> bool:
    """Usage errors that need no file system, the output format included (before any work);
    returns whether the output goes to stdout."""
    from img2img.errors import UsageError
    from img2img.files.formats import format_for_path, output_format
    from img2img.translate.jobs import STDIN

    if output is not None and out_dir is not None:
        raise UsageError("give either -o FILE or --out-dir DIR, not both")
    check_existing_options(overwrite, skip_existing)
    if STDIN in inputs and len(inputs) > 1:
        raise UsageError("- (stdin) must be the only INPUT")
    output_is_stdout = output is not None and str(output) == STDIN
    to_stdout = output_is_stdout or (inputs == [STDIN] and output is None and out_dir is None)
    if ext is not None:
        if out_dir is None and not to_stdout:
            raise UsageError("--ext goes with --out-dir or stdout (with -o the file's extension sets the format)")
        output_format(ext, f"--ext {ext}")
    if output is not None and not output_is_stdout:
        format_for_path(output)
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
        if skip_existing:
            raise UsageError("--skip-existing needs output files; stdout always gets the image")
    return to_stdout


# --- running ------------------------------------------------------------------------------------


def _run(
    translator,
    jobs: list[Job],
    batch_size: int,
    reporter: _Reporter,
    stdin_limit: int,
    *,
    replace: bool,
    skip_existing: bool,
    max_pixels: int | None = None,
) -> None:
    from img2img.errors import ImageError, OutputExistsError
    from img2img.files.formats import check_size
    from img2img.files.imageio import encode_image, read_image, read_stream, write_image

    read_seconds: dict[int, float] = {}

    def decoded() -> Iterator[tuple[int, object]]:
        for index, job in enumerate(jobs):
            start = time.perf_counter()
            try:
                if job.source is None:  # read with the bound even when it is a regular file
                    source, name = read_stream(typer.get_binary_stream("stdin"), "stdin", stdin_limit), "stdin"
                else:
                    source, name = job.source, job.label
                image = read_image(
                    source, name=name, stream_limit=stdin_limit, on_note=reporter.note, max_pixels=max_pixels
                )
                # A size the output format cannot hold fails now, before the translation.
                check_size(job.fmt, image.size, f"{job.label}: {job.output or 'stdout'}")
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
                write_image(result.image, job.output, job.fmt, replace=replace)
        except OutputExistsError as exc:  # written since the batch was planned (another process?)
            if skip_existing:
                reporter.skipped(job.label, job.output)
            else:
                reporter.failed(job.label, job.output, f"{job.label}: {exc}")
            continue
        except ImageError as exc:
            reporter.failed(job.label, job.output, f"{job.label}: {exc}")
            continue
        seconds = read_seconds.pop(result.key) + result.seconds + time.perf_counter() - start
        reporter.done(job, result.image.size, seconds, tiling=result.tiling, engine=result.engine)


class _Reporter:
    """Where results go: error lines on stderr, JSON lines on stdout, a progress bar on stderr.
    Names are written by the policy of img2img.cli._text (one line on stderr, exact in JSON)."""

    def __init__(self, *, as_json: bool, show_progress: bool, shard=None):
        self.shard = {} if shard is None else {"shard": str(shard)}
        self.as_json, self.show_progress = as_json, show_progress
        self.failures = self.written = self.skips = 0
        self._progress = None
        self._task = None

    def progress(self, total: int):
        if not self.show_progress:
            return contextlib.nullcontext()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

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

    def note(self, message: str) -> None:
        """Something skipped on purpose or worth knowing (not a failure): one line on stderr."""
        from img2img.files.text import one_line

        line = f"img2img: note: {one_line(message)}"
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def failed(self, label: str, output: Path | None, message: str) -> None:
        from img2img.files.text import json_text, one_line

        self.failures += 1
        line = f"img2img: error: {one_line(message)}"
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)
        self._json(label, output, {"status": "error", "error": json_text(one_line(message))})
        self._advance()

    def skipped(self, label: str, output: Path | None) -> None:
        self.skips += 1
        self._json(label, output, {"status": "skipped"})
        self._advance()

    def done(self, job: Job, size: tuple[int, int], seconds: float, tiling=None, engine: str | None = None) -> None:
        self.written += 1
        self._json(
            job.label,
            job.output,
            {
                "width": size[0],
                "height": size[1],
                "seconds": round(seconds, 4),
                "status": "ok",
                "tiling": None if tiling is None else tiling.as_dict(),
                "engine": engine,
            },
        )
        self._advance()

    def summary(self, total: int) -> str:
        """What was done, for the line an interrupted run ends with."""
        parts = [f"wrote {self.written} of {total} outputs"]
        if self.skips:
            parts.append(f"{self.skips} skipped (already there)")
        if self.failures:
            parts.append(f"{self.failures} failed")
        return ", ".join(parts)

    def _json(self, label: str, output: Path | None, fields: dict) -> None:
        if self.as_json:
            from img2img.files.text import json_name

            typer.echo(json.dumps({**json_name("input", label), **json_name("output", output), **fields, **self.shard}))

    def _advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)
