"""The fidelity engine: one code path for Fidelity, R-Fidelity and F-Fidelity.

All three remove a stochastic subset of the explanation (Fid+, MoRF) or of its complement (Fid-, LeRF) and
measure how much the model's score for the target drops:

* ``Fidelity``: every candidate unit is removed (alpha = 1), one sample, no cap;
* ``RFidelity``: each candidate is removed with probability alpha, ``n_samples`` Monte-Carlo draws;
* ``FFidelity``: like R-Fidelity on a model fine-tuned on random masks, with the expected number of removed
  units capped at ``beta * D`` (rate = min(alpha, beta*D/k)).

Every masked copy of every input at every sparsity and side is enumerated as one flat stream of (input, task)
pairs and fed to the model in chunks of ``batch_size``: memory stays flat as ``n_samples`` grows, and no Python
loop runs per model call. Random draws come from per-input generators seeded by ``(seed, input index)``, so
results do not depend on ``batch_size`` or on how inputs are sharded across processes.

A removal draw is a 32-bit unsigned integer ``u`` from numpy's PCG64 (two per 64-bit output, little-endian
order, one row of ``ceil(D / 2)`` outputs per masked copy); a candidate unit is removed when
``u < rate * 2**32``, so every removal probability is exact to 2^-32. This costs less than half of what
float32 draws from torch's Mersenne Twister cost (measured: 1.2-1.5 us against 3.1 us per 1,024 draws), which
matters for small models, where building masks competes with the forward pass.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np
import torch
from torch import nn

from ffidelity.progress import progress_bar
from ffidelity.result import FidelityResult
from ffidelity.units import ImageUnits, Units

log = logging.getLogger(__name__)

DEFAULT_SPARSITIES: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""The paper's sparsity grid: 0.05, 0.10, ..., 0.95 (19 explanation sizes, fractions of the units)."""
MODES = ("acc", "prob")

_STREAM_RANK = 0
_STREAM_DRAWS = 1
DRAWS = "pcg64-u32"  # the removal-draw scheme, recorded in every result's params
_TWO32 = 2**32
#: draws per run (copies x units) from which masks are built run by run (the draws stay in cache) rather than
#: for the whole chunk at once (fewer Python calls when runs are small: few samples or few units)
_RUN_BY_RUN_MIN = 4096
_NO_DRAW = np.uint32(2**31)  # draw of inputs whose rates are all 0 or 1: any value in (0, 2**32 - 1) works
#: chunk sizes ``batch_size="auto"`` tries, each on two real chunks of the evaluation (none is wasted work)
AUTO_BATCH_SIZES: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
#: largest masked batch ``"auto"`` may hold per buffer (three buffers exist: two masked, one of inputs)
_AUTO_BUFFER_BYTES = 256 * 2**20
#: batch size of plain (unmasked) forward passes under ``"auto"``
PLAIN_BATCH = 256
#: share of an evaluation's masked copies that ``"auto"`` may spend on timed chunks
_AUTO_BUDGET = 0.1
#: calibration stops at the first size this much slower per copy than the best so far
_AUTO_STOP = 1.1
#: the size ``"auto"`` uses when the evaluation is too small to calibrate (most models peak at 32-128)
_AUTO_SMALL = 64


def _seed_sequence(seed: int, *keys: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]])


