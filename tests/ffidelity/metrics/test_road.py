"""ROAD: noisy linear imputation against hand-solved systems and an independent sparse direct solve."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch
from tiny_models import LinearTwoClass

from ffidelity import ROAD, Fidelity, GridUnits, ImageUnits, NoisyLinearImputer
from ffidelity.metrics.road import cg_solve, direct_solve
from ffidelity.models.image import SmallCNN

D, G = 1 / 6, 1 / 12  # direct and diagonal neighbour weights of the original ROAD imputer


def _reference_solve(img: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Independent ROAD imputation of one (H, W) plane: equations written pixel by pixel, scipy spsolve."""
    h, w = img.shape
    unknown = [(i, j) for i in range(h) for j in range(w) if not keep[i, j]]
    var = {pix: n for n, pix in enumerate(unknown)}
    a = scipy.sparse.lil_matrix((len(unknown), len(unknown)))
    b = np.zeros(len(unknown))
    for n, (i, j) in enumerate(unknown):
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if (di, dj) == (0, 0) or not (0 <= i + di < h and 0 <= j + dj < w):
                    continue
                wt = G if di and dj else D
                a[n, n] += wt  # x_i * (sum of in-image weights) = sum_j w_ij x_j
                if keep[i + di, j + dj]:
                    b[n] += wt * img[i + di, j + dj]
                else:
                    a[n, var[(i + di, j + dj)]] -= wt
    out = img.astype(np.float64).copy()
    if unknown:
        sol = np.atleast_1d(scipy.sparse.linalg.spsolve(a.tocsc(), b))
        for n, pix in enumerate(unknown):
            out[pix] = sol[n]
    return out


def _imputer(**kw) -> NoisyLinearImputer:
    kw.setdefault("noise", 0.0)
    return NoisyLinearImputer(**kw)


# -- hand-checked systems ------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_centre_pixel_is_weighted_neighbour_average(solver: str) -> None:
    img = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, 6.0], [7.0, 8.0, 9.0]])
    keep = torch.ones(3, 3, dtype=torch.bool)
    keep[1, 1] = False
    out = _imputer(solver=solver)(img[None, None], keep[None, None])[0, 0]
    expected = G * (1 + 3 + 7 + 9) + D * (2 + 4 + 6 + 8)  # = 20/12 + 20/6 = 5
    assert expected == pytest.approx(5.0)
    assert float(out[1, 1]) == pytest.approx(expected, abs=1e-6)
    assert torch.equal(out[keep], img[keep])


@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_corner_pixel_renormalises_weights_over_in_image_neighbours(solver: str) -> None:
    img = torch.tensor([[0.0, 6.0, 1.0], [12.0, 24.0, 1.0], [1.0, 1.0, 1.0]])
    keep = torch.ones(3, 3, dtype=torch.bool)
    keep[0, 0] = False
    out = _imputer(solver=solver)(img[None, None], keep[None, None])[0, 0]
    expected = (D * 6 + D * 12 + G * 24) / (D + D + G)  # (1 + 2 + 2) / (5/12) = 12
    assert float(out[0, 0]) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(12.0)


@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_two_adjacent_removed_pixels_match_the_2x2_system(solver: str) -> None:
    img = torch.arange(12, dtype=torch.float64).reshape(3, 4) ** 1.5
    keep = torch.ones(3, 4, dtype=torch.bool)
    keep[1, 1] = keep[1, 2] = False  # a = (1, 1), b = (1, 2): interior, direct neighbours of each other
    v = img.numpy()
    # a: known neighbours (0,0) (0,2) (2,0) (2,2) diagonal, (0,1) (1,0) (2,1) direct; b is a direct neighbour
    ka = G * (v[0, 0] + v[0, 2] + v[2, 0] + v[2, 2]) + D * (v[0, 1] + v[1, 0] + v[2, 1])
    # b: known neighbours (0,1) (0,3) (2,1) (2,3) diagonal, (0,2) (1,3) (2,2) direct; a is a direct neighbour
    kb = G * (v[0, 1] + v[0, 3] + v[2, 1] + v[2, 3]) + D * (v[0, 2] + v[1, 3] + v[2, 2])
    # a = D b + ka, b = D a + kb  (all 8 neighbours in the image, weights sum to 1)
    a, b = np.linalg.solve(np.array([[1.0, -D], [-D, 1.0]]), np.array([ka, kb]))
    out = _imputer(solver=solver)(img[None, None], keep[None, None])[0, 0]
    assert float(out[1, 1]) == pytest.approx(a, abs=1e-7)
    assert float(out[1, 2]) == pytest.approx(b, abs=1e-7)


def test_linear_ramp_is_reproduced_exactly_away_from_the_border() -> None:
    """Symmetric weights average a linear function to its centre value: interior holes fill exactly."""
    h, w = 24, 20
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    img = (0.3 * yy - 0.7 * xx + 2.0)[None, None]
    keep = torch.ones(1, 1, h, w, dtype=torch.bool)
    keep[..., 3:20, 2:17] = torch.rand(17, 15) < 0.2  # a big, mostly removed interior block
    out = _imputer()(img, keep)
    assert torch.allclose(out, img, atol=1e-6)


