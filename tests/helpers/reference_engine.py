"""The engine's masked scores by the definition, every masked copy built on its own: the reference the fast
engine must equal bit for bit (used by the engine's and token dropping's tests)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ffidelity import ImageUnits
from ffidelity.metrics.masking import _STREAM_DRAWS, _STREAM_RANK
from ffidelity.utils.seeding import draw_bit_generator, seeded_generator


def reference_rank_positions(scores, valid, seed, offset):
    """Every unit's rank (0 = highest score) by the definition: each input's units in a seeded random order,
    then stably sorted by score, so ties fall in the random order (the engine draws that order only for inputs
    with a tie)."""
    n, d = scores.shape
    pos = torch.empty(n, d, dtype=torch.long)
    for i in range(n):
        by_key = torch.rand(d, generator=seeded_generator(seed, offset + i, _STREAM_RANK)).argsort()
        s = scores[i].masked_fill(~valid[i], -math.inf)[by_key]
        order = by_key[torch.sort(s, descending=True, stable=True).indices]
        pos[i, order] = torch.arange(d)
    return pos.masked_fill(~valid, d)


def reference_masked_scores(metric, model, inputs, targets, attributions, offset=0, copy_logits=None):
    """Fid+/Fid- per (input, sparsity) by the definition: every masked copy built on its own.

    ``copy_logits(i, removed)`` gives the logits of input ``i``'s copies with the units in ``removed`` (copies, D)
    taken away; the default builds them with ``units.remove``.
    """
    units = metric.units if metric.units is not None else ImageUnits()
    scores = units.scores(attributions, inputs).double()
    valid = units.valid(inputs)
    n, d = scores.shape
    s = torch.as_tensor(metric.sparsity_grid(), dtype=torch.float64)
    pos = reference_rank_positions(scores, valid, metric.seed, offset)
    d_valid = valid.sum(1)
    k = torch.floor(s[None, :] * d_valid[:, None].double() + 0.5).long()
    rate_plus, rate_minus = metric.rates(k, d_valid[:, None].expand_as(k))
    with torch.inference_mode():
        base_logits = model(inputs).float()
        targets = base_logits.argmax(-1) if targets is None else torch.as_tensor(targets)
        base = metric._score(base_logits, targets)
        plus = torch.zeros(n, s.numel(), dtype=torch.float64)
        minus = torch.zeros_like(plus)
        for i in range(n):
            gen = draw_bit_generator(metric.seed, offset + i, _STREAM_DRAWS)
            half = (d + 1) // 2
            for j in range(s.numel()):
                for side, out, rate in ((0, plus, rate_plus), (1, minus, rate_minus)):
                    raw = gen.random_raw(metric.n_samples * half)  # 64-bit outputs, low half first
                    pairs = np.stack([raw & 0xFFFFFFFF, raw >> np.uint64(32)], axis=1)
                    draws = torch.from_numpy(pairs.reshape(metric.n_samples, 2 * half)[:, :d].astype(np.float64))
                    explanation = pos[i] < k[i, j]
                    candidate = explanation if side == 0 else valid[i] & ~explanation
                    removed = candidate & (draws < rate[i, j] * 2.0**32)  # u / 2^32 < rate, exactly
                    if copy_logits is None:
                        masked = units.remove(inputs[i : i + 1].repeat(metric.n_samples, *[1] * (inputs.ndim - 1)),
                                              ~removed)
                        logits = model(masked)
                    else:
                        logits = copy_logits(i, removed)
                    sc = metric._score(logits.float(), targets[i].expand(metric.n_samples))
                    total = torch.zeros((), dtype=torch.float64)
                    for v in sc:  # accumulated in draw order, as the engine does
                        total += v
                    out[i, j] = total / metric.n_samples
    return (base[:, None] - plus).numpy(), (base[:, None] - minus).numpy()
