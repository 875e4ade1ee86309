"""Synthetic datasets for tests, benchmarks and trying the trainers out: a paired task
(outlines -> filled shapes) and an unpaired one (the same scenes in two palettes). Not part of
the training data path."""

from __future__ import annotations

import os
import random
from pathlib import Path

from PIL import Image

from img2img.errors import UsageError

_SHAPE_COLOURS = {"ellipse": (220, 40, 40), "rectangle": (40, 90, 220), "triangle": (30, 170, 60)}


def shapes_pair(rng: random.Random, size: int = 64, max_shapes: int = 3) -> tuple[Image.Image, Image.Image]:
    """One example of a small learnable task: A has black outlines of ellipses, rectangles and
    triangles on white; B has the same shapes filled, red, blue and green by kind."""
    from PIL import ImageDraw

    a = Image.new("RGB", (size, size), "white")
    b = Image.new("RGB", (size, size), "white")
    draw_a, draw_b = ImageDraw.Draw(a), ImageDraw.Draw(b)
    for _ in range(rng.randint(1, max_shapes)):
        kind = rng.choice(sorted(_SHAPE_COLOURS))
        w, h = rng.randint(size // 5, size // 2), rng.randint(size // 5, size // 2)
        x, y = rng.randint(1, size - w - 2), rng.randint(1, size - h - 2)
        box = [x, y, x + w, y + h]
        outline = {"outline": "black", "width": max(1, size // 32)}
        if kind == "ellipse":
            draw_b.ellipse(box, fill=_SHAPE_COLOURS[kind])
            draw_a.ellipse(box, **outline)
        elif kind == "rectangle":
            draw_b.rectangle(box, fill=_SHAPE_COLOURS[kind])
            draw_a.rectangle(box, **outline)
        else:
            points = [(x, y + h), (x + w, y + h), (x + w // 2, y)]
            draw_b.polygon(points, fill=_SHAPE_COLOURS[kind])
            draw_a.polygon(points, **outline)
    return a, b


def write_shapes_dataset(
    root: str | os.PathLike[str],
    *,
    n_train: int = 64,
    n_val: int = 8,
    size: int = 64,
    layout: str = "aligned",
    seed: int = 0,
) -> Path:
    """Write the outlines -> filled shapes task (see :func:`shapes_pair`) in the aligned
    (``DIR/train/N.png``, A|B) or two-folder (``DIR/train/A/N.png`` + ``B/N.png``) layout; for
    tests, benchmarks and trying the trainer out."""
    root = Path(root)
    rng = random.Random(seed)
    for split, count in (("train", n_train), ("val", n_val)):
        for index in range(count):
            a, b = shapes_pair(rng, size)
            name = f"{index:04d}.png"
            if layout == "aligned":
                both = Image.new("RGB", (size * 2, size))
                both.paste(a, (0, 0))
                both.paste(b, (size, 0))
                (root / split).mkdir(parents=True, exist_ok=True)
                both.save(root / split / name)
            elif layout == "two-folder":
                for side, image in (("A", a), ("B", b)):
                    (root / split / side).mkdir(parents=True, exist_ok=True)
                    image.save(root / split / side / name)
            else:
                raise UsageError(f"unknown layout {layout!r}; valid: aligned, two-folder")
    return root


# --- a synthetic unpaired task ----------------------------------------------------------------

# The same kind of scene (shapes with outlines on a background) in two colour schemes: the
# true A -> B mapping is a per-pixel recolouring, and the colours' areas tell which is which.
PALETTES = {
    "A": {"background": (235, 225, 205), "fill": (200, 40, 40), "outline": (30, 30, 30)},
    "B": {"background": (20, 30, 70), "fill": (250, 210, 60), "outline": (240, 240, 240)},
}


def palette_scenes(rng: random.Random, size: int = 64, max_shapes: int = 3) -> dict[str, Image.Image]:
    """One random scene drawn in each of :data:`PALETTES`: ellipses, rectangles and triangles,
    filled and outlined, on a plain background."""
    from PIL import ImageDraw

    shapes = []
    for _ in range(rng.randint(1, max_shapes)):
        kind = rng.choice(sorted(_SHAPE_COLOURS))
        w, h = rng.randint(size // 5, size // 2), rng.randint(size // 5, size // 2)
        x, y = rng.randint(1, size - w - 2), rng.randint(1, size - h - 2)
        shapes.append((kind, x, y, w, h))
    scenes = {}
    for name, palette in PALETTES.items():
        image = Image.new("RGB", (size, size), palette["background"])
        draw = ImageDraw.Draw(image)
        style = {"fill": palette["fill"], "outline": palette["outline"], "width": max(1, size // 32)}
        for kind, x, y, w, h in shapes:
            if kind == "ellipse":
                draw.ellipse([x, y, x + w, y + h], **style)
            elif kind == "rectangle":
                draw.rectangle([x, y, x + w, y + h], **style)
            else:
                draw.polygon([(x, y + h), (x + w, y + h), (x + w // 2, y)], **style)
        scenes[name] = image
    return scenes


def write_palette_dataset(
    root: str | os.PathLike[str],
    *,
    n_a: int = 64,
    n_b: int = 48,
    n_test: int = 8,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write an unpaired task in the reference's layout (see :func:`palette_scenes`): trainA/
    and trainB/ hold different scenes (``n_a`` and ``n_b`` of them) in palettes A and B; testA/N
    and testB/N hold the same scene in each palette, so testB/N is the true translation of
    testA/N. For tests, benchmarks and trying the CycleGAN trainer out."""
    root = Path(root)
    rng = random.Random(seed)
    for folder in ("trainA", "trainB", "testA", "testB"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(n_a):
        palette_scenes(rng, size)["A"].save(root / "trainA" / f"{index:04d}.png")
    for index in range(n_b):
        palette_scenes(rng, size)["B"].save(root / "trainB" / f"{index:04d}.png")
    for index in range(n_test):
        scenes = palette_scenes(rng, size)
        for name, image in scenes.items():
            image.save(root / f"test{name}" / f"{index:04d}.png")
    return root
