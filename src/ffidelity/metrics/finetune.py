"""Explanation-agnostic fine-tuning: teach a copy of the model to live with randomly removed units.

F-Fidelity evaluates on a model that has seen inputs with ``floor(beta * D)`` random units removed, so removal
at evaluation time is no longer out of distribution. The masks are random, never taken from an explainer, so
nothing about any explainer leaks into the evaluator (ROAR's flaw).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ffidelity.models.training import fit_classifier
from ffidelity.units.base import Units
from ffidelity.units.random import mask_random_units, random_keep_mask, random_removal
from ffidelity.units.token_fill import TokenFill
from ffidelity.utils.modelio import logits_of

__all__ = [  # the random masks themselves live in ffidelity.units.random, kept here for older imports
    "RandomMasking", "evaluator_folder", "finetune_random_masks", "mask_random_units", "masked_accuracy",
    "random_keep_mask", "random_removal",
]


class RandomMasking:
    """A batch transform for ``fit_classifier``: random masking of the first tensor of each batch."""

    def __init__(self, units: Units, beta: float) -> None:
        self.units = units
        self.beta = beta

    def __call__(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        return mask_random_units(batch[0], self.units, self.beta), batch[1]


def finetune_random_masks(model: nn.Module, train_data: Any, *, units: Units, beta: float = 0.1,
                          epochs: int = 10, lr: float = 1e-4, weight_decay: float = 1e-4, batch_size: int = 128,
                          **kwargs: Any) -> nn.Module:
    """Returns a copy of ``model`` fine-tuned on inputs with ``floor(beta * D)`` random units removed.

    A fresh mask is drawn for every input at every step. With units that remove inside the model
    (:class:`ffidelity.units.token_drop.TokenDrop`) the random units are dropped from the token sequence instead. Defaults follow the paper's code (Adam, lr 1e-4,
    weight decay 1e-4, batch 128); with ``val_data`` the checkpoint with the best masked accuracy is returned.
    Other keyword arguments (``val_data``, ``out_dir``, ``seed``, ``progress``, ``accelerator``, ``devices``,
    ``trainer_kwargs``) go to ``ffidelity.models.training.fit_classifier``.
    """
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    units = _in_pixels(units)
    if getattr(units, "removes_in_model", False):  # token dropping: the model itself drops random tokens
        from ffidelity.units.token_drop import RandomTokenDropping

        wrapped = RandomTokenDropping(model, units, beta)  # type: ignore[arg-type]
        tuned = fit_classifier(wrapped, train_data, epochs=epochs, lr=lr, weight_decay=weight_decay,
                               optimizer="adam", batch_size=batch_size, **kwargs)
        return tuned.model.eval()
    return fit_classifier(model, train_data, epochs=epochs, lr=lr, weight_decay=weight_decay, optimizer="adam",
                          batch_size=batch_size, transform=RandomMasking(units, beta), **kwargs)


def evaluator_folder(beta: float, units: Units) -> str:
    """Folder name of a cached fine-tuned evaluator: one per beta and removal kind (fill or token dropping)."""
    units = _in_pixels(units)
    return f"finetuned_beta{beta}" + ("_drop" if getattr(units, "removes_in_model", False) else "")


def masked_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, units: Units, beta: float,
                    seed: int = 0, batch_size: int = 256) -> float:
    """Accuracy of ``model`` on ``x`` with ``floor(beta * D)`` random units removed (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    units = _in_pixels(units)
    correct = 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size]
            if getattr(units, "removes_in_model", False):
                from ffidelity.units.token_drop import random_drop_forward

                logits = logits_of(random_drop_forward(model, units, xb, beta, gen))
            else:
                logits = logits_of(model(mask_random_units(xb, units, beta, gen)))
            correct += int((logits.argmax(-1).cpu() == y[s : s + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, x.shape[0])


def _in_pixels(units: Units) -> Units:
    """Filling in token space (:class:`~ffidelity.units.token_fill.TokenFill`) is filling: the same random removal
    in pixels, which trains with gradients through the whole model and shares the filled evaluator's cache."""
    return units.units if isinstance(units, TokenFill) else units
