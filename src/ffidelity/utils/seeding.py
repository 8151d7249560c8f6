"""Seeded random generators keyed by integers (input index, stream, ...): every random draw of the package
starts here, so the same seed gives the same numbers however work is chunked or sharded."""

from __future__ import annotations

import numpy as np
import torch


def _seed_sequence(seed: int, *keys: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]])


def seeded_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and any number of integer keys (input index, stream, ...)."""
    state = _seed_sequence(seed, *keys).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def draw_bit_generator(seed: int, *keys: int) -> np.random.PCG64:
    """numpy's PCG64 bit generator seeded from ``seed`` and integer keys, for the engine's removal draws."""
    return np.random.PCG64(_seed_sequence(seed, *keys))
