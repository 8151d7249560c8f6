"""The engine's fast mask building against the plain definition, bit for bit.

``reference_masked_scores`` is the straightforward version of the engine's hot loop (one float64 comparison of
each 32-bit draw with ``rate * 2**32``, a copy of the input per masked row, ``torch.where`` removal); the engine must give exactly its numbers for
every metric, unit kind, reference value, batch size and thread count.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference_engine import reference_masked_scores
from torch import nn

from ffidelity import FFidelity, Fidelity, ImageUnits, RFidelity, SequenceUnits, TokenUnits
from ffidelity.metrics import masking, schedule
from ffidelity.metrics.masking import removal_thresholds
from ffidelity.units.grid import fill_removed


# Models whose arithmetic is exact (float64 on multiples of 1/4, sums of small numbers): their logits do not
# depend on the batch size or the summation order, so any difference comes from the masks.
class ExactImageModel(nn.Module):
    def __init__(self, d: int, classes: int = 4) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.w = nn.Parameter(torch.randint(-3, 4, (d, classes), generator=gen).double(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.nan_to_num(x, nan=0.0).flatten(1)[:, :, None] * self.w).sum(1) / 8


class ExactTokenModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(6)
        self.emb = nn.Parameter(torch.randint(-3, 4, (120, 3), generator=gen).double(), requires_grad=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.emb[ids].sum(1) / 4


def _quarters(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randint(-8, 9, shape, generator=gen).double() / 4


def _images():
    gen = torch.Generator().manual_seed(1)
    x, a = _quarters(gen, 3, 3, 8, 8), torch.randn(3, 3, 8, 8, generator=gen)
    a[0] = 0.0  # all ties: the seeded tie-break decides
    return ExactImageModel(3 * 8 * 8).eval(), x, a


def _sequences():
    gen = torch.Generator().manual_seed(2)
    x = _quarters(gen, 3, 9, 4)
    x[1, 6:] = float("nan")  # padding
    return ExactImageModel(9 * 4, 3).eval(), x, torch.randn(3, 9, 4, generator=gen)


def _tokens():
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 100, (3, 10), generator=gen)
    ids[:, 0] = 101
    ids[0, 7:] = 0
    ids[0, 6] = 102
    return ExactTokenModel().eval(), ids, torch.randn(3, 10, generator=gen)


SPARSE = [0.1, 0.35, 0.8]
CASES = [
    ("fid", lambda: Fidelity(sparsities=SPARSE, mode="prob", progress=False), _images),
    ("rfid", lambda: RFidelity(sparsities=SPARSE, n_samples=5, alpha_minus=0.3, mode="prob", progress=False),
     _images),
    ("ffid", lambda: FFidelity(sparsities=SPARSE, n_samples=4, beta=0.1, mode="prob", progress=False), _images),
    ("ffid-acc-patch", lambda: FFidelity(sparsities=SPARSE, n_samples=4, beta=0.3, units=ImageUnits(patch=3),
                                         progress=False), _images),
    ("rfid-neg-zero-ref", lambda: RFidelity(sparsities=SPARSE, n_samples=3, units=ImageUnits(reference=-0.0),
                                            mode="prob", progress=False), _images),
    ("rfid-mean-ref", lambda: RFidelity(sparsities=SPARSE, n_samples=3, units=ImageUnits(reference="mean"),
                                        mode="prob", progress=False), _images),
    ("rfid-alpha-0-1", lambda: RFidelity(sparsities=SPARSE, n_samples=2, alpha_plus=1.0, alpha_minus=0.0,
                                         mode="prob", progress=False), _images),
    # n_samples >= 8: the engine compares whole runs of copies with one threshold row (batch 1000)
    ("rfid-long-runs-alpha-1", lambda: RFidelity(sparsities=SPARSE, n_samples=12, alpha_plus=1.0,
                                                 alpha_minus=0.4, mode="prob", progress=False), _images),
    ("ffid-long-runs", lambda: FFidelity(sparsities=SPARSE, n_samples=9, beta=0.2, progress=False), _images),
    ("seq", lambda: FFidelity(sparsities=SPARSE, n_samples=4, beta=0.3, mode="prob",
                              units=SequenceUnits(pad_value=float("nan")), progress=False), _sequences),
    ("tokens-delete", lambda: RFidelity(sparsities=SPARSE, n_samples=3, mode="prob",
                                        units=TokenUnits(removal="delete"), progress=False), _tokens),
]


@pytest.mark.parametrize(("name", "build", "data"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("batch_size", [1, 7, 1000, "auto", "auto-tiny"])
@pytest.mark.parametrize("path", ["chunk", "run-by-run", "broadcast"])
def test_engine_equals_the_plain_definition_bit_for_bit(name, build, data, batch_size, path, monkeypatch) -> None:
    # the engine builds masks for the whole chunk at once or run by run, depending on the runs' size, and fills
    # large inputs' copies from each input's broadcast view ("broadcast" forces that on these small inputs): every
    # path must give the definition's numbers; "auto-tiny" calibrates on sizes small enough that the evaluation
    # runs through the timed chunks into the chosen size
    monkeypatch.setattr(masking, "_RUN_BY_RUN_MIN", 0 if path == "run-by-run" else 10**9)
    monkeypatch.setattr(masking, "_BROADCAST_MIN_BYTES", 0 if path == "broadcast" else 2**62)
    if batch_size == "auto-tiny":
        monkeypatch.setattr(schedule, "AUTO_BATCH_SIZES", (2, 3, 5, 8))
        batch_size = "auto"
    model, x, a = data()
    metric = build()
    metric.batch_size = batch_size
    want_plus, want_minus = reference_masked_scores(metric, model, x, None, a)
    got = metric.evaluate(model, x, None, a)
    np.testing.assert_array_equal(got.per_sample_plus, want_plus)
    np.testing.assert_array_equal(got.per_sample_minus, want_minus)


def test_thread_count_is_restored_and_does_not_change_numbers() -> None:
    model, x, a = _images()
    metric = FFidelity(sparsities=SPARSE, n_samples=6, batch_size=11, mode="prob", progress=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = metric.evaluate(model, x, None, a)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        one = metric.evaluate(model, x, None, a)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(one.per_sample_plus, two.per_sample_plus)
    np.testing.assert_array_equal(one.per_sample_minus, two.per_sample_minus)


def test_removal_thresholds_match_the_exact_comparison_at_the_edges() -> None:
    rates = torch.tensor([0.0, 1.0, 0.5, 0.1, 1 / 3, 0.1 + 1e-12, 2.0**-32, 2.0**-33, 1 - 2.0**-33, 0.7 - 1e-17],
                         dtype=torch.float64)
    thresholds = removal_thresholds(rates)
    assert thresholds[0] == 0 and thresholds[1] == 2**32
    # u removes its unit iff u < rate * 2^32 (u an integer in [0, 2^32)): check the draws around each threshold
    for r, t in zip(rates.tolist(), thresholds.tolist(), strict=True):
        for u in range(max(0, t - 3), min(2**32, t + 3)):
            assert (u < t) == (u < r * 2.0**32), (r, u)


class _FirstPixel(nn.Module):
    """Predicts class 0 while pixel (0, 0) is kept (1.0), class 1 once it is removed (0.0)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        first = z[:, 0, 0, 0]
        return torch.stack([first, torch.full_like(first, 0.5)], 1)


