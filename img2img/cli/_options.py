"""Choices and option types shared by several commands."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer


class Direction(str, Enum):
    AtoB = "AtoB"
    BtoA = "BtoA"


class Norm(str, Enum):
    batch = "batch"
    instance = "instance"
    none = "none"


# The decompression-bomb limit of the commands that read a dataset (`train`, `data check`); the
# same option, variable and default as translate's (img2img.imageio.use_max_pixels).
MaxPixelsOpt = Annotated[Optional[int], typer.Option(
    "--max-pixels", metavar="N", min=1, envvar="IMG2IMG_MAX_PIXELS", show_default=False,
    help="Read images of up to N pixels, lifting the decompression-bomb limit (twice Pillow's, "
    "about 179 million) on purpose [env: IMG2IMG_MAX_PIXELS].",
)]
