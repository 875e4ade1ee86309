"""Choices and option types shared by several commands."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer


class Direction(str, Enum):
    AtoB = "AtoB"
    BtoA = "BtoA"


class Norm(str, Enum):
    batch = "batch"
    instance = "instance"
    none = "none"


# The decompression-bomb limit of the commands that read a dataset (`train`, `data check`); the
# same option, variable and default as translate's (img2img.files.imageio.use_max_pixels).
MaxPixelsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--max-pixels",
        metavar="N",
        min=1,
        envvar="IMG2IMG_MAX_PIXELS",
        show_default=False,
        help="Read images of up to N pixels, lifting the decompression-bomb limit (twice Pillow's, "
        "about 179 million) on purpose [env: IMG2IMG_MAX_PIXELS].",
    ),
]


# --- what a command does with outputs that exist: one pair of options for every command that
# writes files (translate, eval --save-outputs, export, convert, report, data combine, train).
# The messages about an existing output (img2img.errors.exists_message) name exactly these.


def overwrite_option(help: str = "Replace outputs that exist.", panel: str | None = None) -> typer.models.OptionInfo:
    """``--overwrite``; ``help`` says what it replaces for the command at hand."""
    return typer.Option("--overwrite", help=help, rich_help_panel=panel)


def skip_existing_option(
    help: str = "Keep outputs that exist and write only the missing ones (exit 0 when all are there).",
    panel: str | None = None,
) -> typer.models.OptionInfo:
    """``--skip-existing``: re-running a command after a partial failure writes only what is missing."""
    return typer.Option("--skip-existing", help=help, rich_help_panel=panel)


OverwriteOpt = Annotated[bool, overwrite_option()]
SkipExistingOpt = Annotated[bool, skip_existing_option()]


def check_existing_options(overwrite: bool, skip_existing: bool) -> None:
    """--overwrite and --skip-existing together: a usage error before any work."""
    if overwrite and skip_existing:
        from img2img.errors import UsageError

        raise UsageError("--overwrite and --skip-existing contradict each other; give one")


def kept_existing(output, *, overwrite: bool, skip_existing: bool) -> bool:
    """The check before any work of a command that writes one file ``output``: True when it
    exists and --skip-existing keeps it (said on stderr: the command then has nothing to do);
    a UsageError naming both options when it exists and neither is given. The write itself
    still refuses a file that appears meanwhile (img2img.files.atomic)."""
    from pathlib import Path

    from img2img.errors import UsageError, exists_message

    output = Path(output)
    if output.is_dir():
        raise UsageError(f"{output}: is a folder, not a file")
    if not output.exists() or overwrite:
        return False
    if skip_existing:
        typer.echo(f"kept {output} (already there; --skip-existing)", err=True)
        return True
    raise UsageError(exists_message(output))