def seeded_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and any number of integer keys (input index, stream, ...)."""
    state = _seed_sequence(seed, *keys).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def draw_bit_generator(seed: int, *keys: int) -> np.random.PCG64:
    """numpy's PCG64 bit generator seeded from ``seed`` and integer keys, for the engine's removal draws."""
    return np.random.PCG64(_seed_sequence(seed, *keys))


def removal_thresholds(rate: torch.Tensor) -> torch.Tensor:
    """``ceil(rate * 2**32)`` as int64: a 32-bit draw ``u`` removes its unit iff ``u < threshold``.

    For an integer ``u``, ``u < rate * 2**32`` iff ``u < ceil(rate * 2**32)``; the product is exact in float64
    (a power-of-two scaling), so the removal probability is ``threshold / 2**32``, within 2^-32 of ``rate``.
    0 never removes, ``2**32`` always removes.
    """
    return torch.ceil(rate.double() * _TWO32).long().clamp(0, _TWO32)


def logits_of(output: Any) -> torch.Tensor:
    """Logits from a model output: a tensor, a Hugging Face ``ModelOutput`` or a (logits, ...) tuple."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class Fidelity:
    """Plain Fidelity: remove the whole explanation (Fid+) or everything else (Fid-), one forward pass each.

    Args:
        sparsities: explanation sizes as fractions of the units, each in (0, 1); default 0.05, 0.10, ..., 0.95.
        mode: ``"acc"`` scores 1(argmax f(x') = y); ``"prob"`` scores the softmax probability of y.
        units: what a unit is and how it is removed (default ``ImageUnits()``: pixels, reference 0).
        seed: seeds tie-breaking among equal scores and every Monte-Carlo draw.
        batch_size: masked copies per forward pass; bounds memory. ``"auto"`` (default) times the sizes in
            :data:`AUTO_BATCH_SIZES` on the evaluation's first chunks (at most 256 MB per masked batch, at most a
            tenth of the copies, smallest first, stopping once a size is clearly slower) and keeps the fastest
            for the rest (64 for an evaluation too small to time); the choice is ``batch_size_`` and the result's
            ``params["batch_size"]``, the timed chunks ``calibration_`` (copies, seconds). Results never depend
            on it.
        progress: show a progress bar.
    """

    method = "fid"

    def __init__(
        self,
        sparsities: Sequence[float] | None = None,
        mode: str = "acc",
        units: Units | None = None,
        seed: int = 0,
        batch_size: int | str = "auto",
        progress: bool = True,
    ) -> None:
        self.sparsities = sparsities
        self.mode = mode
        self.units = units
        self.seed = seed
        self.batch_size = batch_size
        self.progress = progress
        self.alpha_plus = 1.0
        self.alpha_minus = 1.0
        self.n_samples = 1
        self.beta: float | None = None
        self.beta_minus: float | None = None
        self._check_params()

    # -- parameters -------------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("alpha_plus", "alpha_minus"):
            _check_unit_interval(name, getattr(self, name))
        if self.beta is not None:
            _check_unit_interval("beta", self.beta)
        if self.beta_minus is not None:
            _check_unit_interval("beta_minus", self.beta_minus)
        if not isinstance(self.n_samples, (int, np.integer)) or self.n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {self.n_samples!r}")
        if self.batch_size != "auto" and (not isinstance(self.batch_size, (int, np.integer))
                                          or isinstance(self.batch_size, bool) or self.batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or 'auto', got {self.batch_size!r}")
        s = self.sparsity_grid()
        if s.size == 0:
            raise ValueError("sparsities is empty")
        if not np.all(np.isfinite(s)) or np.any(s <= 0) or np.any(s >= 1):
            raise ValueError(f"every sparsity must lie strictly between 0 and 1, got {s.tolist()}")

    def sparsity_grid(self) -> np.ndarray:
        return np.asarray(DEFAULT_SPARSITIES if self.sparsities is None else list(self.sparsities), dtype=float)

    def get_params(self) -> dict[str, Any]:
        units = self.units if self.units is not None else ImageUnits()
        return {
            "method": self.method,
            "sparsities": self.sparsity_grid().tolist(),
            "mode": self.mode,
            "alpha_plus": self.alpha_plus,
            "alpha_minus": self.alpha_minus,
            "n_samples": int(self.n_samples),
            "beta": self.beta,
            "beta_minus": self.beta_minus,
            "seed": int(self.seed),
            "draws": DRAWS,
            "units": units.describe(),
        }

    def rates(self, k: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-unit removal probabilities for the explanation (k units) and its complement (d - k units)."""
        rate_plus = torch.full(k.shape, float(self.alpha_plus), dtype=torch.float64)
        rate_minus = torch.full(k.shape, float(self.alpha_minus), dtype=torch.float64)
        if self.beta is not None:
            budget = float(self.beta) * d.double()
            budget_minus = budget if self.beta_minus is None else float(self.beta_minus) * d.double()
            rate_plus = torch.minimum(rate_plus, budget / k.double().clamp(min=1))
            rate_minus = torch.minimum(rate_minus, budget_minus / (d - k).double().clamp(min=1))
        return rate_plus, rate_minus

    # -- evaluation ---------------------------------------------------------------------------------------------
    def evaluate(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor | Sequence[int] | None,
        attributions: torch.Tensor,
        *,
        index_offset: int = 0,
    ) -> FidelityResult:
        """Computes the Fid+ (MoRF) and Fid- (LeRF) curves of ``attributions`` over the sparsity grid.

        Args:
            model: the classifier to evaluate on (for F-Fidelity, the fine-tuned copy).
            inputs: a batch of inputs, (N, ...).
            targets: the class whose score is tracked per input; ``None`` uses the model's prediction.
            attributions: the explanation of each input, in the input's shape or the units' shape.
            index_offset: global index of ``inputs[0]``; lets shards of one data set draw the same random
                numbers as a single process would.

        Returns:
            A ``FidelityResult`` with per-input and mean curves.
        """
        self._check_params()
        units = self.units if self.units is not None else ImageUnits()
        inputs = _as_tensor(inputs, "inputs")
        if inputs.ndim < 2 or inputs.shape[0] == 0:
            raise ValueError(f"inputs must be a non-empty batch (N, ...), got shape {tuple(inputs.shape)}")
        attributions = _as_tensor(attributions, "attributions")
        if attributions.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"attributions hold {attributions.shape[0]} explanations for {inputs.shape[0]} inputs "
                f"(attributions {tuple(attributions.shape)}, inputs {tuple(inputs.shape)})"
            )
        if attributions.is_floating_point() and not torch.isfinite(attributions).all():
            bad = (~torch.isfinite(attributions.reshape(attributions.shape[0], -1))).any(1).nonzero().flatten()
            raise ValueError(
                f"attributions contain NaN or inf values (inputs {bad[:10].tolist()}"
                f"{' ...' if bad.numel() > 10 else ''}); fix the explainer or replace them before evaluating"
            )
        scores = units.scores(attributions, inputs).detach().cpu().double()
        valid = units.valid(inputs).cpu()
        n, _d = scores.shape
        _warn_constant(scores, valid)
        device = model_device(model)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                base_logits = self._forward(model, inputs, device, "the unmasked inputs")
                n_classes = base_logits.shape[-1]
                if targets is None:
                    targets_t = base_logits.argmax(-1)
                else:
                    targets_t = _check_targets(targets, n, n_classes)
                base = self._score(base_logits, targets_t)
                plus, minus = self._masked_scores(model, inputs, targets_t, scores, valid, units, device,
                                                  index_offset)
        finally:
            model.train(was_training)
        s = self.sparsity_grid()
        return FidelityResult(
            method=self.method,
            sparsities=s,
            base_scores=base.numpy(),
            per_sample_plus=(base[:, None] - plus).numpy(),
            per_sample_minus=(base[:, None] - minus).numpy(),
            params={**self.get_params(), "batch_size": self.batch_size_,
                    "batch_size_auto": self.batch_size == "auto"},
        )

    def _forward(self, model: nn.Module, x: torch.Tensor, device: torch.device, what: str) -> torch.Tensor:
        outs = []
        step = PLAIN_BATCH if self.batch_size == "auto" else int(self.batch_size)
        for start in range(0, x.shape[0], step):
            outs.append(self._call(model, x[start : start + step], device, what))
        return torch.cat(outs)

    @staticmethod
    def _call(model: nn.Module, x: torch.Tensor, device: torch.device, what: str,
              forward: Any = None) -> torch.Tensor:
        """Logits of ``model`` on ``x`` (or of ``forward(x)``), checked for shape and finiteness."""
        logits = logits_of(model(x.to(device)) if forward is None else forward(x.to(device))).float()
        if logits.ndim != 2:
            raise ValueError(f"the model must return (batch, classes) logits, got shape {tuple(logits.shape)}")
        if not torch.isfinite(logits).all():
            raise ValueError(f"the model returned NaN or inf logits on {what}")
        return logits.cpu()

    def _score(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.mode == "acc":
            return (logits.argmax(-1) == targets).double()
        return torch.softmax(logits.double(), -1).gather(1, targets[:, None]).squeeze(1)

    def _masked_scores(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        scores: torch.Tensor,
        valid: torch.Tensor,
        units: Units,
        device: torch.device,
        index_offset: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean masked score per (input, sparsity) for the plus and minus sides."""
        n, d = scores.shape
        s = torch.as_tensor(self.sparsity_grid(), dtype=torch.float64)
        # (n, d); invalid slots get d. int32: the candidate masks below read it once per copy
        pos = _rank_positions(scores, valid, self.seed, index_offset).int()
        d_valid = valid.sum(1)  # (n,)
        k = torch.floor(s[None, :] * d_valid[:, None].double() + 0.5).long()  # (n, S)
        rate_plus, rate_minus = self.rates(k, d_valid[:, None].expand_as(k))
        rate = torch.stack([rate_plus, rate_minus], dim=2)  # (n, S, 2)
        n_s, n_draw = s.numel(), int(self.n_samples)
        if not ((rate > 0) & (rate < 1)).any():  # every removal certain: the N copies would be identical
            n_draw = 1
        tasks = n_s * 2 * n_draw  # task t -> (sparsity t // (2 N), side (t // N) % 2, draw t % N)

        # the candidates of (input, sparsity, side) are the units ranked in [lo, hi): the top k for Fid+, the
        # other valid units for Fid-; a candidate is removed when its uniform draw falls below the rate
        lo = torch.stack([torch.zeros_like(k), k], dim=2).int()  # (n, S, 2)
        hi = torch.stack([k, d_valid[:, None].expand_as(k)], dim=2).int()
        thresholds = removal_thresholds(rate)  # a 32-bit draw u removes its candidate iff u < threshold
        # "always removed" (threshold 2**32) does not fit 32 bits: clipped in the uint32 thresholds, and applied
        # exactly per chunk where random draws could otherwise keep a unit (with probability 2^-32)
        thresh_u32 = thresholds.clamp(max=_TWO32 - 1).numpy().astype(np.uint32)  # (n, S, 2)
        stochastic = ((rate > 0) & (rate < 1)).flatten(1).any(1)  # inputs whose draws can change a removal
        always_exact = ((thresholds == _TWO32) & stochastic[:, None, None]).numpy()  # (n, S, 2)
        any_stochastic = bool(stochastic.any())  # False: n_draw is 1 and every removal is certain

        sums = torch.zeros(n, n_s, 2, dtype=torch.float64)
        streams = _DrawStreams(self.seed, index_offset, d, stochastic)
        total = n * tasks
        x_cpu = inputs.detach().cpu()
        # buffers reused by every chunk: a fresh multi-MB tensor per chunk costs a page fault per 4 kB. The
        # masked batch is double-buffered: the next chunk can be built while the model reads the current one.
        if self.batch_size == "auto":  # sizes whose masked batch fits the memory bound
            row_bytes = max(1, x_cpu[0].numel() * x_cpu.element_size())
            fits = [b for b in AUTO_BATCH_SIZES if b * row_bytes <= _AUTO_BUFFER_BYTES] or [AUTO_BATCH_SIZES[0]]
            candidates = sorted({*(b for b in fits if b < total), min(total, fits[-1])})
        else:
            candidates = [int(self.batch_size)]
        rows = min(candidates[-1], total)
        bounds: list[tuple[int, int]] = []  # (start, stop) of each chunk, in order
        keep_buf = np.empty((rows, d), dtype=bool)
        bufs: dict[str, torch.Tensor] = {}
        np_bufs: dict[str, np.ndarray] = {}  # draws and thresholds per copy, for short runs only
        in_model = bool(getattr(units, "removes_in_model", False))  # e.g. tokens dropped from the sequence
        out_bufs = [] if in_model else [torch.empty((rows, *x_cpu.shape[1:]), dtype=x_cpu.dtype) for _ in range(2)]

        def build(chunk: int) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
            """The masked batch of chunk ``chunk`` and its (input, sparsity, side) indices. With removal inside
            the model the batch is ``(distinct inputs, input of each copy, keep mask)`` instead."""
            flat = torch.arange(*bounds[chunk])
            c = flat.numel()
            i_idx = flat // tasks
            t_idx = flat % tasks
            j_idx = t_idx // (2 * n_draw)
            side = (t_idx // n_draw) % 2
            # rows of one (input, sparsity, side) are consecutive: build one threshold row per run
            runs, run_len = torch.unique_consecutive(flat // n_draw, return_counts=True)
            i_r, js = runs // (2 * n_s), runs % (2 * n_s)
            j_r, side_r = js // 2, js % 2
            p_r = pos[i_r]
            candidate = ((p_r >= lo[i_r, j_r, side_r][:, None]) & (p_r < hi[i_r, j_r, side_r][:, None])).numpy()
            runs_np = (i_r.numpy(), j_r.numpy(), side_r.numpy())
            # a unit is kept when its draw >= its threshold (0 for non-candidates: always kept)
            thresh = np.where(candidate, thresh_u32[runs_np][:, None], np.uint32(0)) if any_stochastic else None
            keep_np = keep_buf[:c]
            lens = run_len.numpy()
            ends = np.cumsum(lens)
            last_task = t_idx[ends - 1].numpy()
            if not any_stochastic:  # every rate 0 or 1 (plain Fidelity): one copy per run, no draw to compare
                np.logical_not(candidate & (thresh_u32[runs_np] > 0)[:, None], out=keep_np)
            elif c * d >= _RUN_BY_RUN_MIN * lens.size:  # big runs: draw and compare run by run, in cache
                for r, (i, n_r, e) in enumerate(zip(i_r.tolist(), lens.tolist(), ends.tolist(), strict=True)):
                    draws = streams.rows(i, n_r, last=int(last_task[r]) == tasks - 1)
                    np.greater_equal(draws, thresh[r], out=keep_np[e - n_r : e])
            else:  # short runs: the chunk's draws, one threshold row per masked copy, one comparison
                if not np_bufs:
                    np_bufs.update(draws=np.empty((rows, d), np.uint32), thresh=np.empty((rows, d), np.uint32))
                draws = np_bufs["draws"][:c]
                uniq, counts = torch.unique_consecutive(i_idx, return_counts=True)
                row = 0
                for i, n_i in zip(uniq.tolist(), counts.tolist(), strict=True):
                    last = int(t_idx[row + n_i - 1]) == tasks - 1
                    draws[row : row + n_i] = streams.rows(i, n_i, last=last)
                    row += n_i
                np.greater_equal(draws, np.take(thresh, np.repeat(np.arange(lens.size), lens), axis=0,
                                                out=np_bufs["thresh"][:c]), out=keep_np)
            for r in np.flatnonzero(always_exact[runs_np]):  # rate 1 beside random draws: remove exactly
                keep_np[ends[r] - lens[r] : ends[r]] &= ~candidate[r]
            keep = torch.from_numpy(keep_np)
            if in_model:  # the keep buffer is reused by the next chunk: this one keeps a copy
                uniq, inverse = torch.unique_consecutive(i_idx, return_inverse=True)
                return (x_cpu[uniq], inverse, keep.clone()), i_idx, j_idx, side
            first, last = int(i_idx[0]), int(i_idx[-1])
            if first == last:  # one input in the chunk: a broadcast view instead of a copy per row
                x_rows = x_cpu[first : first + 1].expand(c, *x_cpu.shape[1:])
            else:
                if "x" not in bufs:
                    bufs["x"] = torch.empty((rows, *x_cpu.shape[1:]), dtype=x_cpu.dtype)
                x_rows = torch.index_select(x_cpu, 0, i_idx, out=bufs["x"][:c])
            x_masked = units.remove_into(x_rows, keep, out_bufs[chunk % 2][:c])
            return x_masked, i_idx, j_idx, side

        with progress_bar(total, f"{self.method}: masked forward passes", self.progress) as advance:

            def consume(item: tuple[torch.Tensor, ...]) -> None:
                x_masked, i_idx, j_idx, side = item
                if in_model:
                    x_u, inverse, keep = x_masked
                    logits = self._call(model, x_u, device, "masked inputs",
                                        lambda xd: units.forward_removed(model, xd, inverse.to(device), keep.to(device)))
                else:
                    logits = self._call(model, x_masked, device, "masked inputs")
                sc = self._score(logits, targets[i_idx])
                sums.index_put_((i_idx, j_idx, side), sc, accumulate=True)
                advance(i_idx.numel())

            # the first chunks run inline and are timed. With several candidate sizes (batch_size "auto") each
            # runs on two chunks after a warm-up chunk, within a tenth of the evaluation's copies, and the fastest
            # per masked copy is kept (an evaluation too small for that runs at 64). Masking in a
            # background thread pays off only when it costs a fair share of the forward pass (small models);
            # otherwise the extra thread only disturbs the model's thread pool.
            per_copy: dict[int, tuple[float, float, float]] = {}  # size -> (s per copy, t_build, t_model)
            self.calibration_: list[tuple[int, float]] = []  # (copies, seconds) of every timed chunk
            done = 0

            def timed_chunk(size: int) -> None:
                nonlocal done
                bounds.append((done, min(done + size, total)))
                t0 = time.perf_counter()
                with _single_thread():
                    item = build(len(bounds) - 1)
                t_build = time.perf_counter() - t0
                t0 = time.perf_counter()
                consume(item)
                t_model = time.perf_counter() - t0
                c = bounds[-1][1] - done
                done = bounds[-1][1]
                self.calibration_.append((c, t_build + t_model))
                if (t_build + t_model) / c < per_copy.get(size, (math.inf,))[0]:
                    per_copy[size] = ((t_build + t_model) / c, t_build, t_model)

            # the sizes whose two chunks fit, after a warm-up chunk, in the copies the timed chunks may take
            budget, used, timed = _AUTO_BUDGET * total, candidates[0], []
            for size in candidates if len(candidates) > 1 else ():
                if used + 2 * size > budget:
                    break
                used += 2 * size
                timed.append(size)
            if len(timed) >= 2:  # ascending; stop at the first size clearly slower per copy than the best so far
                timed_chunk(candidates[0])
                per_copy.clear()  # the warm-up chunk pays for first-call costs: not a measurement
                for size in timed:
                    timed_chunk(size)
                    timed_chunk(size)
                    if per_copy[size][0] > _AUTO_STOP * min(v[0] for v in per_copy.values()):
                        break
                chosen = min(per_copy, key=lambda b: per_copy[b][0]) if per_copy else min(_AUTO_SMALL, rows)
                if len(per_copy) > 1:
                    log.info("%s: batch size %d chosen (ms per masked copy: %s)", self.method, chosen,
                             ", ".join(f"{b} -> {v[0] * 1e3:.3f}" for b, v in sorted(per_copy.items())))
            else:  # a fixed size, or an evaluation too small for calibration to pay off
                chosen = candidates[0] if len(candidates) == 1 else min(_AUTO_SMALL, rows)
                timed_chunk(chosen)  # inline and timed: decides whether masking gets its own thread
            self.batch_size_ = chosen
            _, t_build, t_model = per_copy.get(chosen, (0.0, 0.0, 1.0))
            calibrated = len(bounds)
            bounds.extend((a, min(a + chosen, total)) for a in range(done, total, chosen))
            threaded = len(bounds) - calibrated > 2 and t_build > 0.2 * t_model
            with _prefetched(build, len(bounds), start=calibrated, threaded=threaded) as batches:
                for item in batches:
                    consume(item)
        means = sums / n_draw
        return means[:, :, 0], means[:, :, 1]


class RFidelity(Fidelity):
    """R-Fidelity: each candidate unit is removed independently with probability alpha, averaged over draws.

    Args:
        alpha_plus: removal probability of each explanation unit (Fid+).
        alpha_minus: removal probability of each non-explanation unit (Fid-).
        n_samples: Monte-Carlo draws per input and sparsity.
        **kwargs: as ``Fidelity``.
    """

    method = "rfid"

    def __init__(self, alpha_plus: float = 0.5, alpha_minus: float = 0.5, n_samples: int = 50, **kwargs: Any):
        super().__init__(**kwargs)
        self.alpha_plus = alpha_plus
        self.alpha_minus = alpha_minus
        self.n_samples = n_samples
        self._check_params()


class FFidelity(RFidelity):
    """F-Fidelity: R-Fidelity on a random-mask fine-tuned model, with removals capped at ``beta * D``.

    Args:
        beta: fine-tuning mask ratio and cap on the expected fraction of units removed at evaluation.
        alpha_plus, alpha_minus, n_samples: as ``RFidelity``.
        beta_minus: cap on the expected fraction removed from the complement (the LeRF / Fid- side); ``None``
            (the paper) uses ``beta``. A larger value removes more of the complement, which strengthens the
            LeRF signal at the price of more out-of-distribution inputs (see the LeRF study in the README).
        **kwargs: as ``Fidelity``.
    """

    method = "ffid"

    def __init__(self, beta: float = 0.1, alpha_plus: float = 0.5, alpha_minus: float = 0.5, n_samples: int = 50,
                 beta_minus: float | None = None, **kwargs: Any):
        super().__init__(alpha_plus=alpha_plus, alpha_minus=alpha_minus, n_samples=n_samples, **kwargs)
        self.beta = beta
        self.beta_minus = beta_minus
        self._check_params()

    def finetune(self, model: nn.Module, train_data: Any, **kwargs: Any) -> nn.Module:
        """Fine-tunes a copy of ``model`` on inputs with exactly ``floor(beta * D)`` random units removed.

        The masks never come from an explainer, so the evaluator knows nothing about any explainer. See
        ``ffidelity.finetune.finetune_random_masks`` for the keyword arguments (epochs, lr, val_data, out_dir,
        ...). The copy is also kept as ``self.evaluator_``.
        """
        from ffidelity.finetune import finetune_random_masks

        self._check_params()
        units = self.units if self.units is not None else ImageUnits()
        kwargs.setdefault("seed", self.seed)
        kwargs.setdefault("progress", self.progress)
        self.evaluator_ = finetune_random_masks(model, train_data, units=units, beta=float(self.beta), **kwargs)
        return self.evaluator_


# -- helpers ----------------------------------------------------------------------------------------------------
def _check_unit_interval(name: str, value: Any) -> None:
    if not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def _warn_constant(scores: torch.Tensor, valid: torch.Tensor) -> None:
    """Warns when an input's scores are all equal: its explanation is then a random order of its units."""
    hi = scores.masked_fill(~valid, -math.inf).max(1).values
    lo = scores.masked_fill(~valid, math.inf).min(1).values
    constant = ((hi == lo) & (valid.sum(1) > 1)).nonzero().flatten()
    if constant.numel():
        warnings.warn(f"{constant.numel()} input(s) have constant attributions (e.g. input {int(constant[0])}): "
                      "their units are ranked in a random order", UserWarning, stacklevel=3)


def _check_targets(targets: Any, n: int, n_classes: int) -> torch.Tensor:
    t = torch.as_tensor(targets)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"targets must have shape ({n},), got {tuple(t.shape)}")
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"targets must be integer class indices, got dtype {t.dtype}")
    t = t.long().cpu()
    if n and (int(t.min()) < 0 or int(t.max()) >= n_classes):
        raise ValueError(f"targets must lie in [0, {n_classes - 1}] (the model has {n_classes} classes), "
                         f"got values from {int(t.min())} to {int(t.max())}")
    return t


def _rank_positions(scores: torch.Tensor, valid: torch.Tensor, seed: int, offset: int) -> torch.Tensor:
    """Rank of every unit (0 = highest score); ties broken by a seeded random order, never by position."""
    n, d = scores.shape
    keys = torch.stack([torch.rand(d, generator=seeded_generator(seed, offset + i, _STREAM_RANK))
                        for i in range(n)])
    by_key = keys.argsort(dim=1)
    s = scores.masked_fill(~valid, -math.inf).gather(1, by_key)
    order = by_key.gather(1, torch.sort(s, dim=1, descending=True, stable=True).indices)
    pos = torch.empty_like(order)
    pos.scatter_(1, order, torch.arange(d).expand(n, d).contiguous())
    return pos.masked_fill(~valid, d)


@contextmanager
def _single_thread() -> Iterator[None]:
    """Runs the enclosed torch ops on one thread, then restores the thread count.

    Mask building is a handful of memory-bound ops on a few hundred kB; splitting them over a thread pool
    saves little, and on a busy machine every parallel region waits for a descheduled thread (measured:
    0.04 ms on one thread, 20 ms on two with the cores shared by other processes).
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@contextmanager
def _prefetched(build: Any, n: int, start: int = 0, threaded: bool = True) -> Iterator[Iterator[Any]]:
    """``build(start), ..., build(n - 1)`` in order, each built in a background thread while the caller uses the
    last (``threaded=False``: built inline, single-threaded, when asked for).

    Masking is single-threaded, memory-bound work; the model's forward pass uses the thread pool. Overlapping
    the two hides most of the masking cost on small models. At most two built chunks exist at any time (the one
    in use and the next), which is what the engine's two output buffers allow: chunk ``k + 2`` is built only
    after the caller has asked for chunk ``k + 1``, that is, finished with chunk ``k``. The order of the chunks,
    and so every random draw, is the same as in a plain loop. Errors in the thread are raised in the caller.
    One chunk runs inline, without a thread.
    """
    if not threaded or n - start <= 1:

        def inline() -> Iterator[Any]:
            for k in range(start, n):
                with _single_thread():
                    item = build(k)
                yield item

        yield inline()
        return
    import queue
    import threading

    slots = threading.Semaphore(2)  # two buffers: chunk k + 2 waits until the caller is done with chunk k
    ready: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    inference = torch.is_inference_mode_enabled()  # thread-local in torch: carried over by hand

    def work() -> None:
        torch.set_num_threads(1)  # per thread: the caller's pool is untouched
        try:
            with torch.inference_mode(inference), torch.no_grad():
                for k in range(start, n):
                    slots.acquire()
                    if stop.is_set():
                        return
                    ready.put(("ok", build(k)))
        except BaseException as exc:  # handed to the caller, which raises it
            ready.put(("error", exc))

    thread = threading.Thread(target=work, name="ffidelity-masking", daemon=True)
    thread.start()

    def items() -> Iterator[Any]:
        for _ in range(start, n):
            kind, item = ready.get()
            if kind == "error":
                raise item
            yield item
            slots.release()  # the caller is done with this chunk's buffer

    try:
        yield items()
    finally:
        stop.set()
        slots.release()
        while thread.is_alive():  # unblock a thread waiting to hand over a chunk nobody will take
            with suppress(queue.Empty):
                ready.get(timeout=0.05)
        thread.join()


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
