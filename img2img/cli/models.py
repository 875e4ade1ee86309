"""`img2img models`: list, inspect and download named models."""

from __future__ import annotations

import json

import typer

from img2img.cli._app import models_app


@models_app.command("info")
def info(
    model: str = typer.Argument(..., help="A weights file or a model name."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show a model's architecture, parameter count, size, direction and source."""
    from img2img.registry import resolve_model
    from img2img.weights import describe

    details = describe(resolve_model(model))
    if as_json:
        typer.echo(json.dumps(details))
        return
    for key, value in details.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        typer.echo(f"{key:16} {value}")
