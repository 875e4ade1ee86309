"""`img2img report`: the HTML page of one or several training runs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from img2img.cli._app import app
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
) -> None:
    """Write a run's self-contained HTML report (several runs: their curves overlaid).

    The page holds the status, config, loss and validation charts, speed, sample grids per
    epoch and the weights. Training writes RUN/report.html at every epoch's end; this builds it on demand, for
    finished, interrupted and running runs."""
    from img2img.report import write_report

    page = write_report(runs, output, link_images=link_images)
    say(f"wrote {page}", err=True)
