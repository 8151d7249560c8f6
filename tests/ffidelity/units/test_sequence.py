"""SequenceUnits: geometry, padding, removal, and exact Fid on a hand-built linear sequence model."""

import math

import pytest
import torch
from torch import nn

from ffidelity import Fidelity, SequenceUnits
from ffidelity.data.timeseries import pad_sequences
from ffidelity.units.random import mask_random_units


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


class SumModel(nn.Module):
    """Class-1 logit = sum of feature 0 over real steps (padding -1 excluded), class-0 logit = 0."""

    def __init__(self, pad_value: float | None = None) -> None:
        super().__init__()
        self.pad_value = pad_value
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[..., 0]
        if self.pad_value is not None:
            v = torch.where(v == self.pad_value, torch.zeros_like(v), v)
        s = v.sum(1) + self.dummy
        return torch.stack([torch.zeros_like(s), s], dim=1)


def test_geometry_scores_and_zero_removal():
    x = torch.arange(24, dtype=torch.float32).reshape(2, 4, 3)
    u = SequenceUnits()
    assert u.num_units(x) == 4
    assert u.valid(x).all()
    # (B, T, F) attributions sum over features; (B, T) pass through
    assert torch.equal(u.scores(x, x), x.sum(2))
    assert torch.equal(u.scores(x.sum(2), x), x.sum(2))
    keep = torch.tensor([[True, False, True, True], [False, True, True, False]])
    out = u.remove(x, keep)
    assert torch.equal(out[0, 1], torch.zeros(3)) and torch.equal(out[0, [0, 2, 3]], x[0, [0, 2, 3]])
    assert torch.equal(out[1, 0], torch.zeros(3)) and torch.equal(out[1, 3], torch.zeros(3))
    assert torch.equal(out[1, 1:3], x[1, 1:3])


def test_mean_and_constant_reference():
    x = torch.tensor([[[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]]])
    keep = torch.tensor([[True, False, True]])
    assert torch.equal(SequenceUnits(reference="mean").remove(x, keep)[0, 1], torch.tensor([3.0, 30.0]))
    assert torch.equal(SequenceUnits(reference=-2.5).remove(x, keep)[0, 1], torch.tensor([-2.5, -2.5]))


def test_windows_group_steps():
    x = torch.ones(1, 5, 2)
    u = SequenceUnits(window=2)
    assert u.num_units(x) == 3
    assert torch.equal(u.scores(torch.ones(1, 5, 2), x), torch.tensor([[4.0, 4.0, 2.0]]))
    out = u.remove(x, torch.tensor([[True, False, True]]))
    assert torch.equal(out[0, :, 0], torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0]))


def test_padding_is_never_a_unit_and_never_removed():
    x = pad_sequences([torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0])], pad_value=-1.0)
    assert x.shape == (2, 3, 1)
    u = SequenceUnits(reference="mean", pad_value=-1.0)
    assert torch.equal(u.valid(x), torch.tensor([[True, True, True], [True, False, False]]))
    out = u.remove(x, torch.zeros(2, 3, dtype=torch.bool))
    assert torch.equal(out[0, :, 0], torch.full((3,), 2.0))  # mean over the 3 real steps
    assert torch.equal(out[1, :, 0], torch.tensor([4.0, -1.0, -1.0]))  # padding kept; mean of one real step
    nan_units = SequenceUnits(pad_value=float("nan"))
    xn = pad_sequences([torch.ones(2, 2), torch.ones(1, 2)], pad_value=float("nan"))
    assert torch.equal(nan_units.valid(xn), torch.tensor([[True, True], [True, False]]))


def test_ragged_sequences_without_mask_give_a_clear_error():
    ragged = [torch.zeros(3, 2), torch.zeros(5, 2)]
    with pytest.raises(TypeError, match="pad_sequences"):
        SequenceUnits().valid(ragged)
    nested = torch.nested.nested_tensor([torch.zeros(3, 2), torch.zeros(5, 2)], layout=torch.jagged)
    with pytest.raises(TypeError, match="ragged"):
        SequenceUnits().num_units(nested)
    with pytest.raises(ValueError, match="3 dimensions"):
        SequenceUnits().num_units(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="do not match"):
        SequenceUnits().scores(torch.zeros(2, 7), torch.zeros(2, 5, 1))
    with pytest.raises(ValueError, match="reference"):
        SequenceUnits(reference="median")


def test_exact_fidelity_on_sequences_by_hand():
    # one sequence 1, 2, 3, 4 (+ two padding steps); attribution = value; s = 0.5 -> top 2 steps {3, 4}
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, -1.0, -1.0]])[..., None]
    attr = torch.tensor([[1.0, 2.0, 3.0, 4.0, 100.0, 100.0]])  # huge scores on padding must be ignored
    units = SequenceUnits(reference="zero", pad_value=-1.0)
    res = Fidelity(sparsities=[0.25, 0.5], mode="prob", units=units, progress=False).evaluate(
        SumModel(pad_value=-1.0), x, torch.tensor([1]), attr)
    # D = 4 real steps: s = 0.25 -> k = 1 ({4}); s = 0.5 -> k = 2 ({3, 4})
    assert res.fid_plus == pytest.approx([sig(10) - sig(6), sig(10) - sig(3)], abs=1e-9)
    assert res.fid_minus == pytest.approx([sig(10) - sig(4), sig(10) - sig(7)], abs=1e-9)
    acc = Fidelity(sparsities=[0.5], mode="acc", units=units, progress=False).evaluate(
        SumModel(pad_value=-1.0), x, torch.tensor([1]), attr)
    assert acc.fid_plus.tolist() == [0.0] and acc.fid_minus.tolist() == [0.0]  # sums 3 and 7 stay positive


def test_random_mask_finetuning_transform_on_sequences():
    x = pad_sequences([torch.arange(1, 21, dtype=torch.float32), torch.arange(1, 11, dtype=torch.float32)],
                      pad_value=-1.0)
    units = SequenceUnits(reference="zero", pad_value=-1.0)
    gen = torch.Generator().manual_seed(3)
    out = mask_random_units(x, units, beta=0.25, generator=gen)
    zeroed = (out[..., 0] == 0).sum(1)
    assert zeroed.tolist() == [5, 2]  # floor(0.25 * 20), floor(0.25 * 10) real steps
    assert torch.equal(out[1, 10:, 0], torch.full((10,), -1.0))  # padding untouched
