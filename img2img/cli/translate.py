"""`img2img translate`: images in, translated images out (files, folders, globs, stdin/stdout).

The command parses options, has img2img.translate.jobs plan which input goes to which output, hands the
images to img2img.translate.translator.Translator (videos frame by frame, through img2img.translate.video) and
reports: failures of single inputs one line each on stderr (the others still run), JSON lines on
stdout, a progress bar; the exit code says whether everything was written.
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
        help="Image or video files, folders, quoted globs (** included), or - for stdin.",
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
    # -- videos (img2img.translate.video; the [video] extra)
    video_codec: Optional[str] = typer.Option(
        None,
        "--video-codec",
        metavar="ENCODER",
        help="FFmpeg encoder for video outputs, e.g. libx264, libx265, libvpx-vp9, ffv1 "
        "(default: H.264 (libx264) where the container takes it, VP9 for .webm).",
        show_default=False,
    ),
    crf: Optional[int] = typer.Option(
        None,
        "--crf",
        min=0,
        max=63,
        metavar="N",
        help="Constant rate factor of the video encoder (lower: better; default: the encoder's, 23 for x264).",
    ),
    encoder_option: Optional[List[str]] = typer.Option(
        None,
        "--encoder-option",
        metavar="KEY=VALUE",
        help="An option for the video encoder, as FFmpeg names it (repeatable), e.g. preset=slow, "
        "rc-lookahead=10 (less memory for large frames).",
        show_default=False,
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
    encoder_options = _parse_encoder_options(encoder_option or [])
    if (
        (video_codec is not None or crf is not None or encoder_options)
        and output is not None
        and not _is_video_output(output)
    ):
        from img2img.errors import UsageError

        raise UsageError(f"--video-codec, --crf and --encoder-option go with video outputs, and {output} is not one")
    part = parse_shard(shard) if shard is not None else None
    if to_stdout:
        output = None
    limit = parse_byte_size(stdin_limit)
    notes: list[str] = []
    jobs, errors = plan_jobs(
        inputs, output=output, out_dir=out_dir, ext=ext, overwrite=overwrite,
        skip_existing=skip_existing, to_stdout=to_stdout, on_note=notes.append, shard=part,
    )  # fmt: skip
    videos = [job for job in jobs if job.video]
    if videos:
        from img2img.translate.video import check_encoder, import_av

        import_av()  # without PyAV: one line and exit 2, before the model is loaded
        for fmt in sorted({job.fmt for job in videos}):
            check_encoder(fmt, video_codec)  # --video-codec fits every output container
        jobs = [job for job in jobs if not job.video]
    # Leftovers of killed runs go now, even if this run has nothing left to write there.
    for folder in {path.parent for path in [*(j.output for j in jobs + videos), *(e.output for e in errors)] if path}:
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
    total = len(jobs) + len(videos) + len(errors)
    reporter = _Reporter(
        as_json=as_json, shard=part, show_progress=not quiet and (total > 1 or bool(videos)) and sys.stderr.isatty()
    )
    try:
        with reporter.progress(total=total):
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
            if videos:
                _run_videos(
                    translator,
                    videos,
                    batch_size,
                    reporter,
                    replace=overwrite,
                    skip_existing=skip_existing,
                    codec=video_codec,
                    crf=crf,
                    options=encoder_options,
                )
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        raise Interrupted(signum, reporter.summary(total)) from None
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
        if not _is_video_output(Path("x." + ext.lstrip("."))):  # a container applies to videos only
            output_format(ext, f"--ext {ext}")
    if output is not None and not output_is_stdout and not _is_video_output(output):
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


def _parse_encoder_options(items: list[str]) -> dict[str, str]:
    from img2img.errors import UsageError

    options = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise UsageError(f"--encoder-option {item!r}: expected KEY=VALUE, e.g. preset=slow")
        options[key.strip()] = value
    return options


def _is_video_output(path: Path) -> bool:
    from img2img.translate.video import CONTAINERS

    return path.suffix.lower() in CONTAINERS


# --- running ------------------------------------------------------------------------------------


def _run_videos(
    translator,
    jobs: list[Job],
    batch_size: int,
    reporter: _Reporter,
    *,
    replace: bool,
    skip_existing: bool,
    codec: str | None,
    crf: int | None,
    options: dict[str, str],
) -> None:
    """Videos one after another (img2img.translate.video): a video that fails is one line and is left
    out, the others still run."""
    from img2img.errors import ImageError, OutputExistsError, UsageError
    from img2img.translate.video import translate_video

    for job in jobs:
        try:
            with reporter.frames(job.label) as on_frames:
                result = translate_video(
                    translator, job.source, job.output, label=job.label, codec=codec, crf=crf, batch_size=batch_size,
                    replace=replace, on_frames=on_frames, on_note=reporter.note, encoder_options=options,
                )  # fmt: skip
        except OutputExistsError as exc:
            if skip_existing:
                reporter.skipped(job.label, job.output)
            else:
                reporter.failed(job.label, job.output, str(exc))
            continue
        except (ImageError, OSError, UsageError) as exc:
            reporter.failed(job.label, job.output, str(exc))
            continue
        reporter.video_done(job, result)


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
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task("translating", total=total)
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

    @contextlib.contextmanager
    def frames(self, label: str):
        """A callback ``(done, total)`` for a video's frames: a progress line with frames per
        second and ETA on stderr when progress is shown, else nothing."""
        if not self.show_progress:
            yield None
            return
        from img2img.cli._text import one_line

        owner = self._progress
        if owner is None:
            self.progress(total=1).__enter__()
        name, start = one_line(label), time.perf_counter()
        task = self._progress.add_task(f"{name}: frames", total=None)

        def advance(done: int, total: int | None) -> None:
            fps = done / max(time.perf_counter() - start, 1e-9)
            self._progress.update(task, completed=done, total=total, description=f"{name}: frames, {fps:.1f}/s")

        try:
            yield advance
        finally:
            self._progress.remove_task(task)
            if owner is None:
                self._progress.stop()
                self._progress = None

    def video_done(self, job: Job, result) -> None:
        """A video written: JSON with its frames, frames per second and seconds."""
        self.written += 1
        self._json(
            job.label,
            job.output,
            {
                "width": result.width,
                "height": result.height,
                "frames": result.frames,
                "fps": round(result.fps, 3),
                "seconds": round(result.seconds, 4),
                "status": "ok",
                "video_codec": result.codec,
                "pix_fmt": result.pix_fmt,
                "copied_streams": result.copied_streams,
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
