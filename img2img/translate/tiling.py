"""Tiled inference: translate images of any size in overlapping tiles, with whole-image
normalisation statistics and seam-free blending.

Why not plain tiles: instance norm (CycleGAN) and per-image batch norm (pix2pix, as translate
runs it) normalise by the statistics of whatever they are given. Cut into tiles, every tile gets
its own statistics, hence its own colours, and the seams show. Here every tile is normalised with
statistics of the whole image instead, obtained in one of these ways (``stats``):

- ``thumbnail`` (default): one pass over a downscaled copy of the whole image records each norm
  layer's per-channel mean and variance; every tile then uses them ("thumbnail instance
  normalization", Chen et al., *Towards Ultra-Resolution Neural Style Transfer via Thumbnail
  Instance Normalization*, AAAI 2022). Cost: one extra pass at tile size.
- ``exact``: the statistics of the full-resolution image, accumulated layer by layer over the
  tiles: a pass over all tiles up to the first norm layer (whose statistics are then fixed), a
  pass up to the second, and so on. Each layer sees the same inputs as in one pass, apart from
  what tile borders change. Cost: about half a tiled pass per norm layer.
- ``tile``: each tile's own statistics: what cutting an image into tiles naively gives; kept as
  the baseline the benchmarks compare with.

Blending: tiles overlap; along each axis a tile's weight is 0 in the outer third of each
overlap (where the tile's own padding distorts the output), then rises as a raised cosine to 1,
and the weights of all tiles sum to 1 at every pixel. Tiles are processed row by row and the
output is accumulated in a strip one tile row high, so the memory beyond the input and output
images is bounded by the tile size (and the image width, for the strip).

The automatic mode (``TileSettings``) plans with img2img.models.memory: a memory budget and a forward
pass's peak estimated from a small probe.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Literal

import numpy as np
import torch
from torch import nn

TileStats = Literal["thumbnail", "exact", "tile"]
TILE_STATS = ("thumbnail", "exact", "tile")

# The thumbnail's size when memory allows: larger than a small tile, because statistics of a
# heavily downscaled image drift from the full image's.
THUMBNAIL_PIXELS = 1024 * 1024


# --- the tile grid ----------------------------------------------------------------------------


def _axis_starts(length: int, tile: int, overlap: int, step: int) -> tuple[int, ...]:
    """Tile starts, multiples of ``step``, evenly spread over [0, length) (itself a multiple of
    ``step``, as ``tile`` is) so that neighbours overlap by at least ``overlap``."""
    if length <= tile:
        return (0,)
    stride = max(step, (tile - overlap) // step * step)
    count = math.ceil((length - tile) / stride) + 1
    units = (length - tile) // step
    return tuple(round(i * units / (count - 1)) * step for i in range(count))


@dataclass(frozen=True)
class TilePlan:
    """How one image of ``height`` x ``width`` is cut. Coordinates are those of the image padded
    as for one pass (``padded_height`` x ``padded_width``, the image at ``top``, ``left``): tiles
    of ``tile_height`` x ``tile_width`` start at ``ys`` x ``xs``, multiples of the network's
    size multiple, so that every tile samples the same grid of its stride-2 layers as one pass
    does. Neighbours overlap by at least ``overlap`` pixels (what was asked for, rounded up to
    what multiples of the size multiple allow); tiles are normalised with ``stats``
    statistics (for "thumbnail": from a copy downscaled to at most ``thumbnail_pixels``)."""

    height: int
    width: int
    top: int
    left: int
    padded_height: int
    padded_width: int
    tile_height: int
    tile_width: int
    overlap: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    stats: str
    thumbnail_pixels: int

    @classmethod
    def make(
        cls,
        height: int,
        width: int,
        padded: tuple[int, int],
        multiple: int,
        tile: int | tuple[int, int],
        overlap: int,
        stats: str = "thumbnail",
        thumbnail_pixels: int | None = None,
    ) -> TilePlan:
        """``padded``: the (height, width) one pass would pad to, multiples of ``multiple``, as
        ``tile`` (a side, or (height, width)) must be."""
        tile_h, tile_w = (tile, tile) if isinstance(tile, int) else tile
        if tile_h % multiple or tile_w % multiple or padded[0] % multiple or padded[1] % multiple:
            raise ValueError(f"tile {tile} and padded size {padded} must be multiples of {multiple}")
        ys = _axis_starts(padded[0], tile_h, overlap, multiple)
        xs = _axis_starts(padded[1], tile_w, overlap, multiple)
        # Starts are multiples, so the real overlap can exceed the one asked for: report that.
        overlaps = [a + tile_h - b for a, b in zip(ys, ys[1:])] + [a + tile_w - b for a, b in zip(xs, xs[1:])]
        return cls(
            height,
            width,
            (padded[0] - height) // 2,  # as inference.pad_to_multiple centres the image
            (padded[1] - width) // 2,
            padded[0],
            padded[1],
            min(tile_h, padded[0]),
            min(tile_w, padded[1]),
            min(overlaps, default=overlap),
            ys,
            xs,
            stats,
            thumbnail_pixels or tile_h * tile_w,
        )

    @property
    def tile_count(self) -> int:
        return len(self.ys) * len(self.xs)

    def as_dict(self) -> dict:
        """What ``--json`` reports."""
        return {
            "tile": [self.tile_width, self.tile_height],
            "overlap": self.overlap,
            "tiles": self.tile_count,
            "grid": [len(self.xs), len(self.ys)],
            "stats": self.stats,
            **({"thumbnail_pixels": self.thumbnail_pixels} if self.stats == "thumbnail" else {}),
        }


def _axis_weights(starts: tuple[int, ...], tile: int, length: int) -> list[torch.Tensor]:
    """One 1-D weight per tile along an axis; they sum to 1 at every position."""
    raw = []
    for i, start in enumerate(starts):
        w = torch.ones(tile, dtype=torch.float64)
        if i > 0:
            w[: starts[i - 1] + tile - start] *= _ramp(starts[i - 1] + tile - start)
        if i < len(starts) - 1:
            w[starts[i + 1] - start :] *= _ramp(start + tile - starts[i + 1]).flip(0)
        raw.append(w)
    total = torch.zeros(length, dtype=torch.float64)
    for start, w in zip(starts, raw):
        total[start : start + tile] += w
    return [(w / total[start : start + tile]).float() for start, w in zip(starts, raw)]


def _ramp(overlap: int) -> torch.Tensor:
    """0 over the first third of the overlap (the border that padding distorts), then a
    raised cosine up to 1 at its last third; its mirror image plus itself is 1 everywhere."""
    margin = overlap // 3
    rise = max(overlap - 2 * margin, 1)
    t = (torch.arange(overlap, dtype=torch.float64) - margin + 0.5) / rise
    return 0.5 - 0.5 * torch.cos(math.pi * t.clamp(0, 1))


def _owned(starts: tuple[int, ...], tile: int, length: int) -> list[tuple[int, int]]:
    """The part of each tile (in tile coordinates) that it owns: up to the middle of each
    overlap. Together they partition [0, length); statistics are accumulated over them."""
    cuts = [0] + [(starts[i] + starts[i - 1] + tile) // 2 for i in range(1, len(starts))] + [length]
    return [(cuts[i] - s, cuts[i + 1] - s) for i, s in enumerate(starts)]


# --- shared normalisation statistics --------------------------------------------------------


def _norm_parameters(module: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None, float] | None:
    """(weight, bias, eps) of a layer that normalises each image by its own per-channel
    statistics (instance norm, per-image batch norm, or inference's group-norm form of both)."""
    from img2img.models.determinism import InstanceNormInference
    from img2img.models.networks import PerImageBatchNorm

    if isinstance(module, nn.InstanceNorm2d) and not module.track_running_stats:
        return module.weight, module.bias, module.eps
    if isinstance(module, (PerImageBatchNorm, InstanceNormInference)):
        return module.weight, module.bias, module.eps
    return None


class _StopForward(Exception):
    """Raised by the first norm layer still collecting statistics in an ``exact`` pass: the
    rest of the network is not needed yet."""


class SharedStatsNorm(nn.Module):
    """Per-image normalisation whose statistics can be recorded, accumulated and reused.

    Modes: ``own`` normalises by the input's own per-channel statistics (as the layer it
    replaces); ``record`` does the same and keeps them; ``apply`` uses the kept ones;
    ``collect`` notes the statistics of the input's owned region (``StatsController.region``)
    and stops the forward pass. ``commit`` adds the noted statistics to a running total, ``adopt`` makes
    the total the kept statistics. Input (N, C, H, W) any float dtype; the statistics are
    float32, (1, C, 1, 1), biased variance as instance norm uses."""

    def __init__(self, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float, controller: StatsController):
        super().__init__()
        self.weight, self.bias, self.eps = weight, bias, eps
        self.controller = controller
        self.mode = "own"
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None
        self._total: tuple[int, torch.Tensor, torch.Tensor] | None = None  # count, mean, var
        self._pending: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "collect":
            self._pending = self.controller.region_statistics(x)
            raise _StopForward
        if self.mode in ("own", "record"):
            from img2img.models.determinism import instance_norm_statistics, normalise  # thread-count independent

            mean, var = instance_norm_statistics(x)
            if self.mode == "record":
                self.mean, self.var = mean.mean(0, keepdim=True), var.mean(0, keepdim=True)
            return normalise(x, mean, var, self.eps, self.weight, self.bias)
        from img2img.models.determinism import normalise

        return normalise(x, self.mean, self.var, self.eps, self.weight, self.bias)

    def commit(self) -> None:
        """Merge the last collected tile into the running statistics (Chan et al.'s parallel
        variance update), so that a pass that was retried is never counted twice."""
        if self._pending is None:
            return
        count, mean, var = self._pending
        self._pending = None
        if self._total is None:
            self._total = count, mean, var
            return
        n, total_mean, total_var = self._total
        total = n + count
        delta = mean - total_mean
        m2 = total_var * n + var * count + delta**2 * (n * count / total)
        self._total = total, total_mean + delta * (count / total), m2 / total

    def adopt(self) -> None:
        """Use the accumulated statistics from now on, and start a new total."""
        _, self.mean, self.var = self._total
        self._total = None


class StatsController:
    """The norm layers of one network, swapped for SharedStatsNorm for the duration of
    ``shared_statistics`` and switched between modes together."""

    def __init__(self) -> None:
        self.norms: list[SharedStatsNorm] = []
        # The region of the current tile that it owns, in tile pixels: top, bottom, left,
        # right, tile height, tile width.
        self.region: tuple[int, int, int, int, int, int] | None = None

    def set_mode(self, mode: str) -> None:
        for norm in self.norms:
            norm.mode = mode

    def region_statistics(self, x: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
        top, bottom, left, right, in_h, in_w = self.region
        fh, fw = x.shape[-2:]
        r0, r1 = _scaled(top, bottom, fh / in_h, fh)
        c0, c1 = _scaled(left, right, fw / in_w, fw)
        part = x[..., r0:r1, c0:c1].float()
        mean = part.mean((2, 3), keepdim=True).mean(0, keepdim=True)
        var = part.var((2, 3), unbiased=False, keepdim=True).mean(0, keepdim=True)
        return (r1 - r0) * (c1 - c0), mean, var


def _scaled(lo: int, hi: int, scale: float, size: int) -> tuple[int, int]:
    a = min(int(round(lo * scale)), size - 1)
    return a, max(min(int(round(hi * scale)), size), a + 1)


def _swap_norms(net: nn.Module, controller: StatsController, undo: list) -> None:
    for name, child in net.named_children():
        params = _norm_parameters(child)
        if params is not None:
            wrapper = SharedStatsNorm(*params, controller)
            controller.norms.append(wrapper)
            setattr(net, name, wrapper)
            undo.append((net, name, child))
        else:
            _swap_norms(child, controller, undo)


@contextmanager
def shared_statistics(net: nn.Module) -> Iterator[StatsController]:
    """Within the block, ``net``'s per-image norm layers are SharedStatsNorm layers driven by
    the yielded controller; afterwards the original layers are back. Weights are shared, not
    copied."""
    controller, undo = StatsController(), []
    _swap_norms(net, controller, undo)
    try:
        yield controller
    finally:
        for parent, name, child in reversed(undo):
            setattr(parent, name, child)


# --- downscaling for the thumbnail --------------------------------------------------------------


def thumbnail(pixels: np.ndarray, max_pixels: int) -> np.ndarray:
    """H x W x C float32 -> a box-filtered (area-averaged) copy with at most ``max_pixels``
    pixels, by an integer factor; computed in bands so that no full-size copy is made."""
    height, width = pixels.shape[:2]
    factor = max(1, math.ceil(math.sqrt(height * width / max_pixels)))
    if factor == 1:
        return pixels
    out_h, out_w = height // factor, width // factor
    out = np.empty((out_h, out_w, pixels.shape[2]), dtype=np.float32)
    band = max(1, (1 << 22) // (width * factor))  # output rows per step: ~4 M input values
    for r in range(0, out_h, band):
        rows = min(band, out_h - r)
        block = pixels[r * factor : (r + rows) * factor, : out_w * factor]
        out[r : r + rows] = block.reshape(rows, factor, out_w, factor, -1).mean((1, 3), dtype=np.float32)
    return out


# --- running the tiles ---------------------------------------------------------------------------

# (1, C, h, w) float32 in [-1, 1] on the CPU -> (1, C', h, w) float32 in [-1, 1], any device.
Forward = Callable[[torch.Tensor], torch.Tensor]
# (1, C, H, W) -> (padded copy, crop back): inference.pad_to_multiple, for the thumbnail.
Pad = Callable[[torch.Tensor], tuple[torch.Tensor, object]]


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    # [0, 1] -> [-1, 1], as Translator does for a whole image.
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).unsqueeze(0).sub(0.5).div(0.5)


def translate_tiled(
    net: nn.Module, forward: Forward, pad: Pad, pixels: np.ndarray, plan: TilePlan, out_channels: int
) -> np.ndarray:
    """Translate H x W x C float32 ``pixels`` in [0, 1] tile by tile -> H x W x out_channels
    uint8, as ``plan`` says. ``forward`` runs ``net`` (whose per-image norm layers are swapped
    for SharedStatsNorm meanwhile); ``pad`` pads the thumbnail to a size the network takes."""
    if plan.stats not in TILE_STATS:
        raise ValueError(f"unknown tile statistics {plan.stats!r}; valid: {', '.join(TILE_STATS)}")
    with shared_statistics(net) as controller:
        if plan.stats == "thumbnail" and controller.norms:
            small = thumbnail(pixels, plan.thumbnail_pixels)
            controller.set_mode("record")
            forward(pad(_to_tensor(small))[0])
            controller.set_mode("apply")
        elif plan.stats == "exact" and controller.norms:
            controller.set_mode("collect")  # every layer still needs its statistics
            _collect_exact(controller, forward, pixels, plan)
        return _blend(forward, pixels, plan, out_channels)


def _tiles(pixels: np.ndarray, plan: TilePlan) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(row, column, tile) with each tile cut from the image as if from its padded copy: the
    parts outside the image are reflected (or repeated) as pad_to_multiple does."""
    for i, y in enumerate(plan.ys):
        for j, x in enumerate(plan.xs):
            y0, x0 = y - plan.top, x - plan.left
            y1, x1 = y0 + plan.tile_height, x0 + plan.tile_width
            a, b, c, d = max(y0, 0), min(y1, plan.height), max(x0, 0), min(x1, plan.width)
            tile = _to_tensor(pixels[a:b, c:d])
            pads = (c - x0, x1 - d, a - y0, y1 - b)
            if any(pads):
                # The same choice as pad_to_multiple makes for the whole image.
                reflect = max(pads[:2]) < plan.width and max(pads[2:]) < plan.height
                reflect = reflect and max(pads[:2]) < d - c and max(pads[2:]) < b - a
                tile = nn.functional.pad(tile, pads, mode="reflect" if reflect else "replicate")
            yield i, j, tile


def _collect_exact(controller: StatsController, forward: Forward, pixels: np.ndarray, plan: TilePlan) -> None:
    """One pass over the tiles per norm layer, in forward order: the first layer still
    collecting adds each tile's owned region to its statistics and stops the pass there."""
    own_y = _owned(plan.ys, plan.tile_height, plan.padded_height)
    own_x = _owned(plan.xs, plan.tile_width, plan.padded_width)
    while True:
        collecting = None
        for i, j, tile in _tiles(pixels, plan):
            controller.region = (*own_y[i], *own_x[j], plan.tile_height, plan.tile_width)
            try:
                forward(tile)
            except _StopForward:
                collecting = next(norm for norm in controller.norms if norm._pending is not None)
                collecting.commit()
                continue
            return  # no layer collects any more: every one has its statistics
        collecting.adopt()
        collecting.mode = "apply"


def _blend(forward: Forward, pixels: np.ndarray, plan: TilePlan, out_channels: int) -> np.ndarray:
    """Run every tile and blend: a strip one tile row high accumulates weighted outputs (in
    padded coordinates); rows that no later tile touches are converted to uint8."""
    out = np.empty((plan.height, plan.width, out_channels), dtype=np.uint8)
    weights_y = _axis_weights(plan.ys, plan.tile_height, plan.padded_height)
    weights_x = _axis_weights(plan.xs, plan.tile_width, plan.padded_width)
    carry = None  # rows of the previous strip that the current tile row overlaps
    strip = None
    for i, j, tile in _tiles(pixels, plan):
        y, x = plan.ys[i], plan.xs[j]
        if j == 0:
            strip = torch.zeros(out_channels, plan.tile_height, plan.padded_width)
            if carry is not None:
                strip[:, : carry.shape[1]] = carry
        result = forward(tile)[0].float().cpu()
        weight = weights_y[i].view(1, -1, 1) * weights_x[j].view(1, 1, -1)
        strip[:, :, x : x + plan.tile_width].addcmul_(result, weight)
        if j == len(plan.xs) - 1:
            done = plan.ys[i + 1] - y if i + 1 < len(plan.ys) else plan.tile_height
            # Strip rows [y, y + done) are final; keep the ones inside the image.
            r0, r1 = max(y, plan.top), min(y + done, plan.top + plan.height)
            if r1 > r0:
                rows = strip[:, r0 - y : r1 - y, plan.left : plan.left + plan.width]
                final = ((rows + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
                out[r0 - plan.top : r1 - plan.top] = final.permute(1, 2, 0).numpy()
            carry = strip[:, done:].clone()
    return out


# --- when and how to tile ------------------------------------------------------------------


def _fitted_tile(length: int, largest: int, overlap: int, multiple: int) -> int:
    """The smallest tile (a multiple of ``multiple``, at most ``largest``) that covers
    ``length`` with as few tiles as ``largest`` would, overlapping by ``overlap``."""
    if length <= largest:
        return length
    # Count with the starts' grid as _axis_starts lays them, not the continuous ideal: a tile
    # fitted to the ideal can need one more start on the grid than the largest does.
    count = len(_axis_starts(length, largest, overlap, multiple))
    needed = math.ceil((length + (count - 1) * overlap) / count / multiple) * multiple
    for tile in range(needed, largest, multiple):
        if len(_axis_starts(length, tile, overlap, multiple)) <= count:
            return tile
    return largest


def default_overlap(tile: int, multiple: int = 4) -> int:
    """Overlap in pixels when none is given, for tiles of ``tile`` pixels and a network whose
    input must be a multiple of ``multiple`` (4 for ResNets, 2^depth for U-Nets).

    Blending discards the outer third of an overlap, so the overlap must be three times how far
    a tile's border changes the network's output. A ResNet's border effect fades within about 48
    pixels (its deepest cells are 4 pixels wide): a quarter of the tile, at most 128, covers it.
    A U-Net's bottleneck sees the whole tile and its cells are ``multiple`` pixels wide: measured
    on photo2sketch (unet_128, tiles with the whole image's statistics), a tile's output is 20-35
    dB PSNR from one pass's within 64 pixels of its border, 54 dB at 64-128 and 67 dB beyond one
    size multiple. So three size multiples, which discard the first (README, "Tiling measured")."""
    return max(min(tile // 4, 128), 3 * multiple, 1)


@dataclass
class TileSettings:
    """What the user asked for: ``tile`` is "auto" (tile only when one pass would not fit the
    memory budget), "off" (never), or a tile side in pixels (a multiple of the network's size
    multiple); ``overlap`` in pixels (None: ``default_overlap``, which depends on the network;
    at most the tile less one size multiple); ``stats`` one of TILE_STATS;
    ``memory_budget`` in bytes (None: measured by ``memory_budget`` for each image)."""

    tile: int | str = "auto"
    overlap: int | None = None
    stats: str = "thumbnail"
    memory_budget: int | None = None

    def check(self, cfg) -> None:
        """UsageError for settings this network (``cfg``, a GeneratorConfig) cannot use: a tile
        side must be a multiple of its size multiple and at least its smallest valid side
        (inference.smallest_side: the deepest reflection padding needs two pixels there); an
        overlap at most the tile less one size multiple (tiles start on multiples of it)."""
        from img2img.errors import UsageError
        from img2img.models.config import smallest_side, valid_side_near

        multiple, smallest = cfg.size_multiple, smallest_side(cfg)
        if isinstance(self.tile, str) and self.tile not in ("auto", "off"):
            try:
                self.tile = int(self.tile)
            except ValueError:
                raise UsageError(f"--tile takes a size in pixels, auto or off, not {self.tile!r}") from None
        if isinstance(self.tile, int) and (self.tile < smallest or self.tile % multiple):
            raise UsageError(
                f"tile size {self.tile}: this network ({cfg.reference_name}) needs tiles of at least "
                f"{smallest} pixels, in multiples of {multiple}",
                hint=f"try --tile {valid_side_near(self.tile, cfg)}",
            )
        if self.overlap is not None and self.overlap < 0:
            raise UsageError(f"tile overlap must be 0 or more, got {self.overlap}")
        if isinstance(self.tile, int) and self.overlap is not None and self.overlap > self.tile - multiple:
            # Tiles start on multiples of the size multiple, so neighbours are at least one apart.
            raise UsageError(
                f"tile overlap {self.overlap}: tiles of {self.tile} pixels overlap by at most "
                f"{self.tile - multiple} for this network (tiles start on multiples of {multiple})",
                hint=f"try --tile-overlap {self.tile - multiple} or a larger --tile",
            )
        if self.stats not in TILE_STATS:
            raise UsageError(f"unknown tile statistics {self.stats!r}; valid: {', '.join(TILE_STATS)}")
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise UsageError(f"memory budget must be positive, got {self.memory_budget}")

    def plan(
        self,
        height: int,
        width: int,
        padded: tuple[int, int],
        multiple: int,
        bytes_per_pixel: Callable[[], float],
        device: torch.device,
        budget: int | None = None,
    ) -> TilePlan | None:
        """The plan for an image of ``height`` x ``width`` (``padded`` to what the network takes),
        or None for one pass. ``budget`` (bytes) overrides the settings' and the measured one."""
        if self.tile == "off":
            return None
        if self.tile != "auto":
            tile = int(self.tile)
            if padded[0] <= tile and padded[1] <= tile:
                return None
        if budget is None:
            from img2img.models.memory import memory_budget

            budget = self.memory_budget if self.memory_budget is not None else memory_budget(device)
        area = budget / bytes_per_pixel()  # the most pixels one pass can take
        if self.tile == "auto":
            if padded[0] * padded[1] <= area:
                return None
            # At least two size multiples, so that tiles can overlap (starts are multiples).
            tile = max(2 * multiple, int(math.sqrt(area)) // multiple * multiple)
        overlap = self.overlap if self.overlap is not None else default_overlap(tile, multiple)
        # Tiles start on multiples of the size multiple: neighbours are at least one apart.
        overlap = min(overlap, tile - multiple)
        # A larger thumbnail gives statistics closer to the full image's (see the README), as
        # far as memory allows.
        thumb = max(tile * tile, min(int(area), THUMBNAIL_PIXELS))
        if self.tile == "auto":
            # As many tiles as the largest size needs, but each only as large as that count
            # needs: 2000 pixels in tiles of at most 1848 are two tiles of 1064, not of 1848.
            tiles = tuple(_fitted_tile(length, tile, overlap, multiple) for length in padded)
            return TilePlan.make(height, width, padded, multiple, tiles, overlap, self.stats, thumb)
        return TilePlan.make(height, width, padded, multiple, tile, overlap, self.stats, thumb)


__all__ = [
    "SharedStatsNorm",
    "StatsController",
    "TILE_STATS",
    "TilePlan",
    "TileSettings",
    "default_overlap",
    "shared_statistics",
    "thumbnail",
    "translate_tiled",
]
