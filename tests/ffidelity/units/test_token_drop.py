"""Token dropping (``ffidelity.units.token_drop``): removal by leaving tokens out of a VideoMAE's sequence.

The reference for every masked copy is Hugging Face's own ``bool_masked_pos`` path, one copy at a time, so the
engine's batching by kept-token count, its per-chunk embeddings and its draws are all checked against a plain
per-copy definition.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference_engine import reference_masked_scores
from tiny_models import tiny_videomae, tiny_vit

from ffidelity import FFidelity, Fidelity, RFidelity, VideoUnits
from ffidelity.metrics.finetune import evaluator_folder, masked_accuracy
from ffidelity.units.token_drop import TokenDrop, token_model
from multimae_der.explain.attributions import EmotionLogits

D = 8  # (4 frames / tubelet 2) x (32 / 16)^2 tokens


_model = tiny_videomae


def _data(n: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 3, 32, 32, generator=gen), torch.randn(n, D, generator=gen)


def _hf_copy_logits(model: EmotionLogits, units: TokenDrop, x: torch.Tensor, i: int, removed: torch.Tensor):
    """Each copy alone through HF's ``bool_masked_pos`` (a copy that removes every token sees the filled input)."""
    out = []
    for row in removed:
        xi = x[i : i + 1]
        if bool(row.all()):
            out.append(model(units.units.remove(xi, ~row[None])))
        else:
            out.append(model.model(pixel_values=xi, bool_masked_pos=row[None]).logits)
    return torch.cat(out)


def test_all_tokens_kept_is_the_plain_forward():
    model, (x, _) = _model(), _data()
    units = TokenDrop(VideoUnits(tubelet=2, patch=16))
    keep = torch.ones(3, D, dtype=torch.bool)
    with torch.inference_mode():
        got = units.forward_removed(model, x, torch.arange(3), keep)
        torch.testing.assert_close(got, model(x), rtol=0, atol=1e-6)


def test_mixed_counts_match_hf_masked_positions():
    """Copies keeping 0..D tokens, several per input, in one call: each equals HF's per-copy masked forward."""
    model, (x, _) = _model(), _data()
    units = TokenDrop(VideoUnits(tubelet=2, patch=16))
    gen = torch.Generator().manual_seed(3)
    rows = torch.tensor([0, 0, 1, 2, 2, 2, 1, 0, 1])
    keep = torch.rand(rows.numel(), D, generator=gen) < 0.5
    keep[0] = False  # nothing kept: the filled input
    keep[1] = True
    with torch.inference_mode():
        got = units.forward_removed(model, x, rows, keep)
        for r in range(rows.numel()):
            want = _hf_copy_logits(model, units, x, int(rows[r]), ~keep[r : r + 1])
            torch.testing.assert_close(got[r : r + 1], want, rtol=0, atol=2e-6)
    assert np.unique(keep.sum(1).numpy()).size >= 3  # the call really grouped several counts


@pytest.mark.parametrize("metric_cls", [Fidelity, RFidelity, FFidelity])
@pytest.mark.parametrize("batch_size", [1, 5, 1000])
def test_engine_matches_per_copy_reference(metric_cls, batch_size):
    model, (x, a) = _model(), _data()
    units = TokenDrop(VideoUnits(tubelet=2, patch=16))
    kw = {} if metric_cls is Fidelity else {"n_samples": 4}
    if metric_cls is FFidelity:
        kw.update(beta=0.3, alpha_plus=1.0)
    metric = metric_cls(sparsities=[0.25, 0.5, 0.75], mode="prob", units=units, batch_size=batch_size,
                        progress=False, seed=7, **kw)
    y = torch.tensor([0, 1, 2])
    res = metric.evaluate(model, x, y, a)
    plus, minus = reference_masked_scores(metric, model, x, y, a,
                                          copy_logits=lambda i, removed: _hf_copy_logits(model, units, x, i, removed))
    np.testing.assert_allclose(res.per_sample_plus, plus, atol=1e-6)
    np.testing.assert_allclose(res.per_sample_minus, minus, atol=1e-6)
    assert res.params["units"]["removal"] == "drop"


def test_dropping_differs_from_filling():
    """The two removals are different operators (else the option would mean nothing)."""
    model, (x, a) = _model(), _data()
    drop = Fidelity(sparsities=[0.5], mode="prob", units=TokenDrop(VideoUnits(2, 16)), progress=False)
    fill = Fidelity(sparsities=[0.5], mode="prob", units=VideoUnits(2, 16), progress=False)
    y = torch.tensor([0, 1, 2])
    assert not np.allclose(drop.evaluate(model, x, y, a).per_sample_plus,
                           fill.evaluate(model, x, y, a).per_sample_plus, atol=1e-4)


