"""Resumable shuffling: the order of every epoch is a function of ``(seed, epoch)`` alone.

A ``DataLoader(shuffle=True, generator=g)`` draws each epoch's order from ``g``'s running state, which a
Lightning checkpoint does not store: a run resumed after a kill would see epoch k in the order of epoch 0 and end
with different weights. :class:`EpochShuffleSampler` has no running state, so a resumed run sees the orders of an
uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """Shuffles with a permutation drawn from ``(seed, epoch)``: a resumed run sees the same order as an
    uninterrupted one (Lightning calls ``set_epoch`` before every epoch)."""

    def __init__(self, length: int, seed: int = 0) -> None:
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=gen).tolist())

    def __len__(self) -> int:
        return self.length
