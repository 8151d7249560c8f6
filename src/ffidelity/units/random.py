"""Random removal: exactly ``floor(beta * D)`` random units of every input, the masks F-Fidelity fine-tunes on.

The masks never come from an explainer, so nothing about any explainer leaks into a model trained on them.
"""

from __future__ import annotations

import torch

from ffidelity.units.base import Units


def random_keep_mask(valid: torch.Tensor, n_remove: torch.Tensor, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """A (B, D) keep mask that removes exactly ``n_remove[b]`` random valid units of row b."""
    b, d = valid.shape
    if generator is None:
        keys = torch.rand(b, d, device=valid.device)
    else:
        keys = torch.rand(b, d, generator=generator).to(valid.device)
    keys = keys.masked_fill(~valid, 2.0)  # invalid slots sort last and are never picked
    order = keys.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(d, device=valid.device).expand(b, d).contiguous())
    return ~(ranks < n_remove.to(valid.device)[:, None])


def random_removal(x: torch.Tensor, units: Units, beta: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A (B, D) keep mask removing exactly ``floor(beta * D_b)`` random valid units of every input."""
    valid = units.valid(x)
    n_remove = torch.floor(beta * valid.sum(1).double() + 1e-9).long()
    return random_keep_mask(valid, n_remove, generator)


def mask_random_units(x: torch.Tensor, units: Units, beta: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Removes exactly ``floor(beta * D_b)`` random units of every input (all channels together)."""
    return units.remove(x, random_removal(x, units, beta, generator))
