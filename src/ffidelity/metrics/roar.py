"""ROAR (RemOve And Retrain, Hooker et al. 2019), in the variant of the F-Fidelity paper's code.

The model is retrained from scratch, once per explainer, on training inputs whose top units (by that
explainer) are removed at a fraction drawn from U(0, 1) per input and step; the retrained model is then
evaluated with deterministic removal (plain Fidelity). Expensive by design: one training run per explainer,
and the explainer must run on the whole training set. Removed units take the reference value (0: the
per-channel mean of standardised inputs).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ffidelity.metrics.engine import Fidelity
from ffidelity.metrics.masking import _rank_positions
from ffidelity.metrics.result import FidelityResult
from ffidelity.models.training import fit_classifier
from ffidelity.units.base import Units
from ffidelity.units.grid import ImageUnits


class TopFractionRemoval:
    """Batch transform: removes the top ``U(0, 1) * D`` units of each input by its precomputed ranking."""

    def __init__(self, units: Units) -> None:
        self.units = units

    def __call__(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, pos = batch
        valid = self.units.valid(x)
        frac = torch.rand(x.shape[0], 1, device=x.device)
        k = torch.floor(frac * valid.sum(1, keepdim=True)).long()
        return self.units.remove(x, ~(pos < k)), y


class ROAR(Fidelity):
    """Retrain on explanation-guided removal, then measure Fidelity on the retrained model.

    Args:
        sparsities, mode, units, seed, batch_size, progress: as ``Fidelity``.
    """

    method = "roar"

    def retrain(
        self,
        make_model: Callable[[], nn.Module],
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        train_attributions: torch.Tensor,
        *,
        out_dir: str | Path | None = None,
        **fit_kwargs: Any,
    ) -> nn.Module:
        """Trains ``make_model()`` from scratch on inputs with a U(0,1) fraction of their top units removed.

        Args:
            make_model: builds a fresh model (it is seeded with ``self.seed`` first).
            x_train, y_train: the training data.
            train_attributions: the explainer's attributions of the training inputs (input or unit shape).
            out_dir: cache folder; a finished run is loaded instead of retrained.
            **fit_kwargs: ``epochs``, ``lr``, ``batch_size`` ... for ``fit_classifier``.
        """
        units = self.units if self.units is not None else ImageUnits()
        scores = units.scores(train_attributions, x_train).detach().cpu().double()
        if not torch.isfinite(scores).all():
            raise ValueError("training attributions contain NaN or inf values")
        pos = _rank_positions(scores, units.valid(x_train).cpu(), self.seed, 0)
        torch.manual_seed(self.seed)
        model = make_model()
        fit_kwargs.setdefault("seed", self.seed)
        fit_kwargs.setdefault("progress", self.progress)
        self.model_ = fit_classifier(model, (x_train, y_train, pos), transform=TopFractionRemoval(units),
                                     out_dir=out_dir, **fit_kwargs)
        return self.model_

    def evaluate(self, model: nn.Module, inputs: torch.Tensor, targets: Any, attributions: torch.Tensor,
                 **kwargs: Any) -> FidelityResult:
        """Deterministic removal (Fidelity) on the retrained ``model``."""
        return super().evaluate(model, inputs, targets, attributions, **kwargs)
