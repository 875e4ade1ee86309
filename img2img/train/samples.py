"""Sample grids: rows of generated images side by side, saved as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from img2img.files.atomic import atomic_path


def image_grid(rows: Sequence[Sequence[torch.Tensor]], padding: int = 2) -> torch.Tensor:
    """Rows of (C, H, W) images in [-1, 1] into one (3, H, W) uint8 grid, white between images."""
    prepared = []
    for row in rows:
        images = []
        for image in row:
            image = image.detach().float().cpu()
            if image.dim() == 4:
                image = image[0]
            if image.shape[0] == 1:
                image = image.expand(3, -1, -1)
            images.append(((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
        prepared.append(images)
    height = sum(max(img.shape[1] for img in row) for row in prepared) + padding * (len(prepared) + 1)
    width = max(sum(img.shape[2] for img in row) + padding * (len(row) + 1) for row in prepared)
    grid = torch.full((3, height, width), 255, dtype=torch.uint8)
    y = padding
    for row in prepared:
        x = padding
        for img in row:
            grid[:, y : y + img.shape[1], x : x + img.shape[2]] = img
            x += img.shape[2] + padding
        y += max(img.shape[1] for img in row) + padding
    return grid


def save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    array = image.permute(1, 2, 0).contiguous().numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
