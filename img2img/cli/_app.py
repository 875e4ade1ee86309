"""The Typer applications; command modules register themselves on these."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="img2img",
    help="Train and run image-to-image translation GANs (pix2pix, CycleGAN).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = typer.Typer(help="List, inspect and download named models.", no_args_is_help=True)
train_app = typer.Typer(help="Train a pix2pix or CycleGAN model.", no_args_is_help=True)
data_app = typer.Typer(help="Prepare training data.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(train_app, name="train")
app.add_typer(data_app, name="data")
