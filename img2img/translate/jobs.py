"""Planning a batch: which input image goes to which output file.

INPUT arguments (files, folders searched recursively, globs with ``**``, or ``-`` for stdin) are
expanded into ``Job``s, each naming one input and its output, and ``InputError`` records for
inputs that match nothing or outputs that must not be written. Nothing is read or written here
but the file system's listing; ``img2img translate`` runs the jobs.

    from img2img.translate.jobs import plan_jobs
    jobs, errors = plan_jobs(["photos/", "more/*.jpg"], output=None, out_dir=Path("out"))

The rules: names relative to each folder (or to a glob's fixed part) are kept under ``out_dir``;
an input is never overwritten; an existing output is refused unless ``overwrite`` (or skipped
with ``skip_existing``); two inputs never share one output (the second is skipped, and named);
folders and globs are listed by :mod:`img2img.files.walk` (hidden files and files without an image
or video extension skipped, symbolic links followed, special files skipped with a note); an
``out_dir`` inside an input folder is not read as input. A video (by its extension, see
img2img.translate.video) is a ``Job`` with ``video`` set; under ``out_dir`` it keeps its container.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from img2img.errors import UsageError, exists_advice
from img2img.files.filetypes import special_file_kind
from img2img.files.formats import can_write, format_for_path, output_format
from img2img.files.imageio import DEFAULT_FORMAT, is_image_path
from img2img.files.walk import Listing, glob_images, has_glob_chars, list_images
from img2img.translate.video import CONTAINERS, container_for, is_video_path, video_output_suffix

STDIN = "-"
_log = logging.getLogger(__name__)


@dataclass
class Job:
    """One input image and where its translation goes."""

    label: str  # the input as the user would name it: photos/sub/a.jpg, or "-"
    source: Path | None  # None: stdin
    output: Path | None  # None: stdout
    fmt: str  # Pillow format to write; for a video, the FFmpeg container (img2img.translate.video)
    video: bool = False  # a video: translated frame by frame by img2img.translate.video


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (0-based) of ``count`` disjoint parts of a batch, for job arrays.

    An input belongs to the part that a hash of its output name (relative to the output folder)
    picks, so the partition depends on nothing but that name: not on the order INPUTs are listed
    or globs expanded, not on which other inputs exist, not on outputs already written by other
    parts. Two inputs that would share an output fall into the same part, which still reports it.
    """

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, name: str | os.PathLike[str]) -> bool:
        """Whether the output name (relative, as posix or native path) falls in this part."""
        key = os.fsencode(Path(name).as_posix())
        digest = hashlib.sha256(key).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


def parse_shard(text: str) -> Shard:
    """'K/N' (K from 0 to N-1) -> Shard; a UsageError for anything else."""
    k, slash, n = text.strip().partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError:
        index = count = -1
    if not slash or count < 1 or not 0 <= index < count:
        raise UsageError(
            f"--shard {text!r}: expected K/N with 0 <= K < N, e.g. 0/4 for the first of four parts",
            hint="K is 0-based, as $SLURM_ARRAY_TASK_ID with --array=0-(N-1) and $JOB_COMPLETION_INDEX",
        )
    return Shard(index, count)


@dataclass
class InputError:
    """An input that gives no job (a record, not an exception): its label and a one-line message
    that names the file, and the output it would have had, if any. ``status`` is "error", or
    "skipped" for an output that exists and ``skip_existing`` keeps (not a failure)."""

    label: str
    message: str
    output: Path | None = None
    status: str = "error"


