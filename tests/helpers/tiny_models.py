"""Tiny models whose outputs are known by hand, shared by the metric tests."""

import torch
from torch import nn


class LinearTwoClass(nn.Module):
    """logit_0 = <w, x>, logit_1 = 0 on (B, 1, H, W) inputs: p_0 = sigmoid(<w, x>)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.flatten(1) * self.w.flatten()).sum(1)
        return torch.stack([z, torch.zeros_like(z)], dim=1)
