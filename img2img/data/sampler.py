"""The resumable, rank-aware sampler of training batches."""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Yields ``(index, seed)``: a seeded shuffle per epoch and a seed per position for the data
    augmentation. ``set_epoch(epoch, start)`` skips the first ``start`` samples, which is how a run
    resumes mid-epoch with exactly the batches it would have seen. With ``world_size`` > 1 each
    rank takes every world_size-th sample (the order padded by repetition to divide evenly)."""

    def __init__(self, size: int, *, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        if size < 1:
            raise ValueError("an EpochSampler needs at least one sample")
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    @property
    def per_rank(self) -> int:
        return math.ceil(self.size / self.world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def positions(self) -> list[tuple[int, int]]:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        if self.shuffle:
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        seeds = torch.randint(0, 2**62, (self.size,), generator=generator).tolist()
        total = self.per_rank * self.world_size
        items = [(order[i % self.size], seeds[i % self.size]) for i in range(total)]
        return items[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.positions()[self.start :])

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)
