"""VideoUnits (one unit = one VideoMAE token) and GroupUnits (one unit = a labelled set of elements):
geometry, exact Fidelity on hand-built models, and random-tube fine-tuning through the engine."""

import math

import pytest
import torch
from torch import nn

from ffidelity import FFidelity, Fidelity, GroupUnits, RFidelity, VideoUnits
from ffidelity.units.random import mask_random_units


class Linear5d(nn.Module):
    """Two-class model: logit 1 = <w, x>, logit 0 = 0, so p(class 1) = sigmoid(<w, x>)."""

    def __init__(self, shape):
        super().__init__()
        self.w = nn.Parameter(torch.randn(*shape, generator=torch.Generator().manual_seed(5)) * 0.1)

    def forward(self, x):
        z = (x * self.w).flatten(1).sum(1)
        return torch.stack([torch.zeros_like(z), z], dim=1)


def p1(model, x):
    with torch.no_grad():
        return torch.softmax(model(x).double(), -1)[:, 1]


def tube_index(t, h, w, tubelet, patch, grid):
    return ((t // tubelet) * grid[1] + h // patch) * grid[2] + w // patch


def test_video_units_geometry_and_token_order():
    from multimae_der.model.videomae import build_classifier, make_config

    units = VideoUnits(tubelet=2, patch=16)
    x = torch.randn(2, 16, 3, 32, 48)
    assert units.num_units(x) == 8 * 2 * 3
    assert units.describe()["tubelet"] == 2 and "VideoUnits" in repr(units)
    with pytest.raises(ValueError, match="5 dimensions"):
        units.num_units(torch.zeros(2, 3, 32, 32))
    # unit u is token u of VideoMAE's patch embedding
    model = build_classifier(make_config("tiny", image_size=32, num_hidden_layers=1)).eval()
    x = torch.randn(1, 16, 3, 32, 32)
    embed = model.videomae.embeddings.patch_embeddings
    with torch.no_grad():
        base = embed(x)
        for u in (0, 5, 17, 31):
            keep = torch.ones(1, units.num_units(x), dtype=torch.bool)
            keep[0, u] = False
            changed = (embed(units.remove(x, keep)) - base).abs().amax(-1)[0] > 1e-6
            assert changed.nonzero().flatten().tolist() == [u]


def test_video_units_exact_fidelity():
    shape = (4, 3, 4, 4)  # T, C, H, W; tubes 2 x 2 x 2 -> grid (2, 2, 2), D = 8
    units = VideoUnits(tubelet=2, patch=2)
    model = Linear5d(shape)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    scores = torch.rand(3, 8, generator=torch.Generator().manual_seed(2))  # distinct: no ties
    s_grid = [0.25, 0.5, 0.75]
    res = Fidelity(sparsities=s_grid, mode="prob", units=units).evaluate(model, x, torch.ones(3, dtype=torch.long),
                                                                         scores)
    base = p1(model, x)
    for j, s in enumerate(s_grid):
        k = math.floor(s * 8 + 0.5)
        for i in range(3):
            top = set(scores[i].argsort(descending=True)[:k].tolist())
            in_top = torch.zeros(shape, dtype=torch.bool)
            for t in range(4):
                for h in range(4):
                    for w in range(4):
                        in_top[t, :, h, w] = tube_index(t, h, w, 2, 2, (2, 2, 2)) in top
            minus_x = torch.where(in_top, x[i], 0.0)[None]
            plus_x = torch.where(in_top, 0.0, x[i])[None]
            assert res.per_sample_plus[i, j] == pytest.approx(float(base[i] - p1(model, plus_x)[0]), abs=1e-6)
            assert res.per_sample_minus[i, j] == pytest.approx(float(base[i] - p1(model, minus_x)[0]), abs=1e-6)
    # attributions in the input's shape reduce to per-tube sums (channels included)
    attr = torch.zeros(1, *shape)
    attr[0, 2:4, :, 0:2, 2:4] = 1.0  # the whole tube (t 1, h 0, w 1) = unit 5
    assert units.scores(attr, x[:1]).argmax().item() == 5
    assert units.scores(attr, x[:1])[0, 5].item() == pytest.approx(2 * 3 * 2 * 2)


def _group_expected(model, x, labels, scores, k):
    base = p1(model, x)
    plus, minus = [], []
    for i in range(x.shape[0]):
        top = scores[i].argsort(descending=True)[:k]
        in_top = torch.isin(labels[i], top)[:, None]  # (T, 1, H, W): broadcast over channels
        plus.append(float(base[i] - p1(model, torch.where(in_top, 0.0, x[i])[None])[0]))
        minus.append(float(base[i] - p1(model, torch.where(in_top | (labels[i] < 0)[:, None], x[i], 0.0)[None])[0]))
    return torch.tensor(plus, dtype=torch.float64), torch.tensor(minus, dtype=torch.float64)


def test_group_units_shared_map_exact_fidelity():
    shape = (4, 3, 4, 4)
    model = Linear5d(shape)
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, 3, (4, 4, 4), generator=torch.Generator().manual_seed(4))
    labels[0, 0, 0] = -1  # an element that is no unit: never removed
    units = GroupUnits(labels, channel_dim=2, names=("a", "b", "c"))
    assert units.num_units(x) == 3 and units.valid(x).all()
    scores = torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0], [1.0, 3.0, 2.0]])
    res = Fidelity(sparsities=[0.34, 0.67], mode="prob", units=units, batch_size=3).evaluate(
        model, x, torch.ones(4, dtype=torch.long), scores)
    for j, k in enumerate((1, 2)):
        plus, minus = _group_expected(model, x, labels.expand(4, *labels.shape), scores, k)
        assert torch.allclose(torch.as_tensor(res.per_sample_plus[:, j]), plus, atol=1e-6)
        assert torch.allclose(torch.as_tensor(res.per_sample_minus[:, j]), minus, atol=1e-6)
    # scores: attribution mass per group, channels summed; -1 elements ignored
    attr = torch.ones(1, *shape)
    expected = torch.stack([((labels == g).sum() * 3).float() for g in range(3)])
    assert torch.equal(units.scores(attr, x[:1])[0], expected)


