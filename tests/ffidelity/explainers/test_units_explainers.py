"""Units, explainers, degraded explainers and random-mask fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ffidelity import EXPLAINERS, FFidelity, GridUnits, ImageUnits, VideoUnits, degrade, explain
from ffidelity.metrics.finetune import masked_accuracy
from ffidelity.models.image import ResNet9, SmallCNN
from ffidelity.units.random import mask_random_units, random_keep_mask


def test_image_units_scores_sum_channels_and_patches() -> None:
    units = ImageUnits(patch=2)
    x = torch.zeros(1, 3, 5, 3)  # 5x3 with 2x2 patches -> a 3x2 grid, smaller blocks at the edges
    attr = torch.ones(1, 3, 5, 3)
    s = units.scores(attr, x)
    assert s.shape == (1, 6)
    np.testing.assert_array_equal(s.reshape(3, 2).numpy(), [[12, 6], [12, 6], [6, 3]])
    # a channel-summed map and a unit-grid map are accepted as they are
    assert torch.equal(units.scores(attr.sum(1), x), s)
    assert torch.equal(units.scores(s.reshape(1, 3, 2), x), s)


def test_image_units_remove_all_channels_with_each_reference() -> None:
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    keep = torch.tensor([[True, False, True, True], [False, True, True, True]])
    out = ImageUnits(reference=-1.0).remove(x, keep)
    assert torch.all(out[0, :, 0, 1] == -1) and torch.all(out[1, :, 0, 0] == -1)
    assert torch.equal(out[0, :, 1], x[0, :, 1])
    mean = ImageUnits(reference="mean").remove(x, keep)
    assert torch.allclose(mean[0, :, 0, 1], x[0].mean(dim=(1, 2)))
    ref = torch.tensor([10.0, 20.0, 30.0]).reshape(3, 1, 1)
    t = ImageUnits(reference=ref).remove(x, keep)
    assert torch.equal(t[1, :, 0, 0], torch.tensor([10.0, 20.0, 30.0]))


def test_grid_units_on_video_tubes() -> None:
    units = GridUnits(block=(2, 4, 4), channel_dim=2)  # (B, T, C, H, W): tubes of 2 frames x 4 x 4 pixels
    x = torch.ones(1, 4, 3, 8, 8)
    assert units.num_units(x) == 2 * 2 * 2
    keep = torch.ones(1, 8, dtype=torch.bool)
    keep[0, 0] = False  # the first tube: frames 0-1, rows 0-3, cols 0-3
    out = units.remove(x, keep)
    assert out[0, :2, :, :4, :4].abs().sum() == 0
    assert out.sum() == x.sum() - 2 * 3 * 16


def test_bad_units_config() -> None:
    with pytest.raises(ValueError, match="patch"):
        ImageUnits(patch=0)
    with pytest.raises(ValueError, match="reference"):
        ImageUnits(reference="median")
    with pytest.raises(ValueError, match="4 dimensions"):
        ImageUnits().num_units(torch.zeros(2, 8, 8))


@pytest.mark.parametrize("name", [n for n in EXPLAINERS.names() if not n.startswith(("layer_", "vit_"))])
def test_every_explainer_returns_finite_attributions_of_the_input_shape(name: str) -> None:
    torch.manual_seed(0)
    model = ResNet9(in_channels=3, num_classes=4, width=4).eval()
    x = torch.randn(3, 3, 16, 16)
    kw = {"n_steps": 4, "nt_samples": 2} if name in ("sg_sq",) else {}
    kw = {"n_steps": 4} if name == "integrated_gradients" else kw
    attr = explain(name, model, x, torch.tensor([0, 1, 2]), batch_size=2, **kw)
    assert attr.shape == x.shape
    assert torch.isfinite(attr).all()
    assert attr.abs().sum() > 0


def test_random_explainer_is_seeded() -> None:
    model = SmallCNN(width=4)
    x = torch.randn(2, 1, 8, 8)
    a = explain("random", model, x, 0, seed=1)
    assert torch.equal(a, explain("random", model, x, 0, seed=1))
    assert not torch.equal(a, explain("random", model, x, 0, seed=2))


def test_unknown_explainer_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="saliency"):
        explain("nope", SmallCNN(width=4), torch.randn(1, 1, 8, 8), 0)


def test_gradcam_without_conv_is_a_clear_error() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with pytest.raises(ValueError, match="convolutional layer"):
        explain("gradcam", model, torch.randn(1, 1, 4, 4), 0)


def test_degrade_keeps_the_histogram_and_corrupts_the_ranking() -> None:
    a = torch.randn(4, 100)
    assert torch.equal(degrade(a, 0.0), a)
    for noise in (0.2, 0.6, 1.0):
        d = degrade(a, noise, seed=1)
        assert torch.equal(d.sort(dim=1).values, a.sort(dim=1).values)  # same scores, per input
        changed = (d != a).float().mean().item()
        assert 0 < changed <= noise + 1e-9
        assert torch.equal(d, degrade(a, noise, seed=1))
    assert not torch.equal(degrade(a, 0.6, seed=1), degrade(a, 0.6, seed=2))
    with pytest.raises(ValueError, match="noise"):
        degrade(a, 1.5)


def test_random_masks_remove_exactly_floor_beta_d_units() -> None:
    valid = torch.ones(5, 1024, dtype=torch.bool)
    valid[0, 500:] = False
    keep = random_keep_mask(valid, torch.floor(0.1 * valid.sum(1).double()).long(), torch.Generator().manual_seed(0))
    assert (~keep).sum(1).tolist() == [50, 102, 102, 102, 102]
    assert not (~keep[0, 500:]).any()  # invalid slots are never removed
    x = torch.randn(3, 3, 32, 32) + 5
    out = mask_random_units(x, ImageUnits(), 0.1)
    removed = (out == 0).all(dim=1)  # all channels together
    assert removed.flatten(1).sum(1).tolist() == [102, 102, 102]


@pytest.mark.slow
def test_finetune_makes_the_model_robust_to_random_removal(tmp_path) -> None:
    from ffidelity.data.images import digits
    from ffidelity.models.training import fit_classifier

    split = digits(seed=0)
    model = fit_classifier(SmallCNN(width=16), (split.x_train, split.y_train), epochs=10, lr=3e-3, progress=False)
    metric = FFidelity(beta=0.1, progress=False)
    units = ImageUnits()
    before = masked_accuracy(model, split.x_test, split.y_test, units, 0.1)
    tuned = metric.finetune(model, (split.x_train, split.y_train), epochs=8, lr=1e-3, batch_size=64,
                            out_dir=tmp_path / "ft", progress=False)
    after = masked_accuracy(tuned, split.x_test, split.y_test, units, 0.1)
    assert after > before + 0.03 and after > 0.85, (before, after)
    assert tuned is not model and metric.evaluator_ is tuned
    # the original model is untouched
    with torch.no_grad():
        assert not torch.equal(model.head[-1].weight, tuned.head[-1].weight)
    # a finished run is a cache hit: same weights, no training
    again = metric.finetune(model, (split.x_train, split.y_train), epochs=8, out_dir=tmp_path / "ft",
                            progress=False)
    assert torch.equal(again.head[-1].weight, tuned.head[-1].weight)
    assert (tmp_path / "ft" / "model.safetensors").exists()


def test_degrade_within_groups_keeps_each_group_scores():
    """Permutation inside groups: each group keeps its own multiset of scores, so the top-k of every copy holds
    as many units of each group (e.g. each modality) as the explainer's own top-k."""
    from ffidelity.explainers.degrade import degrade

    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(5, 12, generator=gen)
    groups = torch.tensor([0] * 4 + [1] * 8)
    out = degrade(scores, 1.0, seed=3, groups=groups)
    for g in (0, 1):
        sel = groups == g
        assert torch.equal(out[:, sel].sort(1).values, scores[:, sel].sort(1).values)
    assert not torch.equal(out, scores)
    assert torch.equal(out, degrade(scores, 1.0, seed=3, groups=groups))  # seeded
    assert torch.equal(degrade(scores, 0.0, seed=3, groups=groups), scores)
    half = degrade(scores, 0.5, seed=3, groups=groups.expand(5, 12))
    assert ((half != scores).sum(1) <= 2 + 4).all()  # at most half of each group moves
    with pytest.raises(ValueError, match="groups must have shape"):
        degrade(scores, 0.5, groups=torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize(
    "units, shape",
    [(ImageUnits(), (4, 3, 8, 8)), (ImageUnits(patch=3), (4, 2, 7, 8)),
     (VideoUnits(tubelet=2, patch=4), (3, 4, 3, 8, 8)), (VideoUnits(tubelet=2, patch=4, reference=-0.5), (3, 5, 2, 9, 8)),
     (GridUnits(block=(2, 2), channel_dim=None), (3, 6, 6)), (GridUnits(block=(2,), channel_dim=-1), (3, 5, 4))],
)
def test_remove_into_writes_the_removal_in_the_inputs_layout(units, shape) -> None:
    """``remove_into`` fills the engine's buffer in place, bit for bit what ``remove`` gives, for any channel
    axis (the video's channels sit at axis 2), and the buffer stays contiguous for the model."""
    x = torch.randn(shape)
    d = units.num_units(x)
    keep = torch.rand(shape[0], d, generator=torch.Generator().manual_seed(1)) < 0.5
    out = torch.full(shape, float("nan"))
    got = units.remove_into(x, keep, out)
    assert got.data_ptr() == out.data_ptr() and got.is_contiguous()
    want = units.remove(x, keep)
    assert torch.equal(got.view(torch.int32), want.contiguous().view(torch.int32))
    # and ``remove`` is the definition: a removed unit's elements hold the reference, the others the input
    el = units.expand(keep, x)  # (B, 1, *spatial) in the (batch, channels, *spatial) view
    x_cs, got_cs = units._to_cs(x), units._to_cs(got)
    ref = float(units.reference)
    assert torch.equal(torch.where(el, x_cs, torch.tensor(ref)), got_cs)
