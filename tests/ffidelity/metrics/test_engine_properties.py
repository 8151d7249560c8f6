"""Property-based checks of the engine (hypothesis)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ffidelity import FFidelity, Fidelity, ImageUnits, RFidelity


class TinyNet(nn.Module):
    def __init__(self, seed: int, classes: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(classes, 16, generator=g), requires_grad=False)

    def forward(self, x):
        return x.flatten(1) @ self.w.T


inputs = st.integers(min_value=1, max_value=4)
seeds = st.integers(min_value=0, max_value=2**16)


@settings(max_examples=25, deadline=None)
@given(n=inputs, seed=seeds, mode=st.sampled_from(["acc", "prob"]), n_samples=st.integers(1, 4))
def test_alpha_zero_gives_zero_fidelity(n, seed, mode, n_samples) -> None:
    g = torch.Generator().manual_seed(seed)
    x, attr = torch.randn(n, 1, 4, 4, generator=g), torch.randn(n, 1, 4, 4, generator=g)
    res = RFidelity(alpha_plus=0.0, alpha_minus=0.0, n_samples=n_samples, mode=mode, seed=seed,
                    progress=False).evaluate(TinyNet(seed), x, None, attr)
    # exactly 0 up to the float32 rounding of batched matrix products (the same input in other batch sizes)
    assert np.abs(res.per_sample_plus).max() < 1e-6 and np.abs(res.per_sample_minus).max() < 1e-6  # float32 logits


@settings(max_examples=25, deadline=None)
@given(n=inputs, seed=seeds, beta=st.floats(0, 1), alpha=st.floats(0, 1), patch=st.sampled_from([1, 2, 3]),
       method=st.sampled_from(["fid", "rfid", "ffid"]))
def test_acc_mode_fidelity_lies_in_minus_one_one(n, seed, beta, alpha, patch, method) -> None:
    g = torch.Generator().manual_seed(seed)
    x, attr = torch.randn(n, 1, 4, 4, generator=g), torch.randn(n, 1, 4, 4, generator=g)
    targets = torch.randint(0, 3, (n,), generator=g)
    common = {"mode": "acc", "seed": seed, "units": ImageUnits(patch=patch), "progress": False,
              "sparsities": [0.1, 0.5, 0.9]}
    metric = {"fid": lambda: Fidelity(**common),
              "rfid": lambda: RFidelity(alpha, alpha, 3, **common),
              "ffid": lambda: FFidelity(beta, alpha, alpha, 3, **common)}[method]()
    res = metric.evaluate(TinyNet(seed), x, targets, attr)
    for arr in (res.per_sample_plus, res.per_sample_minus):
        assert np.all(arr >= -1) and np.all(arr <= 1)
