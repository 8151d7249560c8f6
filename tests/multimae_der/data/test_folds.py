"""Label sets and subject-independent folds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multimae_der.data.folds import fold_indices, subject_folds
from multimae_der.data.labels import LABEL_SETS, default_label_set, get_label_set
from multimae_der.data.naming import RAVDESS_EMOTIONS


def test_label_sets():
    assert LABEL_SETS.names() == ["cremad6", "iemocap4", "ravdess7", "ravdess8"]
    r8, r7 = get_label_set("ravdess8"), get_label_set("ravdess7")
    assert r8.classes == RAVDESS_EMOTIONS and r8.index("calm") == 1
    assert r7.num_classes == 7 and r7.index("calm") == r7.index("neutral") == 0 and r7.index("surprised") == 6
    c6 = default_label_set("cremad")
    assert c6.num_classes == 6 and c6.classes == ("angry", "disgust", "fearful", "happy", "neutral", "sad")
    i4 = default_label_set("iemocap")
    assert i4.classes == ("neutral", "happy", "angry", "sad")
    assert i4.index("excited") == i4.index("happy") == 1
    assert i4.index("frustrated") is None and "frustrated" not in i4 and "sad" in i4
    with pytest.raises(KeyError, match="known"):
        get_label_set("ravdess9")
    with pytest.raises(ValueError, match="unknown dataset"):
        default_label_set("afew")


def _check_partition(actors, folds):
    tested = [a for f in folds for a in f.test_actors]
    assert sorted(tested) == sorted(set(actors)), "every actor is tested exactly once"
    for f in folds:
        assert not set(f.train_actors) & set(f.test_actors)
        assert set(f.train_actors) | set(f.test_actors) == set(actors)
        train, test = fold_indices(actors, f)
        assert sorted(train + test) == list(range(len(actors)))
        assert not {actors[i] for i in train} & {actors[i] for i in test}


def test_ravdess_folds_are_actor_groups():
    actors = [f"{a:02d}" for a in range(1, 25) for _ in range(3)]
    folds = subject_folds("ravdess", actors)
    assert len(folds) == 6
    assert [f.test_actors for f in folds] == [tuple(f"{a:02d}" for a in range(4 * g + 1, 4 * g + 5)) for g in range(6)]
    _check_partition(actors, folds)
    eight = [f"{a:02d}" for a in range(1, 9)]
    assert [f.test_actors for f in subject_folds("ravdess", eight)] == [("01", "02", "03", "04"),
                                                                        ("05", "06", "07", "08")]
    assert [len(f.test_actors) for f in subject_folds("ravdess", eight, num_folds=4)] == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="single ravdess fold"):
        subject_folds("ravdess", ["01", "02"])


def test_cremad_folds_are_seeded_speaker_groups():
    actors = [str(a) for a in range(1001, 1092)]
    f0 = subject_folds("cremad", actors, seed=0)
    assert len(f0) == 5 and sorted(len(f.test_actors) for f in f0) == [18, 18, 18, 18, 19]
    _check_partition(actors, f0)
    assert f0 == subject_folds("cremad", actors, seed=0)
    assert f0 != subject_folds("cremad", actors, seed=1)
    with pytest.raises(ValueError, match="at least 5 speakers"):
        subject_folds("cremad", ["1001", "1002"])


def test_iemocap_leave_one_session_out():
    actors = [f"Ses{s:02d}{g}" for s in range(1, 6) for g in "FM" for _ in range(2)]
    folds = subject_folds("iemocap", actors)
    assert [f.test_actors for f in folds] == [(f"Ses{s:02d}F", f"Ses{s:02d}M") for s in range(1, 6)]
    _check_partition(actors, folds)
    with pytest.raises(ValueError, match="leave-one-session-out"):
        subject_folds("iemocap", actors, num_folds=3)
    with pytest.raises(ValueError, match="unknown dataset"):
        subject_folds("afew", actors)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1001, 1091), min_size=5, max_size=60), st.integers(0, 2**16), st.integers(2, 5))
def test_cremad_folds_partition_any_speaker_list(ids, seed, k):
    actors = [str(i) for i in ids]
    if len(set(actors)) < k:
        with pytest.raises(ValueError):
            subject_folds("cremad", actors, num_folds=k, seed=seed)
        return
    _check_partition(actors, subject_folds("cremad", actors, num_folds=k, seed=seed))
