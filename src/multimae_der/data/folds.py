"""Subject-independent cross-validation folds: no speaker appears in both the training and the test side.

Protocols (as used by the strongest peers, e.g. HiCMAE):

* RAVDESS: 6 folds of actor groups {1-4}, {5-8}, ..., {21-24} (folds without a present actor are left out);
* CREMA-D: 5 folds of speakers, assigned by a seeded shuffle;
* IEMOCAP: leave-one-session-out (5 folds; both speakers of a session are tested together).

``num_folds`` overrides the RAVDESS / CREMA-D grouping (contiguous actor groups for RAVDESS, seeded for CREMA-D),
which small synthetic sets need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Fold", "fold_indices", "subject_folds"]


@dataclass(frozen=True)
class Fold:
    """One fold: its index, a short name and the (sorted) actors on each side."""

    index: int
    name: str
    test_actors: tuple[str, ...]
    train_actors: tuple[str, ...]


def _actor_sort_key(actor: str) -> tuple[int, str]:
    digits = "".join(ch for ch in actor if ch.isdigit())
    return (int(digits) if digits else -1, actor)


def subject_folds(dataset: str, actors: Sequence[str], *, num_folds: int | None = None, seed: int = 0) -> list[Fold]:
    """Builds the folds of ``dataset`` over the actors present.

    Args:
        dataset: ``ravdess``, ``cremad`` or ``iemocap``.
        actors: actor ids of the clips (repeats are fine): ``"01"``.. for RAVDESS, ``"1001"``.. for CREMA-D,
            ``"Ses01F"``.. for IEMOCAP.
        num_folds: optional override of the number of folds (not for IEMOCAP).
        seed: seeds the CREMA-D speaker shuffle; the same seed gives the same folds.

    Returns:
        Folds with non-empty test sides, indexed from 0.
    """
    unique = sorted(set(actors), key=_actor_sort_key)
    if not unique:
        raise ValueError("no actors given: cannot build folds")
    if num_folds is not None and not 2 <= num_folds <= len(unique) and dataset != "iemocap":
        raise ValueError(f"num_folds={num_folds} must be between 2 and the number of actors ({len(unique)})")
    groups: list[tuple[str, list[str]]]
    if dataset == "ravdess":
        if num_folds is None:
            by_group: dict[int, list[str]] = {}
            for a in unique:
                number = _actor_sort_key(a)[0]
                if number < 1:
                    raise ValueError(f"RAVDESS actor {a!r} is not a number 01-24")
                by_group.setdefault((number - 1) // 4, []).append(a)
            groups = [(f"actors {4 * g + 1:02d}-{4 * g + 4:02d}", members) for g, members in sorted(by_group.items())]
        else:
            groups = [(f"actors {part[0]}-{part[-1]}", list(part))
                      for part in np.array_split(np.array(unique, dtype=object), num_folds)]
    elif dataset == "cremad":
        k = 5 if num_folds is None else num_folds
        if len(unique) < k:
            raise ValueError(f"CREMA-D folds need at least {k} speakers, found {len(unique)}")
        order = np.random.default_rng(seed).permutation(len(unique))
        groups = []
        for i, part in enumerate(np.array_split(order, k)):
            members = sorted((unique[j] for j in part), key=_actor_sort_key)
            groups.append((f"speakers group {i + 1}", members))
    elif dataset == "iemocap":
        if num_folds not in (None, 5):
            raise ValueError("IEMOCAP uses leave-one-session-out folds; num_folds cannot be changed")
        by_session: dict[str, list[str]] = {}
        for a in unique:
            if len(a) < 5 or not a.startswith("Ses"):
                raise ValueError(f"IEMOCAP actor {a!r} is not a speaker id like 'Ses01F'")
            by_session.setdefault(a[:5], []).append(a)
        groups = [(f"session {s[3:5]}", members) for s, members in sorted(by_session.items())]
    else:
        raise ValueError(f"unknown dataset {dataset!r}; known: ravdess, cremad, iemocap")
    if len(groups) < 2:
        raise ValueError(f"the {len(unique)} actors present form a single {dataset} fold group; "
                         f"pass num_folds to split them")
    folds = []
    for i, (name, test) in enumerate(groups):
        test_set = set(test)
        train = tuple(a for a in unique if a not in test_set)
        folds.append(Fold(i, name, tuple(test), train))
    return folds


def fold_indices(actors: Sequence[str], fold: Fold) -> tuple[list[int], list[int]]:
    """Splits clip indices into ``(train, test)`` by their actor for one fold."""
    test = set(fold.test_actors)
    train_idx = [i for i, a in enumerate(actors) if a not in test]
    test_idx = [i for i, a in enumerate(actors) if a in test]
    return train_idx, test_idx
