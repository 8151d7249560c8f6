"""``ClipDataset``: the prepared cache as a ``torch.utils.data.Dataset`` — the contract with the model code.

Each item is a dict:

* ``video``: uint8 tensor (T, 3, S, S) — T frames spread over the clip;
* ``audio``: uint8 tensor (N, 3, S, S) — N pictures of the paper's 50 %-overlapping audio windows;
* ``label``: int class index in the label set (RAVDESS 8 or 7, CREMA-D 6, IEMOCAP 4);
* ``actor``: str speaker id (``"01"``, ``"1001"``, ``"Ses01F"``); ``path``: str source video; ``emotion``: str;
* ``gt_video``: bool tensor (T, S, S) and ``gt_audio``: bool tensor (N, S, S), only when ground truth exists
  (SynthAV): the pixels that carry the class cue.

Normalisation (/255, mean/std) is the model's business; the cache stays uint8.

:func:`build_dataset` is the one entry point the model side uses: it prepares (caches) what is missing with a
:class:`~multimae_der.data.prepare.PrepareConfig` and returns the :class:`ClipDataset`; :func:`folds` gives the
subject-independent ``(train, test)`` index lists of a built dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from multimae_der.data.folds import Fold, fold_indices, subject_folds
from multimae_der.data.labels import LabelSet, get_label_set
from multimae_der.data.prepare import (
    CacheCorruptError,
    PrepareConfig,
    index_path,
    load_entry,
    prepare_dataset,
    preprocess_source,
    save_entry,
)
from multimae_der.data.sources import ClipSource, SkippedClipWarning, canonical_dataset

__all__ = ["CACHE_DIRNAME", "ClipDataset", "build_dataset", "default_cache", "fold_split", "folds",
           "prepare_config_of"]

#: the default cache folder inside a data set's root (hidden, so scanning the root never walks it)
CACHE_DIRNAME = ".multimae-cache"


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
        in_memory: keep every clip's arrays in RAM after its first read, so later epochs read no files (small
            sets: 64x64 clips take ~0.4 MB each; reading one from disk costs ~5 ms, a quarter of a tiny-model
            training step on 2 cores when 16 are read per step).
    """

    def __init__(self, cache: str | os.PathLike[str], config: PrepareConfig | None = None,
                 label_set: str | None = None, rebuild: bool = True, in_memory: bool = False) -> None:
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
        self.in_memory = in_memory
        self._memory: dict[int, dict[str, Any]] = {}
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
        data = self._memory.get(i)
        if data is not None:
            data = {k: v.copy() for k, v in data.items()}  # callers may change their item in place
        else:
            data = self._load(i)
            if self.in_memory:
                self._memory[i] = {k: v.copy() for k, v in data.items()
                                   if k in ("video", "audio", "gt_video", "gt_audio")}
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
        """The data set's subject-independent folds over the actors present (see :mod:`multimae_der.data.folds`)."""
        return subject_folds(self.dataset, self.actors, num_folds=num_folds, seed=seed)


def fold_split(dataset: ClipDataset | Sequence[str], fold: int, *, name: str | None = None,
               num_folds: int | None = None, seed: int = 0) -> tuple[list[int], list[int]]:
    """Train and test index lists of fold ``fold`` (0-based).

    Args:
        dataset: a :class:`ClipDataset`, or the per-clip actor ids (then ``name`` gives the data set).
        fold: which fold.
        name: data set name when ``dataset`` is a list of actors.
        num_folds, seed: see :func:`multimae_der.data.folds.subject_folds`.
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


# ------------------------------------------------------------------------------------ the model side's seam

def default_cache(root: str | os.PathLike[str]) -> Path:
    """Where prepared clips go when no cache is given: ``<root>/.multimae-cache`` when ``root`` is writable,
    else ``$XDG_CACHE_HOME/multimae-der/<hash of root>`` (``~/.cache/...``), so read-only data sets work."""
    root = Path(root).resolve()
    if os.access(root, os.W_OK):
        return root / CACHE_DIRNAME
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "multimae-der" / hashlib.sha1(str(root).encode()).hexdigest()[:12]


def prepare_config_of(dataset: Any) -> PrepareConfig | None:
    """The :class:`PrepareConfig` a dataset was prepared with (looking through ``Subset`` wrappers), or None."""
    while dataset is not None:
        config = getattr(dataset, "config", None)
        if isinstance(config, PrepareConfig):
            return config
        dataset = getattr(dataset, "dataset", None)
    return None


def build_dataset(name: str, root: str | os.PathLike[str], *, cache: str | os.PathLike[str] | None = None,
                  config: PrepareConfig | dict[str, Any] | None = None, label_set: str | None = None,
                  workers: int = 1, progress: bool = True, in_memory: bool = False) -> ClipDataset:
    """Prepares what is missing from the cache, then returns the data set's :class:`ClipDataset`.

    A rerun decodes nothing new (see :func:`~multimae_der.data.prepare.prepare_dataset`), so this is cheap once the
    cache is filled; undecodable files are skipped with one :class:`SkippedClipWarning` each.

    Args:
        name: ``ravdess``, ``cremad`` (``crema-d``) or ``iemocap``.
        root: the data set's folder.
        cache: the cache folder (default :func:`default_cache`).
        config: preprocessing settings (a ``PrepareConfig`` or its ``to_dict()``); the image size must be the
            model's.
        label_set: ``ravdess8`` / ``ravdess7`` / ``cremad6`` / ``iemocap4`` (default: the data set's own).
        workers, progress: preparation worker processes and progress bar.
        in_memory: keep clips in RAM after their first read (see :class:`ClipDataset`).

    Raises:
        ValueError: unknown data set or label set, no usable clip; FileNotFoundError: ``root`` is missing.
    """
    name = canonical_dataset(name)
    if label_set is not None:
        get_label_set(label_set)  # unknown names fail before any decoding
    if isinstance(config, dict):
        config = PrepareConfig.from_dict(config)
    config = config or PrepareConfig()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    cache = Path(cache) if cache is not None else default_cache(root)
    prepare_dataset(name, root, cache, config, workers=workers, progress=progress)
    return ClipDataset(cache, config=config, label_set=label_set, in_memory=in_memory)


def folds(name: str, data: ClipDataset | Sequence[str], *, num_folds: int | None = None,
          seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """The subject-independent folds of a built dataset as ``[(train indices, test indices), ...]``.

    Args:
        name: the data set (its protocol: RAVDESS actor groups, CREMA-D seeded speaker groups, IEMOCAP sessions).
        data: a :class:`ClipDataset` (or anything with per-clip ``actors``), or the per-clip actor ids.
        num_folds, seed: see :func:`multimae_der.data.folds.subject_folds` (small sets need ``num_folds``).
    """
    actors = list(getattr(data, "actors", data))
    return [fold_indices(actors, f) for f in subject_folds(canonical_dataset(name), actors, num_folds=num_folds,
                                                           seed=seed)]
