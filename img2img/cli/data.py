"""`img2img data combine`: two folders paired by name into the side-by-side (A|B) layout;
`img2img data check`: a dataset's layout and every image, decoded."""

from __future__ import annotations

from pathlib import Path

import typer

from img2img.cli._app import data_app
from img2img.cli._options import MaxPixelsOpt, OverwriteOpt, SkipExistingOpt, check_existing_options
from img2img.cli._text import say


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
    say(
        f"wrote {len(written)} A|B images to {out_dir}" + (f" ({len(kept)} kept: already there)" if kept else ""),
        err=True,
    )
    if failures:
        raise typer.Exit(1)


@data_app.command("check")
def check(
    data_dir: Path = typer.Argument(
        ..., metavar="DIR", help="A dataset: DIR/train (paired) or DIR/trainA + DIR/trainB (unpaired)."
    ),
    header_only: bool = typer.Option(
        False, "--header-only", help="Read only each image's header (fast; misses truncated files)."
    ),
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Check a training dataset: its layout, and every image decoded (finds truncated or corrupt
    files before a long run; `train ... --check-data full` does the same when training starts).
    Exits 1 with one line naming the files when something is wrong."""
    from img2img.data.checks import check_dataset

    if max_pixels is not None:
        from img2img.files.imageio import use_max_pixels

        use_max_pixels(max_pixels)
    found = check_dataset(data_dir, full=not header_only)
    say(f"ok: {found.describe()}", err=True)
    for warning in found.warnings:
        say(f"warning: {warning}", err=True)


@data_app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per dataset."),
) -> None:
    """List the reference's datasets that `data download` fetches: name, task, archive size,
    image counts (known once downloaded), how the archive is checked (pinned: a published
    SHA-256; recorded: the first download's; unverified) and a licence note."""
    import json

    from img2img.data.fetch import list_datasets

    rows = list_datasets()
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    columns = ("name", "task", "size", "images", "checked", "licence")
    table = [
        [
            row["name"],
            row["task"],
            _size(row["size"]),
            " ".join(f"{k}:{v}" for k, v in row["images"].items()) if row["images"] else "-",
            row["checked"],
            row["licence"],
        ]
        for row in rows
    ]
    widths = [max(len(key), *(len(line[i]) for line in table)) for i, key in enumerate(columns[:-1])]
    for line in [[key.upper() for key in columns], *table]:
        cells = [cell.ljust(width) for cell, width in zip(line, widths)] + [line[-1]]
        typer.echo("  ".join(cells).rstrip())


def _size(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


@data_app.command("download")
def download(
    name: str = typer.Argument(
        ..., metavar="NAME", help="A dataset of `img2img data list` (facades, horse2zebra, cyclegan/maps...)."
    ),
    out: Path = typer.Option(
        None, "--out", help="The dataset folder to create (default: datasets/NAME, as the reference's scripts)."
    ),
    progress: bool = typer.Option(
        None, "--progress/--no-progress", help="A progress bar (default: when stderr is a terminal)."
    ),
) -> None:
    """Download one of the reference's datasets, check it and unpack it ready to train:
    `train pix2pix --data DIR` / `train cyclegan --data DIR` read the folder as it is.

    The archive is kept in $IMG2IMG_CACHE/datasets; an interrupted download resumes (HTTP Range)
    the next time. Its size and SHA-256 are checked when published (the CycleGAN zips); for the
    others the first download's SHA-256 is recorded, printed, and required afterwards. The
    archive is unpacked into a hidden temporary folder and moved into place when complete:
    members outside the folder, links pointing out, devices and archives that unpack to far
    more than their size are refused. Names both tasks use (facades, maps, cityscapes) take
    the task: pix2pix/facades or cyclegan/facades."""
    from img2img.data.fetch import download_dataset, find_dataset

    entry = find_dataset(name)
    dest = out if out is not None else Path("datasets") / entry.short

    def note(line: str) -> None:
        say(line, err=True)

    done = download_dataset(entry, dest, progress=progress, note=note)
    if done.verified:
        say(f"sha256 {done.sha256}: matches the published hash", err=True)
    elif done.recorded:
        say(
            f"sha256 {done.sha256}: unverified (no published hash); recorded, later downloads must match it",
            err=True,
        )
    else:
        say(f"sha256 {done.sha256}: matches the hash recorded at the first download", err=True)
    counts = ", ".join(f"{k} {v}" for k, v in done.counts.items())
    say(f"wrote {done.folder} ({counts} images); licence: {entry.licence}", err=True)
    if entry.splits and entry.splits[0] != "testA":
        say(f"train with: img2img train {entry.task} --data {done.folder}", err=True)


@data_app.command("prepare")
def prepare(
    name: str = typer.Argument(..., metavar="NAME", help="The dataset to build: cityscapes."),
    gtfine: Path = typer.Option(
        ..., "--gtfine", help="Your gtFine_trainvaltest.zip (or its unzipped folder) from cityscapes-dataset.com."
    ),
    leftimg8bit: Path = typer.Option(
        ..., "--leftimg8bit", help="Your leftImg8bit_trainvaltest.zip (or its unzipped folder)."
    ),
    out: Path = typer.Option(Path("datasets/cityscapes"), "--out", help="The dataset folder to create."),
) -> None:
    """Build a dataset that cannot be redistributed from your own downloads. cityscapes: the
    pix2pix pairs of the reference's prepare_cityscapes_dataset.py (photo | colour labels, each
    256x256, val -> test/), plus trainA/trainB/testA/testB for CycleGAN."""
    from img2img.data.cityscapes import prepare_cityscapes
    from img2img.errors import UsageError

    if name != "cityscapes":
        raise UsageError(f"{name}: `data prepare` builds only cityscapes (the others: `img2img data download`)")
    for option, path in (("--gtfine", gtfine), ("--leftimg8bit", leftimg8bit)):
        if not path.exists():
            raise UsageError(f"{option} {path}: no such file or folder")
    counts = prepare_cityscapes(gtfine, leftimg8bit, out, note=lambda line: say(line, err=True))
    say(f"wrote {out} ({', '.join(f'{k} {v}' for k, v in counts.items())} pairs)", err=True)
    say(f"train with: img2img train pix2pix --data {out}", err=True)
