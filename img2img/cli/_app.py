"""The Typer applications; command modules register themselves on these."""

from __future__ import annotations

from typing import Any

import typer

from img2img.cli._help import HelpCommand, HelpGroup


class _Typer(typer.Typer):
    """Groups and commands whose --help reads well (img2img.cli._help), without each command
    having to ask for it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=HelpGroup, **kwargs)

    def command(self, *args: Any, cls: type = HelpCommand, **kwargs: Any):  # type: ignore[override]
        return super().command(*args, cls=cls, **kwargs)


app = _Typer(
    name="img2img",
    help="Train and run image-to-image translation GANs (pix2pix, CycleGAN).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = _Typer(help="List, inspect and download named models.", no_args_is_help=True)
train_app = _Typer(help="Train a pix2pix or CycleGAN model.", no_args_is_help=True)
data_app = _Typer(help="Prepare training data.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(train_app, name="train")
app.add_typer(data_app, name="data")