def test_finetune_drops_random_tokens_and_caches(tmp_path):
    model = _model()
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(12, 4, 3, 32, 32, generator=gen), torch.randint(0, 3, (12,), generator=gen)
    units = TokenDrop(VideoUnits(2, 16))
    metric = FFidelity(beta=0.5, units=units, progress=False)
    folder = tmp_path / evaluator_folder(0.5, units)
    assert folder.name.endswith("_drop")
    tuned = metric.finetune(model, (x, y), epochs=2, lr=1e-2, batch_size=4, out_dir=folder)
    assert type(tuned) is type(model) and not tuned.training
    changed = [not torch.equal(p, q) for p, q in zip(model.parameters(), tuned.parameters(), strict=True)]
    assert any(changed)
    again = FFidelity(beta=0.5, units=units, progress=False).finetune(model, (x, y), epochs=2, out_dir=folder)
    for p, q in zip(tuned.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)  # read back from model.safetensors, not retrained
    acc = masked_accuracy(tuned, x, y, units, 0.5, seed=0)
    assert acc == masked_accuracy(tuned, x, y, units, 0.5, seed=0)  # seeded
    assert 0.0 <= acc <= 1.0


def test_clear_errors():
    units = TokenDrop(VideoUnits(2, 16))
    x, _ = _data()
    with pytest.raises(TypeError, match="inside the model"):
        units.remove(x, torch.ones(3, D, dtype=torch.bool))
    with pytest.raises(TypeError, match="token dropping needs a transformer"):
        token_model(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="unit u must be token u"):
        TokenDrop(VideoUnits(4, 16)).forward_removed(_model(), x, torch.arange(3), torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="not another TokenDrop"):
        TokenDrop(units)


def test_larger_units_drop_their_tokens():
    """Units of whole frame pairs (4 tokens each): dropping a unit drops exactly its tokens."""
    model, (x, _) = _model(), _data()
    tokens = VideoUnits(2, 16)
    units = TokenDrop(VideoUnits(2, 32), tokens=tokens)  # 2 units = the 2 frame pairs
    assert units.num_units(x) == 2
    keep = torch.tensor([[True, False], [False, True], [True, True]])
    tk = units.token_keep(x, keep)
    assert tk.tolist() == [[True] * 4 + [False] * 4, [False] * 4 + [True] * 4, [True] * 8]
    with torch.inference_mode():
        got = units.forward_removed(model, x, torch.arange(3), keep)
        want = torch.cat([model.model(pixel_values=x[i : i + 1], bool_masked_pos=~tk[i : i + 1]).logits
                          for i in range(3)])
        torch.testing.assert_close(got, want, rtol=0, atol=2e-6)


_vit = tiny_vit


def test_vit_drops_patches_and_keeps_cls():
    """A ViT classifier: all kept = HF's forward; a subset = HF's forward with the dropped patches masked out of
    attention (the CLS output then cannot see them); the pixels of dropped patches cannot matter."""
    from ffidelity import ImageUnits

    model, gen = _vit(), torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    units = TokenDrop(ImageUnits(patch=4))
    rows = torch.tensor([0, 1, 1, 0])
    keep = torch.rand(4, 16, generator=gen) < 0.5
    keep[0] = True
    with torch.inference_mode():
        got = units.forward_removed(model, x, rows, keep)
        torch.testing.assert_close(got[:1], model(pixel_values=x[:1]).logits, rtol=0, atol=1e-6)
        for r in range(1, 4):
            mask = torch.cat([torch.ones(1, dtype=torch.long), keep[r].long()])[None]  # CLS + kept patches
            want = model(pixel_values=x[rows[r] : rows[r] + 1], attention_mask=mask).logits
            torch.testing.assert_close(got[r : r + 1], want, rtol=0, atol=1e-5)
        noisy = x.clone()  # change only pixels of patches copy 1 drops
        patch_mask = (~keep[1]).reshape(4, 4).repeat_interleave(4, 0).repeat_interleave(4, 1)
        noisy[1][:, patch_mask] += 5.0
        again = units.forward_removed(model, noisy, rows[1:2], keep[1:2])
        torch.testing.assert_close(again, got[1:2], rtol=0, atol=1e-6)
        metric = Fidelity(sparsities=[0.25, 0.5], mode="prob", units=units, progress=False)
        res = metric.evaluate(model, x, torch.tensor([0, 1]), torch.randn(2, 3, 16, 16, generator=gen))
    assert np.isfinite(res.per_sample_plus).all() and res.params["units"]["removal"] == "drop"
