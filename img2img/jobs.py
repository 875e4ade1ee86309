"""Planning a batch: which input image goes to which output file.

INPUT arguments (files, folders searched recursively, globs with ``**``, or ``-`` for stdin) are
expanded into ``Job``s, each naming one input and its output, and ``InputError`` records for
inputs that match nothing or outputs that must not be written. Nothing is read or written here
but the file system's listing; ``img2img translate`` runs the jobs.

    from img2img.jobs import plan_jobs
    jobs, errors = plan_jobs(["photos/", "more/*.jpg"], output=None, out_dir=Path("out"))

The rules: names relative to each folder (or to a glob's fixed part) are kept under ``out_dir``;
an input is never overwritten; an existing output is refused unless ``overwrite``; two inputs
never share one output; hidden files and files without an image extension are skipped in
folders; an ``out_dir`` inside an input folder is not read as input.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from img2img.errors import UsageError
from img2img.imageio import DEFAULT_FORMAT, WRITABLE_EXTENSIONS, format_for_path, is_image_path

STDIN = "-"
_GLOB_CHARS = frozenset("*?[")


@dataclass
class Job:
    """One input image and where its translation goes."""

    label: str  # the input as the user would name it: photos/sub/a.jpg, or "-"
    source: Path | None  # None: stdin
    output: Path | None  # None: stdout
    fmt: str  # Pillow format to write


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
    that names the file, and the output it would have had, if any."""

    label: str
    message: str
    output: Path | None = None


def plan_jobs(
    inputs: list[str],
    *,
    output: Path | None,
    out_dir: Path | None,
    ext: str | None = None,
    overwrite: bool = False,
    to_stdout: bool = False,
    shard: Shard | None = None,
) -> tuple[list[Job], list[InputError]]:
    """Expand INPUTs into jobs (input -> output), and errors for inputs that match nothing or
    outputs that must not be written.

    Give exactly one destination: ``output`` (one input image), ``out_dir`` (any number; ``ext``
    sets the format, else the input's extension when Pillow can write it, else PNG) or
    ``to_stdout``. Raises UsageError when ``output`` is given and the inputs hold more than one
    image. With ``shard`` (needs ``out_dir``) only the inputs whose output names fall in that
    part are planned; errors of INPUTs that match nothing are reported by every part."""
    if shard is not None and out_dir is None:
        raise UsageError("--shard needs --out-dir (parts are chosen by output name)")
    errors: list[InputError] = []
    found: list[tuple[str, Path | None, Path]] = []  # label, source, name relative to its input
    skip_dir = out_dir.resolve() if out_dir is not None else None
    for arg in inputs:
        if arg == STDIN:
            found.append((STDIN, None, Path("stdin.png")))
            continue
        matches, error = _expand(arg, skip_dir)
        if error:
            errors.append(InputError(arg, f"{arg}: {error}"))
        found.extend(matches)

    if output is not None and len(found) > 1:
        raise UsageError(
            f"-o FILE takes one input image, but INPUT gives {len(found)}; use --out-dir DIR"
        )

    sources = {os.path.realpath(source) for _, source, _ in found if source is not None}
    jobs: list[Job] = []
    planned: dict[str, str] = {}
    for label, source, relative in found:
        if to_stdout:
            jobs.append(Job(label, source, None, DEFAULT_FORMAT))
            continue
        if output is not None:
            target = output
        else:
            assert out_dir is not None, "plan_jobs needs output, out_dir or to_stdout"
            suffix = output_suffix(relative, ext)
            if shard is not None and not shard.holds(relative.with_suffix(suffix)):
                continue  # another part's input: not even its output is looked at
            target = out_dir / relative.with_suffix(suffix)
        real_target = os.path.realpath(target)
        if real_target in sources:
            problem = "refusing to overwrite an input"
        elif real_target in planned:
            problem = f"same output as {planned[real_target]}"
        elif target.is_dir():
            problem = "is a directory"
        elif target.exists() and not overwrite:
            problem = "already exists (use --overwrite to replace it)"
        else:
            planned[real_target] = label
            jobs.append(Job(label, source, target, format_for_path(target)))
            continue
        errors.append(InputError(label, f"{target}: {problem}", target))
    return jobs, errors


def output_suffix(name: str | os.PathLike[str], ext: str | None = None) -> str:
    """The extension an output gets: ``ext`` when given, else the input's when Pillow can write
    it, else .png."""
    suffix = normalise_ext(ext) if ext else Path(name).suffix
    return suffix if suffix.lower() in WRITABLE_EXTENSIONS else ".png"


def normalise_ext(ext: str) -> str:
    """'JPG', 'jpg' or '.jpg' -> '.jpg'."""
    return "." + ext.lower().lstrip(".")


def _expand(arg: str, skip_dir: Path | None) -> tuple[list[tuple[str, Path, Path]], str | None]:
    """One INPUT -> (label, path, relative name) triples, or an error saying why there are none."""
    path = Path(arg)
    if path.is_dir():
        found = list(_walk_folder(path, path, skip_dir))
        return found, None if found else "no images in this folder"
    if path.exists():
        return [(arg, path, Path(path.name))], None
    if not _GLOB_CHARS.intersection(arg):
        return [], "no such file or directory"
    base = _glob_base(arg)
    found = []
    for match in sorted(glob.glob(arg, recursive=True)):
        match_path = Path(match)
        if match_path.is_dir():
            found.extend(_walk_folder(match_path, base, skip_dir))
        else:
            found.append((match, match_path, match_path.relative_to(base)))
    return found, None if found else "no files match"


def _walk_folder(folder: Path, base: Path, skip_dir: Path | None) -> Iterator[tuple[str, Path, Path]]:
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        # Hidden entries are skipped; so is the output folder when it lies inside the input one,
        # so that a second run does not translate the first run's outputs.
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (skip_dir is None or (root_path / d).resolve() != skip_dir)
        )
        for name in sorted(files):
            if not name.startswith(".") and is_image_path(name):
                path = root_path / name
                yield str(path), path, path.relative_to(base)


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: names are kept relative to it."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _GLOB_CHARS.intersection(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


__all__ = ["STDIN", "InputError", "Job", "Shard", "normalise_ext", "output_suffix", "parse_shard", "plan_jobs"]
