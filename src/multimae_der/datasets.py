"""``ClipDataset``: the prepared cache as a ``torch.utils.data.Dataset`` — the contract with the model code.

Each item is a dict:

* ``video``: uint8 tensor (T, 3, S, S) — T frames spread over the clip;
* ``audio``: uint8 tensor (N, 3, S, S) — N pictures of the paper's 50 %-overlapping audio windows;
* ``label``: int class index in the label set (RAVDESS 8 or 7, CREMA-D 6, IEMOCAP 4);
* ``actor``: str speaker id (``"01"``, ``"1001"``, ``"Ses01F"``); ``path``: str source video; ``emotion``: str;
* ``gt_video``: bool tensor (T, S, S) and ``gt_audio``: bool tensor (N, S, S), only when ground truth exists
  (SynthAV): the pixels that carry the class cue.

Normalisation (/255, mean/std) is the model's business; the cache stays uint8.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from multimae_der.folds import Fold, fold_indices, subject_folds
from multimae_der.labels import LabelSet, get_label_set
from multimae_der.prepare import (
    CacheCorruptError,
    PrepareConfig,
    index_path,
    load_entry,
    preprocess_source,
    save_entry,
)
from multimae_der.sources import ClipSource, SkippedClipWarning

__all__ = ["ClipDataset", "fold_split"]


def _find_index(cache: Path, config: PrepareConfig | None) -> Path:
    if config is not None:
        path = index_path(cache, config)
        if not path.is_file():
            raise FileNotFoundError(f"{cache} holds no clips prepared with this config (no {path.name}); "
                                    f"run `multimae-der prepare` first")
        return path
    found = sorted(cache.glob("index-*.json"))
    if not found:
        raise FileNotFoundError(f"{cache} is not a prepared cache (no index-*.json); run `multimae-der prepare`")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ValueError(f"{cache} holds clips prepared with several configs ({names}); pass config=...")
    return found[0]


class ClipDataset(Dataset):
    """Prepared clips read from a cache folder written by ``prepare_dataset`` / ``multimae-der prepare``.

    Args:
        cache: the cache folder.
        config: which preparation to read when the folder holds several (default: the only one).
        label_set: ``ravdess8`` / ``ravdess7`` / ``cremad6`` / ``iemocap4`` (default: the data set's own);
            clips whose emotion the set drops are left out.
        rebuild: rebuild a corrupt cache file from its source (with a warning) instead of failing.
    """

    def __init__(self, cache: str | os.PathLike[str], config: PrepareConfig | None = None,
                 label_set: str | None = None, rebuild: bool = True) -> None:
        self.cache = Path(cache)
        path = _find_index(self.cache, config)
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cache index {path} is unreadable ({exc}); rerun `multimae-der prepare`") from None
        self.dataset: str = index["dataset"]
        self.config = PrepareConfig.from_dict(index["config"])
        self.label_set: LabelSet = get_label_set(label_set or index["label_set"])
        self.rebuild = rebuild
        self.entries: list[dict[str, Any]] = []
        self.labels: list[int] = []
        for entry in index["entries"]:
            label = self.label_set.index(entry["emotion"])
            if label is not None:
                self.entries.append(entry)
                self.labels.append(label)
        if not self.entries:
            raise ValueError(f"no clip in {self.cache} belongs to label set {self.label_set.name}")
        self.actors: list[str] = [e["actor"] for e in self.entries]

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_set.classes

    @property
    def num_classes(self) -> int:
        return self.label_set.num_classes

    def __len__(self) -> int:
        return len(self.entries)

    def _load(self, i: int) -> dict[str, Any]:
        entry = self.entries[i]
        file = self.cache / entry["file"]
        try:
            return load_entry(file)
        except (CacheCorruptError, FileNotFoundError) as exc:
            if not self.rebuild:
                raise
            warnings.warn(f"rebuilding cache file {file}: {exc}", SkippedClipWarning, stacklevel=3)
            fields = {k: entry[k] for k in ("dataset", "clip_id", "path", "emotion", "actor", "audio_path", "start",
                                            "end", "info")}
            data = preprocess_source(ClipSource.from_dict(fields), self.config)
            save_entry(file, data)
            return data

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} clips")
        i %= len(self)
        data = self._load(i)
        item: dict[str, Any] = {
            "video": torch.from_numpy(np.ascontiguousarray(data["video"])),
            "audio": torch.from_numpy(np.ascontiguousarray(data["audio"])),
            "label": self.labels[i],
            "actor": self.actors[i],
            "path": self.entries[i]["path"],
            "emotion": self.entries[i]["emotion"],
        }
        if "gt_video" in data and "gt_audio" in data:
            item["gt_video"] = torch.from_numpy(data["gt_video"].astype(bool))
            item["gt_audio"] = torch.from_numpy(data["gt_audio"].astype(bool))
        return item

    def folds(self, *, num_folds: int | None = None, seed: int = 0) -> list[Fold]:
        """The data set's subject-independent folds over the actors present (see :mod:`multimae_der.folds`)."""
        return subject_folds(self.dataset, self.actors, num_folds=num_folds, seed=seed)


def fold_split(dataset: ClipDataset | Sequence[str], fold: int, *, name: str | None = None,
               num_folds: int | None = None, seed: int = 0) -> tuple[list[int], list[int]]:
    """Train and test index lists of fold ``fold`` (0-based).

    Args:
        dataset: a :class:`ClipDataset`, or the per-clip actor ids (then ``name`` gives the data set).
        fold: which fold.
        name: data set name when ``dataset`` is a list of actors.
        num_folds, seed: see :func:`multimae_der.folds.subject_folds`.
    """
    if isinstance(dataset, ClipDataset):
        actors, name = dataset.actors, dataset.dataset
    else:
        actors = list(dataset)
        if name is None:
            raise ValueError("fold_split on a list of actors needs name='ravdess'|'cremad'|'iemocap'")
    folds = subject_folds(name, actors, num_folds=num_folds, seed=seed)
    if not 0 <= fold < len(folds):
        raise ValueError(f"fold {fold} does not exist: {name} has {len(folds)} folds here (0-{len(folds) - 1})")
    return fold_indices(actors, folds[fold])
