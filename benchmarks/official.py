"""The official F-Fidelity code's way of evaluating, re-implemented as a speed baseline.

The official image scripts loop over the test set one image at a time (a DataLoader with batch size 1), build
each mask with numpy, and call the model without ``torch.no_grad`` (autograd records every forward pass):

* Fidelity (MoRF/LeRF): one masked copy per sparsity and side, a forward pass at batch size 1;
* R-/F-Fidelity: per sparsity and side, ``N`` random masks drawn at once, the input tiled ``N`` times and
  multiplied by the masks, one forward pass at batch size ``N``; F-Fidelity caps the removal rate at
  ``beta * D / k``.

These functions reproduce that cost structure (not its known defects, e.g. the off-by-one sparsities); they
return the accuracy curves so the work cannot be optimised away, and the number of masked forward passes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def _order(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, kind="stable")  # most relevant unit first


def official_fidelity(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, scores: np.ndarray,
                      sparsities: Sequence[float]) -> tuple[np.ndarray, int]:
    """Plain Fidelity, one image and one masked copy (batch size 1) at a time, autograd on.

    Args:
        model: the classifier (put in eval mode, gradients left on).
        inputs: (N, C, H, W) images; a unit is a pixel with all its channels.
        targets: (N,) labels whose accuracy is tracked.
        scores: (N, H * W) explanation scores per pixel.
        sparsities: explanation sizes as fractions of the pixels.

    Returns:
        accuracy (N, S, 2) for (explanation removed, rest removed), and the number of masked forward passes.
    """
    model.eval()
    n, _, h, w = inputs.shape
    d = h * w
    acc = np.zeros((n, len(sparsities), 2))
    passes = 0
    for i in range(n):
        x, y = inputs[i : i + 1], int(targets[i])
        model(x).argmax().item()  # the unmasked prediction, as the official loop computes it
        order = _order(scores[i])
        for j, s in enumerate(sparsities):
            k = min(int(s * d), d)
            for side, removed in enumerate((order[:k], order[k:])):
                mask = np.ones(d)
                mask[removed] = 0.0
                m = torch.from_numpy(mask).view(1, 1, h, w)
                pred = model((x * m).float()).argmax().item()
                acc[i, j, side] = float(pred == y)
                passes += 1
    return acc, passes


def official_rfidelity(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, scores: np.ndarray,
                       sparsities: Sequence[float], n_samples: int = 50, alpha: float = 0.5,
                       beta: float | None = None) -> tuple[np.ndarray, int]:
    """R-Fidelity (``beta`` None) or F-Fidelity's evaluation, one image at a time, a batch of ``n_samples``
    random masks per sparsity and side, autograd on.

    Returns:
        mean accuracy over the draws (N, S, 2), and the number of masked forward passes.
    """
    model.eval()
    n, _, h, w = inputs.shape
    d = h * w
    acc = np.zeros((n, len(sparsities), 2))
    passes = 0
    for i in range(n):
        x, y = inputs[i : i + 1], int(targets[i])
        model(x).argmax().item()
        order = _order(scores[i])
        for j, s in enumerate(sparsities):
            k = min(int(s * d), d)
            for side, candidates in enumerate((order[:k], order[k:])):
                mask = np.ones(d)
                mask[candidates] = 0.0  # 0 = may be removed
                masks = torch.from_numpy(mask).view(1, 1, h, w)
                ratio = alpha
                if beta is not None and len(candidates) * alpha > beta * d:
                    ratio = beta * d / len(candidates)
                draws = torch.rand(n_samples, 1, h, w)
                kept_draws = torch.where(draws > ratio, torch.ones_like(draws), torch.zeros_like(draws))
                new_masks = masks + (1 - masks) * kept_draws
                batch = torch.tile(x, (n_samples, 1, 1, 1)) * new_masks
                preds = model(batch.float()).argmax(dim=-1).cpu()
                acc[i, j, side] = float((preds == y).float().mean())
                passes += n_samples
    return acc, passes
