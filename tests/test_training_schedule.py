"""The learning-rate schedule of ``fit_classifier``: cosine decay reaches zero, and bad names are refused."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from ffidelity.training import ClassifierModule, fit_classifier


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=gen)
    return x, (x[:, 0] > 0).long()


@pytest.fixture
def seen_lrs(monkeypatch) -> list[float]:
    """The learning rate of every training step, in order."""
    seen: list[float] = []
    original = ClassifierModule.training_step

    def spy(self, batch, batch_idx):
        seen.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ClassifierModule, "training_step", spy)
    return seen


def test_cosine_schedule_decays_the_learning_rate_to_zero_per_step(seen_lrs) -> None:
    seen = seen_lrs
    torch.manual_seed(0)
    fit_classifier(nn.Linear(4, 2), _data(), epochs=3, lr=0.1, batch_size=16, schedule="cosine", progress=False)
    assert len(seen) == 12  # 4 steps per epoch, 3 epochs
    assert seen[0] == pytest.approx(0.1)
    assert all(a > b for a, b in itertools.pairwise(seen))  # decays every step, across epochs
    assert seen[-1] == pytest.approx(0.1 * (1 + torch.cos(torch.tensor(11 / 12 * torch.pi)).item()) / 2)


def test_constant_schedule_keeps_the_learning_rate(seen_lrs) -> None:
    fit_classifier(nn.Linear(4, 2), _data(), epochs=2, lr=0.05, batch_size=32, progress=False)
    assert seen_lrs == [0.05] * 4


def test_unknown_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="schedule must be one of"):
        fit_classifier(nn.Linear(4, 2), _data(), epochs=1, schedule="linear", progress=False)
