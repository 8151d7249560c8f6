"""The masked copies the engine feeds the model: which units each copy removes, built chunk by chunk.

Every masked copy of every input at every sparsity and side is one position of a flat stream: copy ``c`` is
input ``c // tasks`` and task ``c % tasks``, where task ``t`` is (sparsity ``t // (2 N)``, side ``(t // N) % 2``,
draw ``t % N``). The candidates of (input, sparsity, side) are the units ranked in ``[lo, hi)``: the top ``k``
for Fid+ (MoRF), the other valid units for Fid- (LeRF). A candidate is removed when its draw falls below the
side's rate.

A removal draw is a 32-bit unsigned integer ``u`` from numpy's PCG64 (two per 64-bit output, little-endian
order, one row of ``ceil(D / 2)`` outputs per masked copy); a candidate unit is removed when
``u < rate * 2**32``, so every removal probability is exact to 2^-32. This costs less than half of what
float32 draws from torch's Mersenne Twister cost (measured: 1.2-1.5 us against 3.1 us per 1,024 draws), which
matters for small models, where building masks competes with the forward pass. Draws come from per-input
generators seeded by ``(seed, input index)``, so results do not depend on how the stream is chunked or how
inputs are sharded across processes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ffidelity.units.base import Units
from ffidelity.utils.seeding import draw_bit_generator, seeded_generator

_STREAM_RANK = 0
_STREAM_DRAWS = 1
DRAWS = "pcg64-u32"  # the removal-draw scheme, recorded in every result's params
_TWO32 = 2**32
#: draws per run (copies x units) from which masks are built run by run (the draws stay in cache) rather than
#: for the whole chunk at once (fewer Python calls when runs are small: few samples or few units)
_RUN_BY_RUN_MIN = 4096
_NO_DRAW = np.uint32(2**31)  # draw of inputs whose rates are all 0 or 1: any value in (0, 2**32 - 1) works
#: bytes of one input from which a chunk's masked copies are filled from each input's broadcast view rather than
#: from a gathered copy of the input per row (one memory pass less; for small inputs the per-input calls cost more)
_BROADCAST_MIN_BYTES = 64 * 2**10

#: a built chunk: the masked batch (or, with removal inside the model, ``(distinct inputs, input of each copy,
#: keep mask)``), then the input, sparsity and side index of every copy
Chunk = tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]


def removal_thresholds(rate: torch.Tensor) -> torch.Tensor:
    """``ceil(rate * 2**32)`` as int64: a 32-bit draw ``u`` removes its unit iff ``u < threshold``.

    For an integer ``u``, ``u < rate * 2**32`` iff ``u < ceil(rate * 2**32)``; the product is exact in float64
    (a power-of-two scaling), so the removal probability is ``threshold / 2**32``, within 2^-32 of ``rate``.
    0 never removes, ``2**32`` always removes.
    """
    return torch.ceil(rate.double() * _TWO32).long().clamp(0, _TWO32)


def _rank_positions(scores: torch.Tensor, valid: torch.Tensor, seed: int, offset: int) -> torch.Tensor:
    """Rank of every unit (0 = highest score); ties broken by a seeded random order, never by position.

    An input whose valid scores are all distinct has one ranking whatever the tie-break order, so only inputs
    with a tie (among their valid units, or between the last valid unit and the invalid slots) draw the random
    order: the same ranks as drawing it for every input, without a generator and a second sort per input.
    """
    n, d = scores.shape
    all_valid = bool(valid.all())  # e.g. images: no slot to mask
    s = scores if all_valid else scores.masked_fill(~valid, -math.inf)
    ranked = torch.sort(s, dim=1, descending=True, stable=True)
    # (i, j) compares the units ranked j and j + 1; a tie matters while j lies among the input's valid units
    equal = ranked.values[:, :-1] == ranked.values[:, 1:]
    tied = (equal & (torch.arange(d - 1)[None, :] < valid.sum(1, keepdim=True))).any(1).nonzero().flatten()
    order = ranked.indices
    if tied.numel():
        keys = torch.stack([torch.rand(d, generator=seeded_generator(seed, offset + int(i), _STREAM_RANK))
                            for i in tied])
        by_key = keys.argsort(dim=1)
        st = s[tied].gather(1, by_key)
        order[tied] = by_key.gather(1, torch.sort(st, dim=1, descending=True, stable=True).indices)
    pos = torch.empty_like(order)
    pos.scatter_(1, order, torch.arange(d).expand(n, d).contiguous())
    return pos if all_valid else pos.masked_fill(~valid, d)


class MaskedCopies:
    """The stream of masked copies of one evaluation, built chunk by chunk into reused buffers.

    Args:
        inputs: the inputs on the CPU, (n, ...).
        pos: each unit's rank (0 = highest score), ``d`` for invalid slots, (n, d) int32.
        k: explanation size of every (input, sparsity), in units, (n, S).
        d_valid: the number of valid units of each input, (n,).
        rate: the removal probability of each candidate of every (input, sparsity, side), (n, S, 2).
        n_draw: draws (masked copies) per (input, sparsity, side).
        units: what a unit is and how it is removed.
        seed, index_offset: the draws' seed and the global index of ``inputs[0]``.
    """

    def __init__(self, inputs: torch.Tensor, pos: torch.Tensor, k: torch.Tensor, d_valid: torch.Tensor,
                 rate: torch.Tensor, n_draw: int, units: Units, seed: int, index_offset: int) -> None:
        n, d = pos.shape
        self.x, self.units, self.d, self.n_draw = inputs, units, d, n_draw
        self.pos = np.ascontiguousarray(pos.numpy(), dtype=np.int32)
        self.n_s = k.shape[1]
        self.tasks = self.n_s * 2 * n_draw  # task t -> (sparsity t // (2 N), side (t // N) % 2, draw t % N)
        self.total = n * self.tasks
        lo = torch.stack([torch.zeros_like(k), k], dim=2)  # (n, S, 2)
        hi = torch.stack([k, d_valid[:, None].expand_as(k)], dim=2)
        self.lo = lo.numpy().astype(np.int32)
        # candidates are the units whose rank p has 0 <= p - lo < span; with p - lo read as unsigned 32-bit that is
        # one comparison, u32(p - lo) < span (a rank below lo wraps to 2**32 - ...): one pass less per copy
        self.span = (hi - lo).numpy().astype(np.uint32)
        thresholds = removal_thresholds(rate)  # a 32-bit draw u removes its candidate iff u < threshold
        # "always removed" (threshold 2**32) does not fit 32 bits: clipped in the uint32 thresholds, and applied
        # exactly per chunk where random draws could otherwise keep a unit (with probability 2^-32)
        self.thresh_u32 = thresholds.clamp(max=_TWO32 - 1).numpy().astype(np.uint32)  # (n, S, 2)
        stochastic = ((rate > 0) & (rate < 1)).flatten(1).any(1)  # inputs whose draws can change a removal
        self.always_exact = ((thresholds == _TWO32) & stochastic[:, None, None]).numpy()  # (n, S, 2)
        self.any_stochastic = bool(stochastic.any())  # False: n_draw is 1 and every removal is certain
        self.streams = _DrawStreams(seed, index_offset, d, stochastic)
        #: True when units are removed inside the model (e.g. tokens dropped from the sequence)
        self.in_model = bool(getattr(units, "removes_in_model", False))
        self.rows = 0

    @property
    def row_bytes(self) -> int:
        """Bytes of one masked copy."""
        return max(1, self.x[0].numel() * self.x.element_size())

    def allocate(self, rows: int) -> None:
        """Buffers for chunks of up to ``rows`` copies, reused by every chunk: a fresh multi-MB tensor per chunk
        costs a page fault per 4 kB. The masked batch is double-buffered (``slot`` 0 and 1): the next chunk can be
        built while the model reads the current one."""
        self.rows = rows
        self.keep_buf = np.empty((rows, self.d), dtype=bool)
        self.bufs: dict[str, torch.Tensor] = {}
        self.np_bufs: dict[str, np.ndarray] = {}  # draws and thresholds per copy, for short runs only
        self.out_bufs = [] if self.in_model else [torch.empty((rows, *self.x.shape[1:]), dtype=self.x.dtype)
                                                  for _ in range(2)]

    def build(self, start: int, stop: int, slot: int) -> Chunk:
        """The masked batch of copies ``start`` to ``stop`` (written into buffer ``slot``) and their (input,
        sparsity, side) indices. With removal inside the model the batch is ``(distinct inputs, input of each
        copy, keep mask)`` instead."""
        tasks, n_draw, d, x_cpu = self.tasks, self.n_draw, self.d, self.x
        flat = torch.arange(start, stop)
        c = flat.numel()
        i_idx = flat // tasks
        t_idx = flat % tasks
        j_idx = t_idx // (2 * n_draw)
        side = (t_idx // n_draw) % 2
        # rows of one (input, sparsity, side) are consecutive: build one threshold row per run
        runs, run_len = torch.unique_consecutive(flat // n_draw, return_counts=True)
        i_r, js = runs // (2 * self.n_s), runs % (2 * self.n_s)
        j_r, side_r = js // 2, js % 2
        runs_np = (i_r.numpy(), j_r.numpy(), side_r.numpy())
        offset = self.pos[runs_np[0]]  # (runs, d): each unit's rank, then its rank minus the run's lo
        np.subtract(offset, self.lo[runs_np][:, None], out=offset)
        offset = offset.view(np.uint32)
        span = self.span[runs_np]
        thresh_u32 = self.thresh_u32
        # a unit is kept when its draw >= its threshold (0 for non-candidates: always kept)
        candidate = offset < span[:, None] if self.any_stochastic else None
        thresh = np.where(candidate, thresh_u32[runs_np][:, None], np.uint32(0)) if self.any_stochastic else None
        keep_np = self.keep_buf[:c]
        lens = run_len.numpy()
        ends = np.cumsum(lens)
        last_task = t_idx[ends - 1].numpy()
        if not self.any_stochastic:  # every rate 0 or 1 (plain Fidelity): one copy per run, no draw to compare
            # kept: not a candidate, or a candidate of a run whose rate is 0 (no candidate then)
            np.greater_equal(offset, np.where(thresh_u32[runs_np] > 0, span, np.uint32(0))[:, None], out=keep_np)
        elif c * d >= _RUN_BY_RUN_MIN * lens.size:  # big runs: draw and compare run by run, in cache
            for r, (i, n_r, e) in enumerate(zip(i_r.tolist(), lens.tolist(), ends.tolist(), strict=True)):
                draws = self.streams.rows(i, n_r, last=int(last_task[r]) == tasks - 1)
                np.greater_equal(draws, thresh[r], out=keep_np[e - n_r : e])
        else:  # short runs: the chunk's draws, one threshold row per masked copy, one comparison
            if not self.np_bufs:
                self.np_bufs.update(draws=np.empty((self.rows, d), np.uint32),
                                    thresh=np.empty((self.rows, d), np.uint32))
            draws = self.np_bufs["draws"][:c]
            uniq, counts = torch.unique_consecutive(i_idx, return_counts=True)
            row = 0
            for i, n_i in zip(uniq.tolist(), counts.tolist(), strict=True):
                last = int(t_idx[row + n_i - 1]) == tasks - 1
                draws[row : row + n_i] = self.streams.rows(i, n_i, last=last)
                row += n_i
            np.greater_equal(draws, np.take(thresh, np.repeat(np.arange(lens.size), lens), axis=0,
                                            out=self.np_bufs["thresh"][:c]), out=keep_np)
        for r in np.flatnonzero(self.always_exact[runs_np]):  # rate 1 beside random draws: remove exactly
            keep_np[ends[r] - lens[r] : ends[r]] &= ~candidate[r]
        keep = torch.from_numpy(keep_np)
        if self.in_model:  # the keep buffer is reused by the next chunk: this one keeps a copy
            uniq, inverse = torch.unique_consecutive(i_idx, return_inverse=True)
            return (x_cpu[uniq], inverse, keep.clone()), i_idx, j_idx, side
        out = self.out_bufs[slot][:c]
        uniq, counts = torch.unique_consecutive(i_idx, return_counts=True)
        if uniq.numel() > 1 and self.row_bytes < _BROADCAST_MIN_BYTES:  # small inputs: one gathered copy, one call
            if "x" not in self.bufs:
                self.bufs["x"] = torch.empty((self.rows, *x_cpu.shape[1:]), dtype=x_cpu.dtype)
            x_rows = torch.index_select(x_cpu, 0, i_idx, out=self.bufs["x"][:c])
            return self.units.remove_into(x_rows, keep, out), i_idx, j_idx, side
        # one input in the chunk, or large inputs: each input's rows from a broadcast view of it (no copy per row)
        row = 0
        for i, n_i in zip(uniq.tolist(), counts.tolist(), strict=True):
            part = out[row : row + n_i]
            res = self.units.remove_into(x_cpu[i : i + 1].expand(n_i, *x_cpu.shape[1:]), keep[row : row + n_i], part)
            if res.data_ptr() != part.data_ptr():  # units that do not write into the buffer
                part.copy_(res)
            row += n_i
        return out, i_idx, j_idx, side


class _DrawStreams:
    """Each input's stream of 32-bit removal draws, taken in task order, one generator per input.

    Every masked copy takes ``ceil(d / 2)`` 64-bit PCG64 outputs, split into 32-bit draws low half first,
    whatever the machine's byte order: an input's numbers never depend on how its copies are chunked. Inputs
    marked False in ``stochastic`` (every rate 0 or 1, so no draw can change a removal) get a constant and no
    generator: skipping them leaves every other input's numbers unchanged.
    """

    def __init__(self, seed: int, offset: int, d: int, stochastic: torch.Tensor) -> None:
        self.seed, self.offset, self.d = seed, offset, d
        self.stochastic = stochastic.tolist()
        self.half = (d + 1) // 2
        self.gens: dict[int, np.random.PCG64] = {}

    def rows(self, i: int, count: int, last: bool = False) -> np.ndarray:
        """The next ``count`` draw rows (count, d) of input ``i``; ``last``: its stream ends here (freed)."""
        if not self.stochastic[i]:
            return np.broadcast_to(_NO_DRAW, (count, self.d))
        gen = self.gens.get(i)
        if gen is None:
            gen = self.gens[i] = draw_bit_generator(self.seed, self.offset + i, _STREAM_DRAWS)
        if last:
            del self.gens[i]
        raw = gen.random_raw(count * self.half).astype("<u8", copy=False).view("<u4")
        return raw.reshape(count, 2 * self.half)[:, : self.d]
