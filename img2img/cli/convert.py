"""`img2img convert`: a reference checkpoint (.pth) into the weights format."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from img2img.cli._app import app
from img2img.cli._options import Direction, Norm, OverwriteOpt, SkipExistingOpt, check_existing_options, kept_existing
from img2img.cli._text import say


class PaddingType(str, Enum):
    reflect = "reflect"
    replicate = "replicate"
    zero = "zero"


@app.command("convert")
def convert(
    checkpoint: Path = typer.Argument(
        ..., help="The reference's latest_net_G.pth (a generator state dict; a safetensors state dict also works)."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="The .safetensors file to write."),
    arch: Optional[str] = typer.Option(
        None,
        "--arch",
        "--netg",
        help="resnet_9blocks, resnet_6blocks, unet_256, unet_128, unet_N \\[default: read from the "
        "checkpoint]. Every architecture option is read from the checkpoint's tensors; one that "
        "is given must agree with them.",
        show_default=False,
    ),
    norm: Optional[Norm] = typer.Option(None, help="batch, instance or none \\[default: read from the checkpoint]."),
    ngf: Optional[int] = typer.Option(None, help="Filters in the generator's last conv layer \\[default: read]."),
    input_nc: Optional[int] = typer.Option(None, "--input-nc", help="Input channels \\[default: read]."),
    output_nc: Optional[int] = typer.Option(None, "--output-nc", help="Output channels \\[default: read]."),
    no_dropout: Optional[bool] = typer.Option(
        None,
        "--no-dropout/--dropout",
        help="Whether the network was built without dropout \\[default: read from a resnet's keys; "
        "a unet's keys do not show it: dropout]. Dropout is never used at inference.",
        show_default=False,
    ),
    padding_type: Optional[PaddingType] = typer.Option(
        None,
        "--padding-type",
        help="A resnet's padding \\[default: zero or reflect, read from the keys; replicate cannot "
        "be told from reflect].",
        show_default=False,
    ),
    direction: Direction = typer.Option(Direction.AtoB, help="The direction this generator maps."),
    eval_mode: Optional[bool] = typer.Option(
        None,
        "--eval-mode/--per-image-norm",
        help="Batch norm with running statistics (--eval-mode) or each image's own statistics as "
        "in training at batch size 1 \\[default: per-image for batch-norm models].",
        show_default=False,
    ),
    force: OverwriteOpt = False,
    skip_existing: SkipExistingOpt = False,
) -> None:
    """Convert a pytorch-CycleGAN-and-pix2pix generator checkpoint to img2img's weights format.

    The architecture (ResNet/U-Net, blocks or depth, ngf, norm, dropout, channels) is read from it.
    """
    from img2img.errors import OutputExistsError, WeightsError, exists_message
    from img2img.models.config import parse_generator_name

    check_existing_options(force, skip_existing)
    if kept_existing(output, overwrite=force, skip_existing=skip_existing):
        return
    options = dict(parse_generator_name(arch)) if arch else {}
    options.update(
        norm=norm.value if norm else None,
        ngf=ngf,
        input_nc=input_nc,
        output_nc=output_nc,
        use_dropout=None if no_dropout is None else not no_dropout,
        padding_type=padding_type.value if padding_type else None,
    )
    from img2img.models.reference import describe_config
    from img2img.models.weights import convert_reference_checkpoint

    try:
        metadata = convert_reference_checkpoint(
            checkpoint,
            output,
            options=options,
            replace=force,
            direction=direction.value,
            eval_mode=eval_mode,
            source=f"converted from reference checkpoint {checkpoint.name}",
        )
    except FileExistsError:  # written by someone else since the check above
        if skip_existing:
            typer.echo(f"kept {output} (it appeared while converting; --skip-existing)", err=True)
            return
        raise OutputExistsError(exists_message(output)) from None
    except OSError as exc:  # a name or folder the file system refuses
        raise WeightsError(f"{output}: cannot write: {exc.strerror or exc}") from None
    say(f"wrote {output} ({describe_config(metadata.generator)}, {direction.value})", err=True)
