"""Planning a batch: which input image goes to which output file.

INPUT arguments (files, folders searched recursively, globs with ``**``, or ``-`` for stdin) are
expanded into ``Job``s, each naming one input and its output, and ``InputError`` records for
inputs that match nothing or outputs that must not be written. Nothing is read or written here
but the file system's listing; ``img2img translate`` runs the jobs.

    from img2img.jobs import plan_jobs
    jobs, errors = plan_jobs(["photos/", "more/*.jpg"], output=None, out_dir=Path("out"))

The rules: names relative to each folder (or to a glob's fixed part) are kept under ``out_dir``;
an input is never overwritten; an existing output is refused unless ``overwrite`` (or skipped
with ``skip_existing``); two inputs never share one output (the second is skipped, and named); hidden files and files without an image extension are skipped in
folders; an ``out_dir`` inside an input folder is not read as input.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from img2img.errors import UsageError
from img2img.formats import can_write, format_for_path, output_format
from img2img.imageio import DEFAULT_FORMAT, is_image_path

STDIN = "-"
_GLOB_CHARS = frozenset("*?[")


@dataclass
class Job:
    """One input image and where its translation goes."""

    label: str  # the input as the user would name it: photos/sub/a.jpg, or "-"
    source: Path | None  # None: stdin
    output: Path | None  # None: stdout
    fmt: str  # Pillow format to write


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
) -> tuple[list[Job], list[InputError]]:
    """Expand INPUTs into jobs (input -> output), and errors for inputs that match nothing or
    outputs that must not be written.

    Give exactly one destination: ``output`` (one input image), ``out_dir`` (any number; ``ext``
    sets the format, else the input's extension when a translation can be written in it, else
    PNG) or ``to_stdout`` (``ext`` sets the format, default PNG). An output that exists already
    is an error unless ``overwrite``, or skipped with ``skip_existing``; this is only the
    planning-time check, the writer refuses again at the moment it writes. A name the file
    system refuses is an error for that input. Raises UsageError when ``output`` is given and
    the inputs hold more than one image."""
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
            jobs.append(Job(label, source, None, output_format(ext, "--ext") if ext else DEFAULT_FORMAT))
            continue
        if output is not None:
            target = output
        else:
            assert out_dir is not None, "plan_jobs needs output, out_dir or to_stdout"
            suffix = normalise_ext(ext) if ext else relative.suffix
            if not can_write(suffix):
                suffix = ".png"
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
                    problem = "already exists (use --overwrite to replace it, or --skip-existing to keep it)"
            else:
                planned[real_target] = label
                jobs.append(Job(label, source, target, format_for_path(target)))
                continue
        except OSError as exc:  # a name the file system refuses (too long, invalid): this input only
            problem = f"cannot write: {exc.strerror or exc}"
        where = label if problem.startswith("skipped:") else str(target)
        errors.append(InputError(label, f"{where}: {problem}", target, status))
    return jobs, errors


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


__all__ = ["STDIN", "InputError", "Job", "normalise_ext", "plan_jobs"]
