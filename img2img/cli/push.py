"""`img2img push`: a model or a training run uploaded to the Hugging Face Hub with a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from img2img.cli._app import app
from img2img.cli._options import check_existing_options, overwrite_option, skip_existing_option


@app.command("push")
def push(
    source: str = typer.Argument(
        ..., metavar="MODEL_OR_RUN", help="A training run folder, a weights file or a model name."
    ),
    repo: str = typer.Option(..., "--repo", help="The Hub repo to push to, OWNER/NAME (created if needed)."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    revision: str = typer.Option(None, "--revision", help="The branch to push to (created if needed; default main)."),
    licence: str = typer.Option(
        "other", "--license", help="The weights' licence id for the card (e.g. mit, cc-by-nc-4.0)."
    ),
    dry_run: Path = typer.Option(
        None, "--dry-run", metavar="DIR", help="Write the repo's files to DIR instead of uploading."
    ),
    overwrite: Annotated[bool, overwrite_option("Replace a --dry-run folder that exists.")] = False,
    skip_existing: Annotated[
        bool, skip_existing_option("Keep a --dry-run folder that exists (nothing is written).")
    ] = False,
) -> None:
    """Push a generator to the Hugging Face Hub with a model card: the weights as they are
    (both directions of a CycleGAN run), the validation scores the run measured (as
    model-index results), its sample grid, training options, licence and the exact
    `img2img translate ... --model hf:OWNER/NAME` line. The token is huggingface_hub's:
    HF_TOKEN or `hf auth login`."""
    from img2img.hub.push import build_folder, translate_lines
    from img2img.hub.push import push as upload

    check_existing_options(overwrite, skip_existing)
    if dry_run is not None and dry_run.exists() and skip_existing:
        from img2img.hub.push import read_source

        source_info = read_source(source)
        typer.echo(f"kept {dry_run} (already there; --skip-existing)", err=True)
    elif dry_run is not None:
        source_info = build_folder(source, repo, dry_run, revision=revision, licence=licence, overwrite=overwrite)
        typer.echo(f"wrote {dry_run} (nothing uploaded)", err=True)
    else:
        from img2img.hub.push import read_source

        url = upload(source, repo, private=private, revision=revision, licence=licence)
        source_info = read_source(source)
        typer.echo(f"pushed to {url}", err=True)
    for line in translate_lines(repo, revision, source_info):
        typer.echo(line)
