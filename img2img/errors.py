"""Typed errors. Each carries the exit code and a one-line message the CLI prints as is."""

from __future__ import annotations


class Img2ImgError(Exception):
    """Base class: a problem the user can fix, reported as one line without a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(Img2ImgError):
    """Options that contradict each other or do not fit the input; same code as Click's own."""

    exit_code = 2


class WeightsError(Img2ImgError):
    """A weights or checkpoint file that cannot be used: missing, corrupt, unsafe, wrong architecture."""


class ModelNotFoundError(Img2ImgError):
    """A model name that is neither a file, a shipped model, a cached model nor a known download."""


class DownloadError(Img2ImgError):
    """A download that failed, was refused offline, or did not match its checksum."""


class ImageError(Img2ImgError):
    """An input image that cannot be read or an output that cannot be written."""


class OutputExistsError(ImageError):
    """An output file that already exists (perhaps written a moment ago by another process) and
    may not be replaced."""


class DeviceError(Img2ImgError):
    """A requested device that this machine does not have."""


class DatasetError(Img2ImgError):
    """A training data folder that does not have the expected layout or contents."""


class RunFolderError(Img2ImgError):
    """A file of a training run that cannot be written (full disk, read-only folder) or read
    back (a damaged checkpoint or config.json)."""


class TrainingDiverged(Img2ImgError):
    """Training stopped because a loss, gradient or network state stopped being finite; nothing
    was saved after that point."""


class TrainingInterrupted(Img2ImgError):
    """Training stopped by a signal after writing a resumable checkpoint."""

    def __init__(self, message: str, *, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class MissingExtraError(Img2ImgError):
    """An optional extra (``pip install "img2img[...]"``) that a command needs is not installed."""


class OutputError(Img2ImgError, OSError):
    """An output file that cannot be written (its folder cannot be made, it is a folder, the
    filesystem refuses it). Also an OSError, so callers that catch OSError still do."""


class ExportError(Img2ImgError):
    """An export that failed or whose result does not compute what the source model computes."""


class OutOfMemory(Img2ImgError):
    """The work ran out of memory (torch's CPU allocator, CUDA, numpy or Python): said in one
    line with what to lower, instead of the allocator's internals."""


class PushError(Img2ImgError):
    """An upload to the Hugging Face Hub that could not be made: no token, a token the Hub
    refuses, no connection."""


# The options every command that writes files has (img2img.cli._options): what to do with an
# output that exists. The one place the advice about an existing output is worded.
EXISTING_OPTIONS = ("--overwrite", "--skip-existing")


def exists_advice(*, options: tuple[str, ...] = EXISTING_OPTIONS, what: str = "it") -> str:
    """`` (use --overwrite to replace it, or --skip-existing to keep it)``, naming only
    ``options`` (those the command at hand has); empty when it has none."""
    advice = []
    if "--overwrite" in options:
        advice.append(f"use --overwrite to replace {what}")
    if "--skip-existing" in options:
        advice.append(f"--skip-existing to keep {what}")
    return f" ({', or '.join(advice)})" if advice else ""


def exists_message(path: object, *, options: tuple[str, ...] = EXISTING_OPTIONS) -> str:
    """``PATH: already exists (use --overwrite to replace it, or --skip-existing to keep it)``."""
    return f"{path}: already exists{exists_advice(options=options)}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none: what a
    one-line error report quotes of an error raised by other code."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
