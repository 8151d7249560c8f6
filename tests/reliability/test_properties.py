"""Property-based checks (hypothesis) that tests/ffidelity/metrics/test_engine_properties.py and tests/test_mm_data_naming.py leave
open: padded sequences and token ids (masks never touch padding or special tokens; Fid+ = 0 at alpha = 0;
acc-mode Fid in [-1, 1]) and the file-name parsers under one-character edits (accepted names are canonical).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ffidelity import FFidelity, Fidelity, RFidelity, SequenceUnits, TokenUnits
from ffidelity.data.timeseries import pad_sequences
from multimae_der.data.naming import parse_cremad_name, parse_iemocap_utterance, parse_ravdess_name

PAD = -1.0
SPECIAL = (101, 102)


class Spy(nn.Module):
    """A fixed random linear model over a (B, T, F) sequence or (B, L) token ids that records every batch."""

    def __init__(self, seed: int, classes: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(classes, 64, generator=g), requires_grad=False)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.clone())
        flat = x.float().flatten(1)
        if x.dtype == torch.long:
            flat = torch.cos(flat)  # ids as features
        flat = torch.nn.functional.pad(flat, (0, 64 - flat.shape[1]))
        return flat @ self.w.T


@st.composite
def padded_sequences(draw):
    """2-4 sequences of 2-8 steps x 2 features in [0.5, 2] padded with -1, their attributions and a seed
    (attributions on padding are huge: an engine that ranked padding would pick it first)."""
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    lengths = draw(st.lists(st.integers(2, 8), min_size=2, max_size=4))
    x = pad_sequences([0.5 + 1.5 * torch.rand(n, 2, generator=g) for n in lengths], pad_value=PAD)
    attr = torch.randn(x.shape, generator=g)
    attr[x == PAD] = 1e6
    return x, attr, seed


@st.composite
def token_batches(draw):
    """2-4 rows of [CLS] w1..wn [SEP] + padding (ids 0), word ids 200-999, and their attributions."""
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    lengths = draw(st.lists(st.integers(1, 8), min_size=2, max_size=4))
    width = max(lengths) + 2
    x = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, 0], x[i, n + 1] = SPECIAL[0], SPECIAL[1]
        x[i, 1:n + 1] = torch.randint(200, 1000, (n,), generator=g)
    attr = torch.randn(x.shape, generator=g)
    attr[(x == 0) | (x == SPECIAL[0]) | (x == SPECIAL[1])] = 1e6
    return x, attr, seed


def _metric(kind: str, alpha: float, beta: float, seed: int, units, mode: str = "acc") -> Fidelity:
    common = {"units": units, "seed": seed, "mode": mode, "progress": False, "sparsities": [0.2, 0.5, 0.9],
              "batch_size": 7}
    if kind == "fid":
        return Fidelity(**common)
    if kind == "rfid":
        return RFidelity(alpha, alpha, 3, **common)
    return FFidelity(beta, alpha, alpha, 3, **common)


kinds = st.sampled_from(["fid", "rfid", "ffid"])
unit_floats = st.floats(0, 1)


@settings(max_examples=30, deadline=None)
@given(data=padded_sequences(), kind=kinds, alpha=unit_floats, beta=unit_floats,
       reference=st.sampled_from(["zero", "mean"]))
def test_sequence_masks_never_remove_padding_and_acc_fid_is_bounded(data, kind, alpha, beta, reference):
    x, attr, seed = data
    model = Spy(seed)
    res = _metric(kind, alpha, beta, seed, SequenceUnits(reference=reference, pad_value=PAD)).evaluate(
        model, x, None, attr)
    pad_patterns = {tuple(row.tolist()) for row in (x == PAD).all(dim=2)}
    for batch in model.seen:
        pad = (batch == PAD).all(dim=2)
        for row in pad:  # every copy the model saw keeps exactly the padding of one of the inputs
            assert tuple(row.tolist()) in pad_patterns
        assert (batch[pad.unsqueeze(-1).expand_as(batch)] == PAD).all()
    for arr in (res.per_sample_plus, res.per_sample_minus):
        assert np.all(arr >= -1) and np.all(arr <= 1)


@settings(max_examples=30, deadline=None)
@given(data=token_batches(), kind=kinds, alpha=unit_floats, beta=unit_floats)
def test_token_masks_never_touch_padding_or_special_tokens(data, kind, alpha, beta):
    x, attr, seed = data
    model = Spy(seed)
    res = _metric(kind, alpha, beta, seed, TokenUnits(mask_token_id=103, pad_token_id=0,
                                                      special_token_ids=SPECIAL)).evaluate(model, x, None, attr)
    fixed = {tuple(row.tolist()) for row in torch.where((x == 0) | (x == 101) | (x == 102), x, -1)}
    for batch in model.seen:
        for row in torch.where((batch == 0) | (batch == 101) | (batch == 102), batch, -1):
            assert tuple(row.tolist()) in fixed  # padding and [CLS]/[SEP] where an input has them, nowhere else
    for arr in (res.per_sample_plus, res.per_sample_minus):
        assert np.all(arr >= -1) and np.all(arr <= 1)


@settings(max_examples=20, deadline=None)
@given(data=padded_sequences(), beta=unit_floats, mode=st.sampled_from(["acc", "prob"]))
def test_ffidelity_is_zero_at_alpha_zero_on_padded_sequences(data, beta, mode):
    x, attr, seed = data
    res = _metric("ffid", 0.0, beta, seed, SequenceUnits(pad_value=PAD), mode=mode).evaluate(Spy(seed), x, None, attr)
    assert np.abs(res.per_sample_plus).max() < 1e-6 and np.abs(res.per_sample_minus).max() < 1e-6


# -- parsers under one-character edits ---------------------------------------------------------------------------
VALID = {
    "ravdess": (parse_ravdess_name, "01-01-06-01-02-01-12.mp4", lambda p: p.stem),
    "cremad": (parse_cremad_name, "1001_DFA_ANG_XX.flv", lambda p: p.stem),
    "iemocap": (parse_iemocap_utterance, "Ses01F_script01_2a_M012.wav", lambda p: p.name),
}
# digits of other scripts, look-alikes and separators a careless parser would accept
ALPHABET = st.sampled_from([*"0123456789-_.FMXx ", "\u0661", "\uff11", "\u00b2", "\u2010", "\t", "/", "\\"])


@settings(max_examples=400, deadline=None)
@given(which=st.sampled_from(sorted(VALID)), pos=st.integers(0, 40), char=ALPHABET,
       edit=st.sampled_from(["replace", "insert", "delete"]))
def test_parsers_accept_only_canonical_names_after_one_edit(which, pos, char, edit):
    parse, name, canonical = VALID[which]
    stem, ext = name.rsplit(".", 1)
    pos %= len(stem)
    edited = {"replace": stem[:pos] + char + stem[pos + 1:], "insert": stem[:pos] + char + stem[pos:],
              "delete": stem[:pos] + stem[pos + 1:]}[edit]
    try:
        parsed = parse(f"{edited}.{ext}")
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    # accepted: the name is exactly the canonical spelling of what was parsed (path separators aside)
    base = edited.replace("\\", "/").rsplit("/", 1)[-1]
    assert canonical(parsed) == base and base.isascii()


@pytest.mark.parametrize("which", sorted(VALID))
def test_the_valid_seeds_of_the_edit_property_parse(which):
    parse, name, canonical = VALID[which]
    assert canonical(parse(name)) == name.rsplit(".", 1)[0]
