"""`img2img data combine`: two folders paired by name into the side-by-side (A|B) layout;
`img2img data check`: a dataset's layout and every image, decoded."""

from __future__ import annotations

from pathlib import Path

import typer

from img2img.cli._app import data_app
from img2img.cli._options import MaxPixelsOpt, OverwriteOpt, SkipExistingOpt, check_existing_options


@data_app.command("combine")
def combine(
    dir_a: Path = typer.Argument(..., metavar="A_DIR", help="The A images (or A_DIR/train, val, test)."),
    dir_b: Path = typer.Argument(..., metavar="B_DIR", help="The B images, with the same file names."),
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR", help="Where the A|B images go (split folders mirrored)."),
    overwrite: OverwriteOpt = False,
    skip_existing: SkipExistingOpt = False,
) -> None:
    """Put each A_DIR/x and B_DIR/x side by side in OUT_DIR/x, as the reference's combine_A_and_B.py.

    Pairs are matched by file name (the extensions may differ; a file without a partner stops
    everything before anything is written). A pair that cannot be combined (unreadable, A and B
    of different sizes, output exists) is one error line naming it; the other pairs are still
    written, and the exit status is 1."""
    from img2img.cli import error
    from img2img.data.combine import combine_folders

    check_existing_options(overwrite, skip_existing)
    failures: list[str] = []
    kept: list[Path] = []

    def report(message: str) -> None:
        failures.append(message)
        error(message)

    written = combine_folders(
        dir_a, dir_b, out_dir, overwrite=overwrite, on_error=report, skip_existing=skip_existing, on_skip=kept.append
    )
    typer.echo(
        f"wrote {len(written)} A|B images to {out_dir}" + (f" ({len(kept)} kept: already there)" if kept else ""),
        err=True,
    )
    if failures:
        raise typer.Exit(1)


@data_app.command("check")
def check(
    data_dir: Path = typer.Argument(..., metavar="DIR", help="A dataset: DIR/train (paired) or DIR/trainA + DIR/trainB (unpaired)."),
    header_only: bool = typer.Option(False, "--header-only", help="Read only each image's header (fast; misses truncated files)."),
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Check a training dataset: its layout, and every image decoded (finds truncated or corrupt
    files before a long run; `train ... --check-data full` does the same when training starts).
    Exits 1 with one line naming the files when something is wrong."""
    from img2img.data.checks import check_dataset

    if max_pixels is not None:
        from img2img.imageio import use_max_pixels

        use_max_pixels(max_pixels)
    found = check_dataset(data_dir, full=not header_only)
    typer.echo(f"ok: {found.describe()}", err=True)
    for warning in found.warnings:
        typer.echo(f"warning: {warning}", err=True)
