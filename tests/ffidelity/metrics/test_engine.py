"""The fidelity engine against answers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference_engine import reference_rank_positions
from tiny_models import LinearTwoClass
from torch import nn

from ffidelity import FFidelity, Fidelity, ImageUnits, RFidelity
from ffidelity.metrics.masking import _rank_positions


class CountingModel(nn.Module):
    """p_0 = (c + eps) / (D + 2 eps) with c the number of kept (= 1) pixels: linear in removals."""

    eps = 1e-3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.flatten(1).sum(1)
        d = x[0].numel()
        return torch.stack([torch.log(c + self.eps), torch.log(d - c + self.eps)], dim=1)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_exact_fidelity_prob_mode_on_linear_model() -> None:
    w = torch.tensor([3.0, -1.0, 2.0, 0.5, -2.0, 1.0, 0.0, 4.0, -0.5, 1.5, -3.0, 2.5, 0.25, -1.5, 3.5, 0.75])
    model = LinearTwoClass(w.reshape(1, 1, 4, 4))
    x = torch.ones(1, 1, 4, 4)
    attr = w.reshape(1, 1, 4, 4)  # the exact contribution of every pixel
    sparsities = [0.25, 0.5, 0.75]
    res = Fidelity(sparsities=sparsities, mode="prob", progress=False).evaluate(model, x, [0], attr)
    order = torch.argsort(w, descending=True)
    full = _sigmoid(float(w.sum()))
    for j, s in enumerate(sparsities):
        k = round(s * 16)
        top = order[:k]
        rest = order[k:]
        expected_plus = full - _sigmoid(float(w[rest].sum()))  # explanation removed: only the rest remains
        expected_minus = full - _sigmoid(float(w[top].sum()))  # the rest removed: only the explanation remains
        assert res.fid_plus[j] == pytest.approx(expected_plus, abs=1e-9)
        assert res.fid_minus[j] == pytest.approx(expected_minus, abs=1e-9)


def test_exact_fidelity_acc_mode_on_linear_model() -> None:
    # two inputs: removing the top half flips the first (sum of the rest < 0) but not the second
    w = torch.tensor([4.0, 3.0, -1.0, -2.0]).reshape(1, 1, 2, 2)
    model = LinearTwoClass(w)
    x = torch.stack([torch.ones(1, 2, 2), torch.full((1, 2, 2), -1.0)])
    targets = torch.tensor([0, 1])  # input 0: z = 4 > 0 -> class 0; input 1: z = -4 < 0 -> class 1
    attr = torch.stack([w[0], -w[0]])  # contribution towards each input's own target
    res = Fidelity(sparsities=[0.5], mode="acc", progress=False).evaluate(model, x, targets, attr)
    # input 0: top-2 = {4, 3}; removing them leaves -3 -> class 1 (miss): Fid+ = 1; keeping them: 7 -> hit: Fid- = 0
    # input 1: scores -w: top-2 = {-1, -2} -> x*w = {+1, +2} removed leaves -7 -> class 1 (hit): Fid+ = 0;
    #          keeping only them gives +3 -> class 0 (miss): Fid- = 1
    np.testing.assert_array_equal(res.per_sample_plus[:, 0], [1.0, 0.0])
    np.testing.assert_array_equal(res.per_sample_minus[:, 0], [0.0, 1.0])
    np.testing.assert_array_equal(res.base_scores, [1.0, 1.0])


@pytest.mark.parametrize(
    ("metric", "expected_plus", "expected_minus"),
    [
        # R-Fidelity: every candidate removed with probability alpha; E[removed] = alpha * candidates
        (RFidelity(alpha_plus=0.5, alpha_minus=0.3, n_samples=400, sparsities=[0.05, 0.5], mode="prob",
                   progress=False),
         [0.5 * 5, 0.5 * 50], [0.3 * 95, 0.3 * 50]),
        # F-Fidelity: rate = min(alpha, beta * D / candidates), D = 100, beta * D = 10
        (FFidelity(beta=0.1, n_samples=400, sparsities=[0.05, 0.5], mode="prob", progress=False),
         [min(0.5, 10 / 5) * 5, min(0.5, 10 / 50) * 50], [min(0.5, 10 / 95) * 95, min(0.5, 10 / 50) * 50]),
        # F-Fidelity with its own complement cap: beta_minus * D = 30 on the LeRF side, 10 on the MoRF side
        (FFidelity(beta=0.1, beta_minus=0.3, n_samples=400, sparsities=[0.05, 0.5], mode="prob", progress=False),
         [min(0.5, 10 / 5) * 5, min(0.5, 10 / 50) * 50], [min(0.5, 30 / 95) * 95, min(0.5, 30 / 50) * 50]),
    ],
)
def test_mean_removed_units_match_rate_times_candidates(metric, expected_plus, expected_minus) -> None:
    model = CountingModel()
    n, d = 8, 100
    x = torch.ones(n, 1, 10, 10)
    attr = torch.randn(n, 1, 10, 10)
    res = metric.evaluate(model, x, None, attr)
    scale = d + 2 * CountingModel.eps  # Fid = E[removed] / scale
    for got, exp, cands in [(res.fid_plus, expected_plus, [5, 50]), (res.fid_minus, expected_minus, [95, 50])]:
        for j in range(2):
            rate = exp[j] / cands[j]
            sd = math.sqrt(cands[j] * rate * (1 - rate) / (n * metric.n_samples)) / scale
            assert abs(got[j] - exp[j] / scale) < 5 * sd + 1e-9, (got[j] * scale, exp[j])


def test_alpha_zero_removes_nothing_and_alpha_one_is_plain_fidelity() -> None:
    model = CountingModel()
    x = torch.ones(3, 1, 6, 6)
    attr = torch.randn(3, 1, 6, 6)
    none = RFidelity(alpha_plus=0.0, alpha_minus=0.0, n_samples=3, progress=False).evaluate(model, x, None, attr)
    assert np.all(none.per_sample_plus == 0) and np.all(none.per_sample_minus == 0)
    r1 = RFidelity(alpha_plus=1.0, alpha_minus=1.0, n_samples=2, progress=False).evaluate(model, x, None, attr)
    f = Fidelity(progress=False).evaluate(model, x, None, attr)
    np.testing.assert_allclose(r1.per_sample_plus, f.per_sample_plus)
    np.testing.assert_allclose(r1.per_sample_minus, f.per_sample_minus)


def test_patch_units_remove_whole_blocks() -> None:
    model = CountingModel()
    x = torch.ones(1, 1, 6, 6)
    attr = torch.zeros(1, 1, 6, 6)
    attr[..., :3, :3] = 1.0  # the top-left 3x3 patch is the explanation
    res = Fidelity(sparsities=[0.25], units=ImageUnits(patch=3), mode="prob", progress=False).evaluate(
        model, x, [0], attr)
    assert res.fid_plus[0] * (36 + 2 * CountingModel.eps) == pytest.approx(9, abs=1e-6)


def test_same_seed_same_numbers_other_seed_differs() -> None:
    model = CountingModel()
    x = torch.ones(4, 1, 8, 8)
    attr = torch.randn(4, 1, 8, 8)
    a = RFidelity(n_samples=5, seed=3, progress=False).evaluate(model, x, None, attr)
    b = RFidelity(n_samples=5, seed=3, progress=False).evaluate(model, x, None, attr)
    c = RFidelity(n_samples=5, seed=4, progress=False).evaluate(model, x, None, attr)
    np.testing.assert_array_equal(a.per_sample_plus, b.per_sample_plus)
    np.testing.assert_array_equal(a.per_sample_minus, b.per_sample_minus)
    assert not np.array_equal(a.per_sample_plus, c.per_sample_plus)


def test_results_do_not_depend_on_batch_size_or_sharding() -> None:
    model = CountingModel()
    x = torch.ones(6, 1, 5, 5)
    attr = torch.randn(6, 1, 5, 5)
    whole = FFidelity(n_samples=7, batch_size=256, progress=False).evaluate(model, x, None, attr)
    small = FFidelity(n_samples=7, batch_size=5, progress=False).evaluate(model, x, None, attr)
    np.testing.assert_array_equal(whole.per_sample_plus, small.per_sample_plus)
    metric = FFidelity(n_samples=7, batch_size=13, progress=False)
    first = metric.evaluate(model, x[:2], None, attr[:2])
    second = metric.evaluate(model, x[2:], None, attr[2:], index_offset=2)
    np.testing.assert_array_equal(whole.per_sample_plus, np.concatenate([first.per_sample_plus,
                                                                          second.per_sample_plus]))


def test_auto_batch_size_keeps_the_fastest_timed_size_and_records_it(monkeypatch) -> None:
    """Calibration runs the candidates smallest first on real chunks (each copy exactly once), within a tenth of
    the copies, stops at the first clearly slower size and keeps the fastest per copy."""
    import time

    import ffidelity.metrics.schedule as engine

    seen: list[int] = []

    class FixedCost(CountingModel):  # 20 ms per call whatever its size: the largest batch is fastest per copy
        def forward(self, x):
            seen.append(x.shape[0])
            time.sleep(0.02)
            return super().forward(x)

    class QuadraticCost(CountingModel):  # cost grows with size squared: the smallest batch is fastest per copy
        def forward(self, x):
            seen.append(x.shape[0])
            time.sleep(1e-5 * x.shape[0] ** 2)
            return super().forward(x)

    monkeypatch.setattr(engine, "AUTO_BATCH_SIZES", (8, 32, 128))
    x, attr = torch.ones(4, 1, 6, 6), torch.randn(4, 1, 6, 6)
    metric = RFidelity(n_samples=60, progress=False)
    assert metric.batch_size == "auto"
    copies = 4 * 19 * 2 * 60  # 9120: a tenth is 912, enough for 8 + 2 x (8 + 32 + 128) = 344
    res = metric.evaluate(FixedCost(), x, None, attr)
    assert seen[1:8] == [8, 8, 8, 32, 32, 128, 128] and sum(seen) == 4 + copies  # base pass, warm-up, 2 x each
    assert metric.batch_size_ == 128 and res.params["batch_size"] == 128 and res.params["batch_size_auto"]
    assert set(seen[8:-1]) == {128} and [c for c, _ in metric.calibration_] == seen[1:8]
    seen.clear()
    res2 = metric.evaluate(QuadraticCost(), x, None, attr)
    assert seen[1:6] == [8, 8, 8, 32, 32] and 128 not in seen  # 32 was clearly slower: 128 never tried
    assert metric.batch_size_ == 8 and set(seen[6:-1]) == {8} and sum(seen) == 4 + copies
    np.testing.assert_array_equal(res.per_sample_plus, res2.per_sample_plus)  # same numbers, other chunks
    fixed = RFidelity(n_samples=60, progress=False, batch_size=50).evaluate(CountingModel(), x, None, attr)
    np.testing.assert_array_equal(res.per_sample_minus, fixed.per_sample_minus)
    assert fixed.params["batch_size"] == 50 and not fixed.params["batch_size_auto"]
    seen.clear()
    small = RFidelity(n_samples=2, progress=False)  # 304 copies: too few to time 8 + 2 x 8 within a tenth
    small.evaluate(FixedCost(), x, None, attr)
    assert small.batch_size_ == 64 and seen[1:] == [64] * 4 + [48]


def test_auto_batch_size_respects_the_memory_bound(monkeypatch) -> None:
    import ffidelity.metrics.schedule as engine

    seen: list[int] = []

    class Spy(CountingModel):
        def forward(self, x):
            seen.append(x.shape[0])
            return super().forward(x)

    monkeypatch.setattr(engine, "_AUTO_BUFFER_BYTES", 40 * 4 * 36)  # 40 copies of a 6x6 float image
    RFidelity(n_samples=20, progress=False).evaluate(Spy(), torch.ones(2, 1, 6, 6), None, torch.randn(2, 1, 6, 6))
    assert max(seen[1:]) == 32


@pytest.mark.parametrize("bad", [0, -3, 2.5, "fast", True, None])
def test_batch_size_must_be_positive_or_auto(bad) -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer or 'auto'"):
        Fidelity(batch_size=bad)


def test_ties_are_broken_randomly_not_by_position() -> None:
    scores = torch.zeros(64, 16, dtype=torch.float64)
    valid = torch.ones(64, 16, dtype=torch.bool)
    pos = _rank_positions(scores, valid, seed=0, offset=0)
    assert sorted(pos[0].tolist()) == list(range(16))  # a permutation
    top1 = (pos == 0).float().mean(0)  # how often each position is ranked first
    assert top1.max() < 0.25  # no position is systematically first (uniform would be 1/16)
    assert not torch.equal(pos, _rank_positions(scores, valid, seed=1, offset=0))
    # real scores dominate the tie-break
    scores[:, 5] = 1.0
    assert bool((_rank_positions(scores, valid, seed=0, offset=0)[:, 5] == 0).all())


@pytest.mark.parametrize("case", ["distinct", "ties", "discrete", "padded", "padded_ties", "boundary", "neg_inf"])
def test_rank_positions_equal_the_keyed_definition(case) -> None:
    """Only inputs with a tie draw the random order: every rank equals that of drawing it for every input."""
    g = torch.Generator().manual_seed(3)
    n, d = 40, 24
    scores = torch.randn(n, d, generator=g, dtype=torch.float64)
    valid = torch.ones(n, d, dtype=torch.bool)
    if case == "ties":  # some inputs with one tie, the rest distinct
        scores[::3, 7] = scores[::3, 11]
    if case == "discrete":  # many ties in every input
        scores = torch.randint(0, 4, (n, d), generator=g).double()
    if case in ("padded", "padded_ties", "boundary", "neg_inf"):  # variable lengths, as in padded text
        lengths = torch.randint(3, d + 1, (n,), generator=g)
        valid = torch.arange(d)[None, :] < lengths[:, None]
        if case == "padded_ties":
            scores[::2, 1] = scores[::2, 2]
        if case == "boundary":  # the two lowest valid units tie: the last pair a tie can matter in
            scores[:, 1] = scores[:, 2] = -10.0
        if case == "neg_inf":  # a valid unit as low as the padding's -inf
            scores[::2, 0] = -math.inf
    pos = _rank_positions(scores, valid, seed=5, offset=17)
    assert torch.equal(pos, reference_rank_positions(scores, valid, seed=5, offset=17))
    assert not torch.equal(pos, reference_rank_positions(scores, valid, seed=6, offset=17)) or case in (
        "distinct", "padded")  # with no tie the seed cannot matter


def test_memory_stays_flat_as_samples_grow() -> None:
    """The engine never holds more than batch_size copies: peak chunk size is independent of n_samples."""
    seen: list[int] = []

    class Spy(CountingModel):
        def forward(self, x):
            seen.append(x.shape[0])
            return super().forward(x)

    x = torch.ones(3, 1, 4, 4)
    RFidelity(n_samples=200, batch_size=32, progress=False).evaluate(Spy(), x, None, torch.randn(3, 1, 4, 4))
    assert max(seen) == 32
    assert sum(seen) == 3 + 3 * 19 * 2 * 200


def test_model_output_with_logits_attribute_and_predicted_targets() -> None:
    class Out:
        def __init__(self, logits):
            self.logits = logits

    class HF(nn.Module):
        def forward(self, x):
            return Out(CountingModel()(x))

    x = torch.ones(2, 1, 4, 4)
    res = Fidelity(progress=False, mode="prob").evaluate(HF(), x, None, torch.randn(2, 1, 4, 4))
    assert res.per_sample_plus.shape == (2, 19)


def test_result_table_plot_and_json(tmp_path) -> None:
    res = Fidelity(progress=False, sparsities=[0.2, 0.4]).evaluate(CountingModel(), torch.ones(2, 1, 4, 4), None,
                                                                   torch.randn(2, 1, 4, 4))
    frame = res.to_frame()
    assert list(frame.columns[:3]) == ["sparsity", "fid_plus", "fid_minus"] and len(frame) == 2
    fig = res.plot()
    assert len(fig.axes[0].lines) == 2
    res.save(tmp_path / "r.json")
    import json

    data = json.loads((tmp_path / "r.json").read_text())
    assert data["method"] == "fid" and data["params"]["sparsities"] == [0.2, 0.4]


# -- bad input -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: FFidelity(beta=1.5), "beta"),
        (lambda: FFidelity(beta=-0.1), "beta"),
        (lambda: FFidelity(beta_minus=1.2), "beta_minus"),
        (lambda: RFidelity(alpha_plus=2.0), "alpha_plus"),
        (lambda: RFidelity(alpha_minus=float("nan")), "alpha_minus"),
        (lambda: RFidelity(n_samples=0), "n_samples"),
        (lambda: Fidelity(sparsities=[0.0, 0.5]), "strictly between 0 and 1"),
        (lambda: Fidelity(sparsities=[1.0]), "strictly between 0 and 1"),
        (lambda: Fidelity(sparsities=[]), "empty"),
        (lambda: Fidelity(mode="loss"), "mode"),
    ],
)
def test_bad_parameters_raise_clear_errors(build, match) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_inputs_raise_clear_errors() -> None:
    model = CountingModel()
    x = torch.ones(2, 1, 4, 4)
    metric = Fidelity(progress=False)
    with pytest.raises(ValueError, match="do not match inputs"):
        metric.evaluate(model, x, None, torch.randn(2, 1, 5, 4))
    with pytest.raises(ValueError, match="3 explanations for 2 inputs"):
        metric.evaluate(model, x, None, torch.randn(3, 1, 4, 4))
    nan = torch.randn(2, 1, 4, 4)
    nan[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf.*inputs \[1\]"):
        metric.evaluate(model, x, None, nan)
    with pytest.raises(ValueError, match="non-empty"):
        metric.evaluate(model, x[:0], None, torch.randn(0, 1, 4, 4))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        metric.evaluate(model, x, [0, 2], torch.randn(2, 1, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        metric.evaluate(model, x, [0, 1, 0], torch.randn(2, 1, 4, 4))

    class NaNModel(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 2), float("nan"))

    with pytest.raises(ValueError, match="NaN or inf logits"):
        metric.evaluate(NaNModel(), x, None, torch.randn(2, 1, 4, 4))


def test_constant_attributions_warn() -> None:
    x = torch.ones(2, 1, 4, 4)
    attr = torch.randn(2, 1, 4, 4)
    attr[1] = 0.5
    with pytest.warns(UserWarning, match=r"1 input\(s\) have constant attributions \(e.g. input 1\)"):
        Fidelity(progress=False).evaluate(CountingModel(), x, None, attr)


def test_certain_removals_evaluate_one_copy_not_n():
    """alpha = 1 and no cap: every draw removes the same units, so N copies would be N equal forwards."""
    torch.manual_seed(0)
    seen = []

    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(16, 3)

        def forward(self, x):
            seen.append(x.shape[0])
            return self.lin(x.flatten(1))

    model, x, a = Counting(), torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    kw = {"sparsities": [0.25, 0.5], "mode": "prob", "progress": False}
    many = RFidelity(alpha_plus=1.0, alpha_minus=1.0, n_samples=9, **kw).evaluate(model, x, None, a)
    assert sum(seen) == 4 + 4 * 2 * 2  # unmasked inputs, then one copy per (input, sparsity, side)
    one = Fidelity(**kw).evaluate(model, x, None, a)
    np.testing.assert_allclose(many.per_sample_plus, one.per_sample_plus, rtol=0, atol=1e-12)
    np.testing.assert_allclose(many.per_sample_minus, one.per_sample_minus, rtol=0, atol=1e-12)
