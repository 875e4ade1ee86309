"""`img2img convert`: a reference checkpoint (.pth) into the weights format."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from img2img.cli._app import app
from img2img.cli._options import Direction, Norm


@app.command("convert")
def convert(
    checkpoint: Path = typer.Argument(..., help="The reference's latest_net_G.pth (a state dict)."),
    output: Path = typer.Option(..., "-o", "--output", help="The .safetensors file to write."),
    arch: str = typer.Option(
        ..., "--arch", "--netg", help="resnet_9blocks, resnet_6blocks, unet_256, unet_128, unet_N."
    ),
    norm: Optional[Norm] = typer.Option(
        None, help="Normalisation layers \\[default: instance for resnet, batch for unet]."
    ),
    ngf: int = typer.Option(64, help="Filters in the generator's last conv layer."),
    input_nc: int = typer.Option(3, "--input-nc", help="Input channels (1 grayscale, 3 RGB)."),
    output_nc: int = typer.Option(3, "--output-nc", help="Output channels."),
    no_dropout: Optional[bool] = typer.Option(
        None,
        "--no-dropout/--dropout",
        help="Whether the network was built without dropout \\[default: no dropout for resnet, "
        "dropout for unet]. Dropout is never used at inference; it only changes the layer keys "
        "of a resnet.",
    ),
    direction: Direction = typer.Option(Direction.AtoB, help="The direction this generator maps."),
    eval_mode: Optional[bool] = typer.Option(
        None,
        "--eval-mode/--per-image-norm",
        help="Batch norm with running statistics (--eval-mode) or each image's own statistics as "
        "in training at batch size 1 [default: per-image for batch-norm pix2pix models].",
    ),
    force: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
) -> None:
    """Convert a pytorch-CycleGAN-and-pix2pix generator checkpoint to img2img's weights format."""
    from img2img.config import GeneratorConfig, parse_generator_name
    from img2img.errors import UsageError
    from img2img.weights import WeightsMetadata, convert_reference_checkpoint

    if output.exists() and not force:
        raise UsageError(f"{output}: already exists (use --overwrite to replace it)")
    arch_options = parse_generator_name(arch)
    is_unet = arch_options["arch"] == "unet"
    norm_name = norm.value if norm else ("batch" if is_unet else "instance")
    config = GeneratorConfig(
        **arch_options,
        input_nc=input_nc,
        output_nc=output_nc,
        ngf=ngf,
        norm=norm_name,
        use_dropout=(not no_dropout) if no_dropout is not None else is_unet,
    )
    metadata = WeightsMetadata(
        generator=config,
        task="pix2pix" if is_unet else "cyclegan",
        direction=direction.value,
        eval_mode=eval_mode if eval_mode is not None else norm_name != "batch",
        source=f"converted from reference checkpoint {checkpoint.name}",
    )
    convert_reference_checkpoint(checkpoint, output, metadata)
    typer.echo(f"wrote {output} ({config.reference_name}, {norm_name} norm, {direction.value})", err=True)
