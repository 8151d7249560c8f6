"""TokenUnits: padding/special tokens are never touched, delete mode stays consistent, exact Fid by hand."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ffidelity import Fidelity, TokenUnits
from ffidelity.units.random import mask_random_units

PAD, CLS, SEP, MASK = 0, 101, 102, 103
VOCAB = 2000


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


@st.composite
def batches(draw):
    """Rows ``[CLS] tokens [SEP] [PAD]...`` (SEP sometimes also mid-row, as in sentence pairs) + keep masks."""
    length = draw(st.integers(4, 14))
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, length - 2))
        toks = draw(st.lists(st.integers(1000, VOCAB - 1), min_size=n, max_size=n))
        if n >= 3 and draw(st.booleans()):
            toks[draw(st.integers(0, n - 1))] = SEP
        rows.append([CLS, *toks, SEP] + [PAD] * (length - n - 2))
    ids = torch.tensor(rows)
    keep = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=length, max_size=length),
                                      min_size=len(rows), max_size=len(rows))))
    return ids, keep


@settings(max_examples=150, deadline=None)
@given(batches())
def test_mask_mode_touches_only_real_tokens(batch):
    ids, keep = batch
    u = TokenUnits(mask_token_id=MASK, pad_token_id=PAD, special_token_ids=(CLS, SEP), vocab_size=VOCAB)
    valid = u.valid(ids)
    assert not valid[(ids == PAD) | (ids == CLS) | (ids == SEP)].any()
    out = u.remove(ids, keep)
    protected = ~valid
    assert torch.equal(out[protected], ids[protected])  # padding and specials untouched
    removed = ~keep & valid
    assert (out[removed] == MASK).all()
    assert torch.equal(out[~removed], ids[~removed])
    assert torch.equal(out != PAD, ids != PAD)  # the attention mask is unchanged


@settings(max_examples=150, deadline=None)
@given(batches())
def test_delete_mode_shifts_left_and_pads_the_end(batch):
    ids, keep = batch
    u = TokenUnits(mask_token_id=MASK, pad_token_id=PAD, special_token_ids=(CLS, SEP), removal="delete",
                   vocab_size=VOCAB)
    valid = u.valid(ids)
    out = u.remove(ids, keep)
    assert out.shape == ids.shape
    for row in range(ids.shape[0]):
        survivors = [int(t) for t, k, v in zip(ids[row], keep[row], valid[row], strict=True)
                     if int(t) != PAD and (bool(k) or not bool(v))]
        expected = survivors + [PAD] * (ids.shape[1] - len(survivors))
        assert out[row].tolist() == expected
        # specials all survive, in order; padding only at the end (consistent attention mask)
        assert [t for t in out[row].tolist() if t in (CLS, SEP)] == [t for t in ids[row].tolist() if t in (CLS, SEP)]
        nonpad = (out[row] != PAD).tolist()
        assert nonpad == sorted(nonpad, reverse=True)
    # exactly the removed real tokens are gone
    assert torch.equal(u.valid(out).sum(1), (valid & keep).sum(1))


def test_scores_reduce_embedding_attributions():
    ids = torch.tensor([[CLS, 1500, 1600, SEP, PAD]])
    u = TokenUnits(vocab_size=VOCAB)
    emb_attr = torch.arange(15, dtype=torch.float32).reshape(1, 5, 3)
    assert torch.equal(u.scores(emb_attr, ids), emb_attr.sum(2))
    assert torch.equal(u.scores(emb_attr.sum(2), ids), emb_attr.sum(2))
    with pytest.raises(ValueError, match="do not match"):
        u.scores(torch.zeros(1, 4), ids)


def test_out_of_vocabulary_and_bad_dtypes_give_clear_errors():
    u = TokenUnits(vocab_size=VOCAB)
    with pytest.raises(ValueError, match=r"out of the vocabulary.*2000"):
        u.valid(torch.tensor([[CLS, 5000, SEP]]))
    with pytest.raises(ValueError, match="out of the vocabulary"):
        TokenUnits().valid(torch.tensor([[CLS, -3, SEP]]))
    with pytest.raises(TypeError, match="integer token ids"):
        u.valid(torch.tensor([[1.0, 2.0]]))
    with pytest.raises(TypeError, match="pad_sequences"):
        u.valid([torch.tensor([1, 2]), torch.tensor([1, 2, 3])])
    with pytest.raises(ValueError, match="removal"):
        TokenUnits(removal="drop")


WEIGHTS = {1001: 1.0, 1002: 2.0, 1003: 3.0, 1004: 4.0}


class BagModel(nn.Module):
    """Class-1 logit = sum of per-token weights (mask, pad and specials weigh 0); class-0 logit = 0."""

    def __init__(self) -> None:
        super().__init__()
        table = torch.zeros(VOCAB)
        for k, v in WEIGHTS.items():
            table[k] = v
        self.register_buffer("table", table)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        s = self.table[ids].sum(1)
        return torch.stack([torch.zeros_like(s), s], dim=1)


@pytest.mark.parametrize("removal", ["mask", "delete"])
def test_exact_fidelity_on_tokens_by_hand(removal):
    ids = torch.tensor([[CLS, 1001, 1002, 1003, 1004, SEP, PAD, PAD]])
    attr = torch.tensor([[99.0, 1.0, 2.0, 3.0, 4.0, 99.0, 99.0, 99.0]])  # specials/padding must be ignored
    units = TokenUnits(mask_token_id=MASK, pad_token_id=PAD, special_token_ids=(CLS, SEP), removal=removal,
                       vocab_size=VOCAB)
    res = Fidelity(sparsities=[0.25, 0.5], mode="prob", units=units, progress=False).evaluate(
        BagModel(), ids, torch.tensor([1]), attr)
    # D = 4 real tokens; s = 0.25 -> top {1004}; s = 0.5 -> top {1003, 1004}
    assert res.fid_plus == pytest.approx([sig(10) - sig(6), sig(10) - sig(3)], abs=1e-9)
    assert res.fid_minus == pytest.approx([sig(10) - sig(4), sig(10) - sig(7)], abs=1e-9)


@pytest.mark.parametrize("removal", ["mask", "delete"])
def test_random_mask_finetuning_transform_on_tokens(removal):
    ids = torch.tensor([[CLS, *range(1001, 1011), SEP, PAD, PAD], [CLS, *range(1001, 1005), SEP] + [PAD] * 8])
    units = TokenUnits(removal=removal, vocab_size=VOCAB)
    out = mask_random_units(ids, units, beta=0.3, generator=torch.Generator().manual_seed(0))
    # exactly floor(0.3 * D_i) real tokens removed: 3 of 10, 1 of 4
    assert units.valid(out).sum(1).tolist() == ([7, 3] if removal == "delete" else [10, 4])
    assert ((out == MASK).sum(1).tolist() == [3, 1]) if removal == "mask" else ((out == MASK).sum() == 0)
    assert (out[:, 0] == CLS).all() and (out == SEP).sum(1).tolist() == [1, 1]
