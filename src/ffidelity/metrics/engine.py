"""The fidelity engine: one code path for Fidelity, R-Fidelity and F-Fidelity.

All three remove a stochastic subset of the explanation (Fid+, MoRF) or of its complement (Fid-, LeRF) and
measure how much the model's score for the target drops:

* ``Fidelity``: every candidate unit is removed (alpha = 1), one sample, no cap;
* ``RFidelity``: each candidate is removed with probability alpha, ``n_samples`` Monte-Carlo draws;
* ``FFidelity``: like R-Fidelity on a model fine-tuned on random masks, with the expected number of removed
  units capped at ``beta * D`` (rate = min(alpha, beta*D/k)).

Every masked copy of every input at every sparsity and side is enumerated as one flat stream of (input, task)
pairs (:mod:`ffidelity.metrics.masking`) and fed to the model in chunks of ``batch_size``
(:mod:`ffidelity.metrics.schedule`): memory stays flat as ``n_samples`` grows, and no Python loop runs per model
call. Random draws come from per-input generators seeded by ``(seed, input index)``, so results do not depend on
``batch_size`` or on how inputs are sharded across processes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ffidelity.metrics.masking import DRAWS, MaskedCopies, _rank_positions, removal_thresholds
from ffidelity.metrics.result import FidelityResult
from ffidelity.metrics.schedule import AUTO_BATCH_SIZES, PLAIN_BATCH, run_chunks
from ffidelity.units.base import Units
from ffidelity.units.grid import ImageUnits
from ffidelity.utils.allocator import auto_tune_allocator
from ffidelity.utils.modelio import logits_of, model_device
from ffidelity.utils.progress import progress_bar
from ffidelity.utils.seeding import draw_bit_generator, seeded_generator

__all__ = [  # from AUTO_BATCH_SIZES on: defined elsewhere, kept here for ``from ffidelity.metrics.engine import ...``
    "AUTO_BATCH_SIZES",
    "DEFAULT_SPARSITIES",
    "DRAWS",
    "MODES",
    "PLAIN_BATCH",
    "FFidelity",
    "Fidelity",
    "RFidelity",
    "draw_bit_generator",
    "logits_of",
    "model_device",
    "removal_thresholds",
    "seeded_generator",
]

DEFAULT_SPARSITIES: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""The paper's sparsity grid: 0.05, 0.10, ..., 0.95 (19 explanation sizes, fractions of the units)."""
MODES = ("acc", "prob")


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
        auto_tune_allocator()  # once per process: small models' activations stop page-faulting on every batch
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
        n = scores.shape[0]
        s = torch.as_tensor(self.sparsity_grid(), dtype=torch.float64)
        # (n, d); invalid slots get d. int32: the candidate masks read it once per copy
        pos = _rank_positions(scores, valid, self.seed, index_offset).int()
        d_valid = valid.sum(1)  # (n,)
        k = torch.floor(s[None, :] * d_valid[:, None].double() + 0.5).long()  # (n, S)
        rate_plus, rate_minus = self.rates(k, d_valid[:, None].expand_as(k))
        rate = torch.stack([rate_plus, rate_minus], dim=2)  # (n, S, 2)
        n_draw = int(self.n_samples)
        if not ((rate > 0) & (rate < 1)).any():  # every removal certain: the N copies would be identical
            n_draw = 1
        copies = MaskedCopies(inputs.detach().cpu(), pos, k, d_valid, rate, n_draw, units, self.seed, index_offset)
        sums = torch.zeros(n, s.numel(), 2, dtype=torch.float64)

        with progress_bar(copies.total, f"{self.method}: masked forward passes", self.progress) as advance:

            def consume(item: tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
                x_masked, i_idx, j_idx, side = item
                if copies.in_model:
                    x_u, inverse, keep = x_masked
                    logits = self._call(model, x_u, device, "masked inputs",
                                        lambda xd: units.forward_removed(model, xd, inverse.to(device), keep.to(device)))
                else:
                    logits = self._call(model, x_masked, device, "masked inputs")
                sc = self._score(logits, targets[i_idx])
                sums.index_put_((i_idx, j_idx, side), sc, accumulate=True)
                advance(i_idx.numel())

            self.batch_size_, self.calibration_ = run_chunks(copies, consume, self.batch_size, self.method)
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
        ``ffidelity.metrics.finetune.finetune_random_masks`` for the keyword arguments (epochs, lr, val_data, out_dir,
        ...). The copy is also kept as ``self.evaluator_``.
        """
        from ffidelity.metrics.finetune import finetune_random_masks

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
    if bool(valid.all()):  # e.g. images: no slot to mask out
        lo, hi = scores.aminmax(dim=1)
    else:
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