def test_group_units_per_input_maps_follow_the_rows():
    shape = (2, 3, 4, 4)
    model = Linear5d(shape)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(6))
    labels = torch.randint(0, 2, (3, 2, 4, 4), generator=torch.Generator().manual_seed(7))
    labels[:, 0, 0, 0], labels[:, 0, 0, 1] = 0, 1  # both groups present in every map
    units = GroupUnits(labels, inputs=x, channel_dim=2)
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    # batch_size 4 with N = 1 draws: the engine's chunks mix rows of different inputs
    res = RFidelity(alpha_plus=1.0, alpha_minus=1.0, n_samples=1, sparsities=[0.5], mode="prob", units=units,
                    batch_size=4).evaluate(model, x, torch.ones(3, dtype=torch.long), scores)
    plus, minus = _group_expected(model, x, labels, scores, 1)
    assert torch.allclose(torch.as_tensor(res.per_sample_plus[:, 0]), plus, atol=1e-6)
    assert torch.allclose(torch.as_tensor(res.per_sample_minus[:, 0]), minus, atol=1e-6)
    # rows found by value, in any order
    assert torch.equal(units.labels(x[[2, 0, 2]]), labels[[2, 0, 2]])
    with pytest.raises(ValueError, match="none of the inputs"):
        units.labels(x + 1.0)
    with pytest.raises(ValueError, match="one map per input"):
        GroupUnits(labels[:2], inputs=x, channel_dim=2)
    with pytest.raises(TypeError, match="integer"):
        GroupUnits(labels.float())
    with pytest.raises(ValueError, match="shape"):
        GroupUnits(labels[0, 0], channel_dim=2).labels(x)


def test_group_units_missing_group_is_not_valid():
    x = torch.zeros(1, 2, 3, 2, 2)
    units = GroupUnits(torch.zeros(2, 2, 2, dtype=torch.long), channel_dim=2, names=("video", "audio"))
    assert units.valid(x).tolist() == [[True, False]]


def test_random_tube_masking_and_finetune_with_video_units():
    units = VideoUnits(tubelet=2, patch=2)
    x = torch.randn(5, 4, 3, 4, 4) + 3.0  # no element is 0 before masking
    masked = mask_random_units(x, units, beta=0.25, generator=torch.Generator().manual_seed(0))
    removed_tubes = (units.scores((masked == 0).float(), x) > 0).sum(1)
    assert removed_tubes.tolist() == [2] * 5  # floor(0.25 * 8) whole tubes, all channels
    assert int((masked == 0).sum()) == 5 * 2 * (2 * 3 * 2 * 2)

    model = Linear5d((4, 3, 4, 4))
    y = (p1(model, x) > 0.5).long()
    metric = FFidelity(beta=0.25, n_samples=2, sparsities=[0.5], units=units, progress=False)
    tuned = metric.finetune(model, (x, y), epochs=1, batch_size=5, progress=False)
    assert isinstance(tuned, Linear5d) and not torch.equal(tuned.w, model.w)
    res = metric.evaluate(tuned, x, y, torch.rand(5, 8))
    assert res.fid_plus.shape == (1,)
