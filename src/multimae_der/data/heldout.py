"""Which clips a run trained on, so explanations and faithfulness are scored on clips it never saw.

``train`` records the ids of its training clips in ``config.json`` (``data.train_clips``); runs of
:func:`multimae_der.model.experiments.fusion_study` also record their held-out actors, and CLI runs their fold.
:func:`held_out_indices` finds the clips of a data set that a run did not train on; :func:`check_held_out`
refuses, with a message naming the clips, to score clips it trained on unless told to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["check_held_out", "clip_ids", "held_out_indices", "training_clip_ids"]

#: how many clip ids an error message names
_SHOW = 3


def _base(data: Any) -> tuple[Any, list[int]]:
    """The underlying data set and the indices into it (through nested ``Subset``s)."""
    indices = list(range(len(data)))
    while hasattr(data, "dataset") and hasattr(data, "indices"):
        indices = [int(data.indices[i]) for i in indices]
        data = data.dataset
    return data, indices


def clip_ids(data: Any, indices: Sequence[int] | None = None) -> list[str] | None:
    """Stable ids (the prepared clip's ``clip_id``, else its file name) of ``data[i]`` for ``i`` in ``indices``
    (all by default), read from the index without decoding; ``None`` when the data set has no such index."""
    base, mapping = _base(data)
    entries = getattr(base, "entries", None)
    if entries is None:
        return None
    chosen = mapping if indices is None else [mapping[int(i)] for i in indices]
    out = []
    for i in chosen:
        e = entries[i]
        out.append(str(e.get("clip_id") or Path(str(e.get("path", i))).name))
    return out


def training_clip_ids(train_data: Any) -> list[str] | None:
    """The ids to record for a run trained on ``train_data`` (a data set or a ``Subset`` of one)."""
    return clip_ids(train_data)


def _data(config: Mapping[str, Any]) -> dict[str, Any]:
    return dict(config.get("data") or {})


def held_out_indices(config: Mapping[str, Any], dataset: Any) -> list[int] | None:
    """Indices of ``dataset`` the run (its ``config.json`` as a dict) did not train on: by the recorded training
    clips, else by the recorded held-out actors; ``None`` when the run records neither (a fold is resolved by
    the caller, which knows how the folds were made)."""
    data = _data(config)
    trained = data.get("train_clips")
    if trained:
        ids = clip_ids(dataset)
        if ids is not None:
            seen = set(trained)
            return [i for i, c in enumerate(ids) if c not in seen]
    actors = data.get("held_out_actors")
    if actors and hasattr(dataset, "actors"):
        keep = {str(a) for a in actors}
        return [i for i, a in enumerate(dataset.actors) if str(a) in keep]
    return None


def check_held_out(config: Mapping[str, Any], dataset: Any, indices: Sequence[int], *, allow: bool = False,
                   flag: str = "--allow-train-clips") -> None:
    """Raises ``ValueError`` when any of ``indices`` is a clip the run trained on (unless ``allow``).

    Known by the recorded training clips, else by the held-out actors (a clip of another actor was trained on).
    A run that records neither cannot be checked and passes.
    """
    if allow or not indices:
        return
    data = _data(config)
    trained_ids = set(data.get("train_clips") or ())
    bad: list[str] = []
    if trained_ids:
        ids = clip_ids(dataset, indices)
        if ids is not None:
            bad = [c for c in ids if c in trained_ids]
    elif data.get("held_out_actors") and hasattr(dataset, "actors"):
        keep = {str(a) for a in data["held_out_actors"]}
        bad = [f"actor {dataset.actors[int(i)]} clip {int(i)}" for i in indices
               if str(dataset.actors[int(i)]) not in keep]
    if bad:
        shown = ", ".join(bad[:_SHOW]) + (" ..." if len(bad) > _SHOW else "")
        raise ValueError(f"{len(bad)} of the {len(indices)} clips to score were used to train this run ({shown}); "
                         f"scores on them say little about the model. Use its held-out clips (the default), or "
                         f"pass {flag} to score them anyway")