@pytest.mark.parametrize("alpha", [0.1, 0.37, 0.9])
def test_removal_probability_is_the_rate(alpha) -> None:
    """The one explanation pixel is removed with probability alpha: Fid+ (acc) = alpha within 5 sigma."""
    x = torch.ones(1, 1, 20, 20)
    attr = torch.zeros(1, 1, 20, 20)
    attr[0, 0, 0, 0] = 1.0  # the top-1 unit; sparsity 1/400 keeps exactly it
    n = 4000
    metric = RFidelity(alpha_plus=alpha, n_samples=n, sparsities=[1 / 400], progress=False, seed=3)
    res = metric.evaluate(_FirstPixel(), x, [0], attr)
    assert abs(float(res.per_sample_plus[0, 0]) - alpha) < 5 * math.sqrt(alpha * (1 - alpha) / n)
    assert float(res.per_sample_minus[0, 0]) == 0.0  # pixel (0, 0) is never a Fid- candidate


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("value", [0.0, -0.0, 1.5, -2.25, float("nan"), float("inf")])
def test_fill_removed_equals_where_bit_for_bit(dtype, value) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 5, generator=gen).to(dtype)
    x[0, 0, 0, :3] = torch.tensor([float("nan"), float("-inf"), -0.0]).to(dtype)
    keep = torch.rand(4, 1, 5, 5, generator=gen) > 0.5
    want = torch.where(keep, x, torch.tensor(value, dtype=dtype))
    for source in (x, x[:1].expand(4, 3, 5, 5)):
        w = torch.where(keep, source, torch.tensor(value, dtype=dtype))
        got = fill_removed(source, keep, value)
        assert got.dtype == dtype and got.shape == w.shape
        bits = {torch.float32: torch.int32, torch.float64: torch.int64}.get(dtype, torch.int16)
        assert torch.equal(got.view(bits), w.view(bits))
    assert torch.equal(fill_removed(x, keep, value).view(torch.uint8), want.view(torch.uint8))


def test_fill_removed_on_integer_inputs_falls_back_to_where() -> None:
    x = torch.arange(12).reshape(2, 6)
    keep = torch.tensor([[True, False] * 3, [False, True] * 3])
    assert torch.equal(fill_removed(x, keep, 7), torch.where(keep, x, 7))


def test_prefetched_chunks_keep_their_order_raise_errors_and_stop_cleanly() -> None:
    import threading

    from ffidelity.metrics.schedule import _prefetched

    built: list[int] = []

    def build(k: int) -> int:
        built.append(k)
        return k * k

    with _prefetched(build, 6) as items:
        assert list(items) == [0, 1, 4, 9, 16, 25]
    assert built == list(range(6))

    def failing(k: int) -> int:
        if k == 2:
            raise ValueError("chunk 2 is bad")
        return k

    with pytest.raises(ValueError, match="chunk 2 is bad"), _prefetched(failing, 5) as items:
        list(items)

    built.clear()
    with _prefetched(build, 100) as items:  # the caller stops early: the thread ends, at most 2 chunks ahead
        assert next(items) == 0
    assert len(built) <= 3
    assert not [t for t in threading.enumerate() if t.name == "ffidelity-masking"]

    built.clear()  # inline, from a later start: built only when asked for, in order
    with _prefetched(build, 5, start=2, threaded=False) as items:
        assert next(items) == 4 and built == [2]
        assert list(items) == [9, 16] and built == [2, 3, 4]