# -- against an independent direct solve ---------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(8, 8), (17, 13), (1, 9), (2, 2)])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_matches_reference_sparse_solve(shape: tuple[int, int], channels: int, solver: str) -> None:
    gen = torch.Generator().manual_seed(hash((shape, channels)) % 2**31)
    b = 3
    x = torch.randn(b, channels, *shape, generator=gen)
    fractions = torch.tensor([0.3, 0.6, 0.9])[:, None, None, None]
    keep = torch.rand(b, 1, *shape, generator=gen) >= fractions
    keep[:, :, 0, 0] = True  # at least one kept pixel per image
    keep = keep.expand_as(x)
    out = _imputer(solver=solver)(x, keep)
    assert out.dtype == x.dtype and out.shape == x.shape
    for i in range(b):
        for c in range(channels):
            ref = _reference_solve(x[i, c].double().numpy(), keep[i, c].numpy())
            np.testing.assert_allclose(out[i, c].double().numpy(), ref, atol=2e-6, rtol=0)


def test_cg_matches_direct_solve_in_float64_on_hard_masks() -> None:
    """95 % removed 32x32 planes (large holes, slow CG convergence): still within 1e-7 of the exact solution."""
    planes = torch.randn(12, 32, 32, dtype=torch.float64)
    keep = torch.rand(12, 32, 32) > 0.95
    keep[:, 5, 5] = True
    filled, converged = cg_solve(planes, keep, rtol=1e-10, max_iter=2000)
    assert bool(converged.all())
    assert (filled - direct_solve(planes, keep)).abs().max() < 1e-8


def test_unconverged_cg_planes_fall_back_to_the_direct_solve() -> None:
    x = torch.randn(4, 2, 16, 16)
    keep = torch.rand(4, 1, 16, 16).expand_as(x) > 0.9
    keep[:, :, 0, 0] = True
    capped = _imputer(max_iter=1)(x, keep)  # one CG step: nothing converges, every plane is solved directly
    _, converged = cg_solve(x.reshape(8, 16, 16).double(), keep.reshape(8, 16, 16), max_iter=1)
    assert not bool(converged.any())
    assert torch.allclose(capped, _imputer(solver="direct")(x, keep), atol=1e-6)


def test_channels_with_different_masks_are_imputed_independently() -> None:
    x = torch.randn(2, 3, 9, 7)
    keep = torch.rand(2, 3, 9, 7) > 0.5
    keep[..., 0, 0] = True
    out = _imputer()(x, keep)
    for c in range(3):
        alone = _imputer()(x[:, c : c + 1], keep[:, c : c + 1])
        assert torch.allclose(out[:, c : c + 1], alone, atol=1e-6)


# -- invariants ------------------------------------------------------------------------------------------------
def test_kept_pixels_never_change_and_removed_values_are_never_read() -> None:
    x = torch.randn(5, 3, 12, 10)
    keep = (torch.rand(5, 1, 12, 10) > 0.4).expand_as(x)
    out = NoisyLinearImputer(noise=0.05, seed=3)(x, keep)
    assert torch.equal(out[keep], x[keep])
    assert not torch.equal(out[~keep], x[~keep])
    x_nan = torch.where(keep, x, torch.nan)
    out_nan = _imputer()(x_nan, keep)
    assert torch.isfinite(out_nan).all()
    assert torch.allclose(out_nan, _imputer()(x, keep), atol=1e-6)


def test_noise_is_seeded_and_depends_only_on_each_rows_content() -> None:
    x = torch.randn(6, 3, 10, 10)
    keep = (torch.rand(6, 1, 10, 10) > 0.5).expand_as(x)
    a = NoisyLinearImputer(noise=0.01, seed=7)(x, keep)
    b = NoisyLinearImputer(noise=0.01, seed=7)(x, keep)
    c = NoisyLinearImputer(noise=0.01, seed=8)(x, keep)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the same row gets the same noise wherever it sits in a batch (so chunking cannot change results)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    shuffled = NoisyLinearImputer(noise=0.01, seed=7)(x[perm], keep[perm])
    assert torch.equal(shuffled, a[perm])
    single = NoisyLinearImputer(noise=0.01, seed=7)(x[2:3], keep[2:3])
    assert torch.allclose(single, a[2:3], atol=1e-6)
    # the noise has the requested size on imputed pixels
    diff = (a - _imputer()(x, keep))[~keep]
    assert 0.008 < float(diff.std()) < 0.012
    assert abs(float(diff.mean())) < 0.002


