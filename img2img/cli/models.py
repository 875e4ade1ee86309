"""`img2img models`: list, inspect and download named models."""

from __future__ import annotations

import json
from typing import Any

import typer

from img2img.cli._app import models_app
from img2img.cli._text import say
from img2img.files.text import one_line


@models_app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per model."),
) -> None:
    """List the known models and where each one is: shipped, cached or downloadable."""
    from img2img.hub.registry import list_models

    rows = list_models()
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    columns = ("name", "task", "direction", "architecture", "status", "description")
    # Escaped before the widths are measured, so the columns line up on the terminal.
    table = [[one_line(str(row.get(key) or "-")) for key in columns] for row in rows]
    widths = [max(len(key), *(len(line[i]) for line in table)) for i, key in enumerate(columns[:-1])]
    for line in [[key.upper() for key in columns], *table]:
        cells = [cell.ljust(width) for cell, width in zip(line, widths)] + [line[-1]]
        say("  ".join(cells).rstrip())


@models_app.command("info")
def info(
    model: str = typer.Argument(..., help="A weights file, a model name, or hf:OWNER/REPO (or hf:OWNER/REPO/FILE)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show a model's architecture, parameter count, size, direction and source (a known name
    that is not on this machine yet is described from the registry, without downloading it)."""
    from img2img.hub.registry import HF_PREFIX, find_local_model, load_registry, model_status

    path = find_local_model(model)
    entry = None if model.startswith(HF_PREFIX) else load_registry().get(model)
    details: dict[str, Any] = {}
    if entry is not None:
        status, _ = model_status(entry)
        details.update(name=entry.name, status=status)
    if path is None:
        if entry is not None:
            details.update({k: v for k, v in entry.to_dict().items() if k != "name"})
        else:  # an hf: spec that is not in the Hugging Face cache
            details.update(name=model, status="downloadable", location=model)
        details["pull"] = f"img2img models pull {model}"
    else:
        from img2img.onnx.runtime import is_onnx_file

        if is_onnx_file(path):
            from img2img.onnx.info import describe_onnx as describe
        else:
            from img2img.models.weights import describe

        details.update(describe(path))
        if entry is not None:
            details["location"] = entry.location
        if model.startswith(HF_PREFIX):  # what `img2img push` put on the model's card
            from img2img.hub.push import card_scores

            scores, why = card_scores(model)
            details["card_scores"] = scores if scores else f"- ({why})"
    if as_json:
        typer.echo(json.dumps(details))
        return
    for key, value in details.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        # Every value comes from the file (its metadata, its source): one line each, escaped.
        say(f"{key:16} {'-' if value is None else value}")


@models_app.command("pull")
def pull(
    model: str = typer.Argument(
        ..., help="A model name (see `img2img models list`), or hf:OWNER/REPO (or hf:OWNER/REPO/FILE)."
    ),
    force: bool = typer.Option(False, "--force", help="Download again even if it is cached."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or messages."),
) -> None:
    """Download a model, check and convert it, and keep it in the cache ($IMG2IMG_CACHE, default
    ~/.cache/img2img; Hugging Face models stay in the Hugging Face cache); prints its path."""
    from img2img.hub.registry import pull_model

    result = pull_model(model, force=force, progress=False if quiet else None)
    if not quiet:
        message = {
            "downloaded": f"{model}: downloaded",
            "cached": f"{model}: already cached (--force downloads it again)",
            "shipped": f"{model}: shipped with img2img, nothing to download",
        }[result.status]
        typer.echo(message, err=True)
    typer.echo(str(result.path))
