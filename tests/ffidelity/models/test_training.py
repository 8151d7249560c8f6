"""The learning-rate schedule of ``fit_classifier``: cosine decay reaches zero, and bad names are refused."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from ffidelity.models.training import ClassifierModule, fit_classifier


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


def test_a_torchscript_model_fine_tunes_and_stays_untouched() -> None:
    """F-Fidelity fine-tunes a copy: a scripted model's deep copy is not trainable, so it is saved and reloaded."""
    from ffidelity import FFidelity

    torch.manual_seed(0)
    net = torch.jit.script(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(24, 1, 4, 4), torch.randint(0, 3, (24,))
    tuned = FFidelity(beta=0.2, n_samples=2, progress=False).finetune(net, (x, y), epochs=2, lr=1e-2,
                                                                      batch_size=8, progress=False)
    assert isinstance(tuned, torch.jit.ScriptModule)
    assert any(not torch.equal(before[k], v) for k, v in tuned.state_dict().items())  # the copy trained
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the original did not