def plan_jobs(
    inputs: list[str],
    *,
    output: Path | None,
    out_dir: Path | None,
    ext: str | None = None,
    overwrite: bool = False,
    skip_existing: bool = False,
    to_stdout: bool = False,
    on_note: Callable[[str], None] | None = None,
    shard: Shard | None = None,
) -> tuple[list[Job], list[InputError]]:
    """Expand INPUTs into jobs (input -> output), and errors for inputs that match nothing or
    outputs that must not be written.

    Give exactly one destination: ``output`` (one input image), ``out_dir`` (any number; ``ext``
    sets the format, else the input's extension when a translation can be written in it, else
    PNG) or ``to_stdout`` (``ext`` sets the format, default PNG). An output that exists already
    is an error unless ``overwrite``, or skipped with ``skip_existing``; this is only the
    planning-time check, the writer refuses again at the moment it writes. A name the file
    system refuses is an error for that input. Raises UsageError when ``output`` is given and
    the inputs hold more than one image, and so does ``to_stdout`` (images written one after another
    to stdout would read as the first). Files skipped on purpose (FIFOs, sockets, devices,
    broken links, link loops in folders) are reported one line each to ``on_note`` (default: a
    logging warning). With ``shard`` (needs ``out_dir``) only the inputs whose output names fall
    in that part are planned; errors of INPUTs that match nothing are reported by every part."""
    if shard is not None and out_dir is None:
        raise UsageError("--shard needs --out-dir (parts are chosen by output name)")
    note = on_note or _log.warning
    errors: list[InputError] = []
    found: list[tuple[str, Path | None, Path]] = []  # label, source, name relative to its input
    for arg in inputs:
        if arg == STDIN:
            found.append((STDIN, None, Path("stdin.png")))
            continue
        matches, error, listing = _expand(arg, out_dir)
        if error:
            errors.append(InputError(arg, f"{arg}: {error}"))
        for message in listing.notes:
            note(message)
        for message in listing.errors:  # a folder that could not be listed: images are missing
            errors.append(InputError(arg, message))
        found.extend(matches)

    if (output is not None or to_stdout) and len(found) > 1:
        raise UsageError(
            f"-o {'FILE' if output is not None else '-'} takes one input image, but INPUT gives "
            f"{len(found)}; use --out-dir DIR"
        )

    sources = {os.path.realpath(source) for _, source, _ in found if source is not None}
    jobs: list[Job] = []
    planned: dict[str, str] = {}
    for label, source, relative in found:
        video = is_video_path(label if source is None else source)
        if to_stdout and video:
            errors.append(InputError(label, f"{label}: a video cannot be written to stdout; use -o FILE or --out-dir"))
            continue
        if to_stdout:
            jobs.append(Job(label, source, None, output_format(ext, "--ext") if ext else DEFAULT_FORMAT))
            continue
        if output is not None:
            target = output
        else:
            assert out_dir is not None, "plan_jobs needs output, out_dir or to_stdout"
            # --ext names an image format or a video container: it applies to that kind only.
            if video:
                suffix = video_output_suffix(relative, ext)
            else:
                suffix = output_suffix(relative, None if ext and normalise_ext(ext) in CONTAINERS else ext)
            if shard is not None and not shard.holds(relative.with_suffix(suffix)):
                continue  # another part's input: not even its output is looked at
            target = out_dir / relative.with_suffix(suffix)
        real_target = os.path.realpath(target)
        status = "error"
        try:
            if real_target in sources:
                problem = "refusing to overwrite an input"
            elif real_target in planned:
                problem = f"skipped: its output {target} is also the output of {planned[real_target]}"
            elif target.is_dir():
                problem = "is a directory"
            elif target.exists() and not overwrite:
                if skip_existing:
                    problem, status = "already exists (skipped)", "skipped"
                else:
                    problem = "already exists" + exists_advice()
            else:
                planned[real_target] = label
                fmt = container_for(target) if video else format_for_path(target)
                jobs.append(Job(label, source, target, fmt, video))
                continue
        except OSError as exc:  # a name the file system refuses (too long, invalid): this input only
            problem = f"cannot write: {exc.strerror or exc}"
        where = label if problem.startswith("skipped:") else str(target)
        errors.append(InputError(label, f"{where}: {problem}", target, status))
    return jobs, errors


def output_suffix(name: str | os.PathLike[str], ext: str | None = None) -> str:
    """The extension an output gets: ``ext`` when given, else the input's when a translation
    can be written in it, else .png."""
    suffix = normalise_ext(ext) if ext else Path(name).suffix
    return suffix if can_write(suffix) else ".png"


def normalise_ext(ext: str) -> str:
    """'JPG', 'jpg' or '.jpg' -> '.jpg'."""
    return "." + ext.lower().lstrip(".")


def _expand(arg: str, out_dir: Path | None) -> tuple[list[tuple[str, Path, Path]], str | None, Listing]:
    """One INPUT -> (label, path, relative name) triples, or an error saying why there are none,
    and the walker's listing (its notes and unreadable folders)."""
    path = Path(arg)
    exclude = [out_dir] if out_dir is not None else []
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:  # permission denied on a folder above it, a link loop (ELOOP), ...
        if has_glob_chars(arg) and not path.exists():
            mode = None
        else:
            return [], exc.strerror or str(exc), Listing()
    if mode is not None and stat.S_ISDIR(mode):
        listing = list_images(path, exclude=exclude, accept=_is_input)
        found = [(str(f.path), f.path, f.relative) for f in listing.images]
        return found, None if found or listing.errors else "no images in this folder", listing
    if mode is not None:
        kind = special_file_kind(mode)
        if kind in ("a socket", "a block device"):
            return [], f"is {kind}, not an image file", Listing()
        # Regular files, and FIFOs or character devices named on purpose (`<(curl ...)`, /dev/stdin):
        # imageio.read_image reads those as streams, with the bound of standard input.
        return [(arg, path, Path(path.name))], None, Listing()
    if os.path.islink(path):
        return [], "broken symbolic link", Listing()
    if not has_glob_chars(arg):
        return [], "no such file or directory", Listing()
    listing = glob_images(arg, exclude=exclude, accept=_is_input)
    found = [(str(f.path), f.path, f.relative) for f in listing.images]
    return found, None if found or listing.errors else "no files match", listing


def _is_input(name: str) -> bool:
    """Files translate reads from folders and globs: images and videos, by extension."""
    return is_image_path(name) or is_video_path(name)


__all__ = ["STDIN", "InputError", "Job", "Shard", "normalise_ext", "output_suffix", "parse_shard", "plan_jobs"]
