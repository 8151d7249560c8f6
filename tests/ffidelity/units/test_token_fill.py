"""Filling in token space (``ffidelity.units.token_fill``): the same numbers as filling the pixels.

The reference is the definition: the model run on the pixel-filled copy (``units.remove``). Both a VideoMAE
(tubes) and a ViT (patches), the three kinds of reference that do not depend on the removal, and the engine's
Fid / R-Fid / F-Fid curves through either path.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_videomae, tiny_vit

from ffidelity import FFidelity, Fidelity, ImageUnits, RFidelity, TokenFill, VideoUnits
from ffidelity.metrics.finetune import evaluator_folder, masked_accuracy
from ffidelity.metrics.masking import MaskedCopies

D = 8  # (4 frames / tubelet 2) x (32 / 16)^2 tubes


def _vit_logits(model, x):
    return model(pixel_values=x).logits


CASES = {  # name -> (model, logits of pixel inputs, inputs, units)
    "videomae": (tiny_videomae, lambda m, x: m(x), (3, 4, 3, 32, 32), lambda ref: VideoUnits(2, 16, reference=ref)),
    "vit": (tiny_vit, _vit_logits, (3, 3, 16, 16), lambda ref: ImageUnits(patch=4, reference=ref)),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("reference", [0.0, 0.7, "mean", "tensor"])
def test_token_space_equals_pixel_filling(case, reference) -> None:
    make, logits, shape, make_units = CASES[case]
    model = make()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=gen)
    ref = torch.randn(1, *shape[1:], generator=gen)[0] if reference == "tensor" else reference
    units = make_units(ref)
    d = units.num_units(x)
    rows = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    keep = torch.rand(rows.numel(), d, generator=gen) < 0.5
    keep[1] = True  # nothing removed: the plain forward
    keep[3] = False  # everything removed: the fully filled input
    with torch.inference_mode():
        got = TokenFill(units).forward_removed(model, x, rows, keep)
        want = logits(model, units.remove(x[rows], keep))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got[0], got[1])  # the removal changes the logits: the comparison can fail


@pytest.mark.parametrize("metric", [Fidelity(sparsities=[0.25, 0.5], progress=False),
                                    RFidelity(n_samples=3, sparsities=[0.25, 0.5], progress=False),
                                    FFidelity(beta=0.3, n_samples=3, sparsities=[0.25, 0.5], progress=False)])
def test_engine_curves_equal_filling(metric) -> None:
    model = tiny_videomae()
    gen = torch.Generator().manual_seed(2)
    x, a = torch.randn(3, 4, 3, 32, 32, generator=gen), torch.randn(3, D, generator=gen)
    units = VideoUnits(2, 16)
    metric.units = units
    fill = metric.evaluate(model, x, None, a)
    metric.units = TokenFill(units)
    token = metric.evaluate(model, x, None, a)
    for side in ("per_sample_plus", "per_sample_minus"):
        assert abs(getattr(fill, side)).max() > 1e-3  # removal moves the scores
        torch.testing.assert_close(torch.as_tensor(getattr(token, side)), torch.as_tensor(getattr(fill, side)),
                                   rtol=1e-4, atol=1e-6)
    assert token.params["units"]["kind"] == "TokenFill"


def test_no_masked_copy_is_built_in_pixels() -> None:
    x = torch.randn(2, 4, 3, 32, 32)
    pos = torch.arange(D).repeat(2, 1).int()
    copies = MaskedCopies(x, pos, torch.full((2, 1), 4), torch.full((2,), D), torch.full((2, 1, 2), 0.5), 2,
                          TokenFill(VideoUnits(2, 16)), seed=0, index_offset=0)
    copies.allocate(8)
    (inputs, rows, keep), *_ = copies.build(0, 8, slot=0)
    assert copies.out_bufs == [] and inputs.shape[0] == 2 and keep.shape == (8, D)  # the inputs, not 8 copies
    assert torch.equal(rows, torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))


def test_finetuning_fills_pixels_and_shares_the_filled_cache(tmp_path) -> None:
    units = VideoUnits(2, 16)
    assert evaluator_folder(0.5, TokenFill(units)) == evaluator_folder(0.5, units)
    model = tiny_videomae()
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(8, 4, 3, 32, 32, generator=gen), torch.randint(0, 3, (8,), generator=gen)
    assert masked_accuracy(model, x, y, TokenFill(units), 0.5, seed=0) == masked_accuracy(model, x, y, units, 0.5,
                                                                                          seed=0)
    tuned = FFidelity(beta=0.5, units=TokenFill(units), progress=False).finetune(model, (x, y), epochs=1, lr=1e-2,
                                                                               batch_size=4)
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), tuned.parameters(), strict=True))


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="does not depend on which units"):
        TokenFill(VideoUnits(2, 16, reference=lambda x, keep: x * keep))
    with pytest.raises(TypeError, match="grid units"):
        TokenFill(object())  # type: ignore[arg-type]
    x = torch.randn(1, 4, 3, 32, 32)
    with pytest.raises(ValueError, match="unit u must be token u"):
        TokenFill(VideoUnits(2, 8)).forward_removed(tiny_videomae(), x, torch.zeros(1, dtype=torch.long),
                                                    torch.ones(1, 32, dtype=torch.bool))
    with pytest.raises(TypeError, match="token"):
        TokenFill(ImageUnits()).forward_removed(torch.nn.Flatten(), torch.randn(1, 3, 4, 4),
                                                torch.zeros(1, dtype=torch.long), torch.ones(1, 16, dtype=torch.bool))