def test_fully_removed_image_and_1x1_images_fall_back() -> None:
    x = torch.randn(3, 2, 5, 4)
    keep = torch.ones_like(x, dtype=torch.bool)
    keep[1] = False  # image 1: nothing kept
    out = _imputer(fallback=0.0)(x, keep)
    assert torch.equal(out[1], torch.zeros(2, 5, 4))
    assert torch.equal(out[[0, 2]], x[[0, 2]])
    noisy = NoisyLinearImputer(noise=0.01, fallback=0.5)(x, keep)
    assert torch.isfinite(noisy).all() and float((noisy[1] - 0.5).abs().max()) < 0.1
    tiny = torch.randn(4, 3, 1, 1)
    keep1 = torch.tensor([True, False, True, False]).reshape(4, 1, 1, 1).expand_as(tiny)
    out1 = _imputer()(tiny, keep1)
    assert torch.equal(out1[keep1], tiny[keep1]) and torch.equal(out1[~keep1], torch.zeros(6))


def test_bad_input_gets_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        _imputer()(torch.randn(2, 3, 4), torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="floating-point"):
        _imputer()(torch.ones(1, 1, 3, 3, dtype=torch.long), torch.ones(1, 1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        _imputer()(torch.randn(1, 1, 3, 3), torch.ones(1, 1, 4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN or inf"):
        _imputer()(torch.full((1, 1, 3, 3), torch.inf), torch.ones(1, 1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="noise"):
        NoisyLinearImputer(noise=-1.0)
    with pytest.raises(ValueError, match="solver"):
        NoisyLinearImputer(solver="lu")


# -- the metric ------------------------------------------------------------------------------------------------
def test_road_units_wrap_the_users_geometry() -> None:
    metric = ROAD(noise=0.02, seed=5, units=ImageUnits(patch=4), progress=False)
    units = metric.units
    assert isinstance(units, ImageUnits) and units.patch == 4
    assert isinstance(units.reference, NoisyLinearImputer)
    assert (units.reference.noise, units.reference.seed) == (0.02, 5)
    assert isinstance(ROAD().units, ImageUnits) and ROAD().units.patch == 1
    grid = ROAD(units=GridUnits(block=(2, 3))).units
    assert isinstance(grid, GridUnits) and grid.block == (2, 3)
    assert isinstance(grid.reference, NoisyLinearImputer)
    params = metric.get_params()
    assert params["method"] == "road" and params["noise"] == 0.02
    assert params["units"]["reference"]["kind"] == "NoisyLinearImputer"
    with pytest.raises(ValueError, match="2-D images"):
        ROAD(units=GridUnits(block=(1, 2, 2)))


def test_road_on_an_image_it_can_impute_exactly_changes_nothing() -> None:
    """A linear model on a linear ramp whose removals stay inside: imputation is exact, so Fid+ = Fid- = 0."""
    h = w = 10
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    x = (0.1 * yy - 0.05 * xx)[None, None].repeat(2, 1, 1, 1)
    model = LinearTwoClass(torch.randn(1, 1, h, w))
    attr = torch.rand(2, 1, h, w)
    attr[..., 0, :] = attr[..., -1, :] = attr[..., :, 0] = attr[..., :, -1] = -1.0  # border ranked last
    sparsities = [0.2, 0.4, 0.6]  # at most 60 % of 100 pixels: the 36 border pixels are never removed by Fid+
    res = ROAD(noise=0.0, sparsities=sparsities, mode="prob", progress=False).evaluate(model, x, [0, 0], attr)
    np.testing.assert_allclose(res.fid_plus, 0.0, atol=1e-5)
    fid = Fidelity(sparsities=sparsities, mode="prob", progress=False).evaluate(model, x, [0, 0], attr)
    assert np.abs(fid.fid_plus).max() > 1e-3  # zero-filling does change the output


@pytest.mark.parametrize("channels", [1, 3])
def test_road_evaluates_a_small_cnn_on_32x32_images(channels: int) -> None:
    torch.manual_seed(0)
    model = SmallCNN(in_channels=channels, num_classes=4, width=8).eval()
    x = torch.randn(3, channels, 32, 32)
    attr = torch.randn(3, channels, 32, 32)
    kwargs = {"sparsities": [0.1, 0.5, 0.9], "mode": "prob", "progress": False, "noise": 0.05}
    res = ROAD(batch_size=64, **kwargs).evaluate(model, x, None, attr)
    assert res.method == "road"
    assert np.isfinite(res.fid_plus).all() and np.isfinite(res.fid_minus).all()
    assert res.fid_plus.shape == (3,)
    # content-seeded noise: the result does not depend on how the engine chunks its masked copies
    res_small = ROAD(batch_size=5, **kwargs).evaluate(model, x, None, attr)
    np.testing.assert_allclose(res_small.per_sample_plus, res.per_sample_plus, atol=1e-6)
    np.testing.assert_allclose(res_small.per_sample_minus, res.per_sample_minus, atol=1e-6)
    patched = ROAD(units=ImageUnits(patch=4), **kwargs).evaluate(model, x, None, attr)
    assert np.isfinite(patched.fid_plus).all()
