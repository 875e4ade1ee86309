"""`img2img report`: the HTML page of one or several training runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from img2img.cli._app import app
from img2img.cli._options import SkipExistingOpt, check_existing_options, kept_existing, overwrite_option
from img2img.cli._text import say


@app.command("report")
def report(
    runs: List[Path] = typer.Argument(..., metavar="RUN...", help="Run folders (runs/NAME)."),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Where the page goes \\[default: RUN/report.html; required for several runs]."
    ),
    link_images: bool = typer.Option(
        False, "--link-images", help="Link the sample grids by relative path instead of embedding them (large runs)."
    ),
    overwrite: Annotated[
        bool,
        overwrite_option(
            "Replace the -o file if it exists (RUN/report.html, the run's own page, is always brought up to date)."
        ),
    ] = False,
    skip_existing: SkipExistingOpt = False,
) -> None:
    """Write a run's self-contained HTML report (several runs: their curves overlaid).

    The page holds the status, config, loss and validation charts, speed, sample grids per
    epoch and the weights. Training writes RUN/report.html at every epoch's end; this builds it on demand, for
    finished, interrupted and running runs."""
    from img2img.errors import OutputExistsError, exists_message
    from img2img.report.page import write_report

    check_existing_options(overwrite, skip_existing)
    if output is not None and kept_existing(output, overwrite=overwrite, skip_existing=skip_existing):
        return
    try:
        page = write_report(runs, output, link_images=link_images, replace=output is None or overwrite)
    except FileExistsError:  # written by another process while this one made the page
        if skip_existing:
            say(f"kept {output} (it appeared while writing the report; --skip-existing)", err=True)
            return
        raise OutputExistsError(exists_message(output)) from None
    say(f"wrote {page}", err=True)
