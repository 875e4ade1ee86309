"""Printing text that may come from files (metadata, names, messages): see img2img.files.text."""

from __future__ import annotations

from img2img.files.text import one_line


def say(text: str, *, err: bool = False) -> None:
    """Print ``text`` (any value from a file: metadata, a model's source) on stdout, or stderr
    with ``err``, as one line escaped by ``one_line``."""
    import typer

    typer.echo(one_line(str(text)), err=err)
