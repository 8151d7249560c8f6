"""Time-series data: synthetic sets with planted ground truth, and PAM / Boiler as prepared by TimeX.

Every set is (N, T, F) float inputs with class labels. The synthetic sets follow the TimeX benchmarks (Queen et
al., *Encoding Time-Series Explanations through Self-Supervised Model Behavior Consistency*, NeurIPS 2023):

* ``seqcomb``: SeqComb-UV-like. Noise with two planted shapes (a rising or falling ramp with a wiggle, 10-19
  steps long); the class is the combination: 0 none, 1 two falling, 2 two rising, 3 one of each.
* ``freqshapes``: FreqShapes-like. Three-step spikes repeated every 10 or 17 steps, pointing up or down; the
  class is (direction, period).

Ground truth (``gt_*``, (N, T) bool) marks the planted time steps; a set is fully determined by its seed.

Real sets are read from the files TimeX's preprocessing uses, never with code-running loaders:

* PAM (PAMAP2 as prepared by Raindrop and used by TimeX): ``processed_data/PTdict_list.npy`` (N, 600, 17),
  ``processed_data/arr_outcomes.npy`` (label in the last column) and ``splits/PAMAP2_split_{k}.npy`` (train,
  val and test index arrays). Numeric arrays load with ``allow_pickle=False``; the split file, a numpy object
  array, goes through an unpickler that admits only numpy arrays.
* Boiler: ``xfull.pt`` (T=36, N, F), ``yfull.pt`` (N,) and ``split={k}.pt`` (train, val, test indices), all
  torch-saved tensors read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ffidelity.utils import safe_pickle


@dataclass
class SeqSplit:
    """A train/test split of (N, T, F) sequences.

    Attributes:
        x_train, y_train, x_test, y_test: inputs and class labels.
        num_classes: number of classes.
        gt_train, gt_test: (N, T) bool masks of the truly relevant steps (synthetic sets), else ``None``.
        x_val, y_val: a validation split when the source defines one.
        info: provenance (source, shapes, normalisation).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    gt_train: torch.Tensor | None = None
    gt_test: torch.Tensor | None = None
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_features(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def length(self) -> int:
        return int(self.x_train.shape[1])


def pad_sequences(seqs: Sequence[torch.Tensor], pad_value: float = 0.0) -> torch.Tensor:
    """Stacks sequences of different lengths, each (T_i, F) or (T_i,), into one (B, T_max, F) tensor.

    Padded steps hold ``pad_value`` in every feature; pass the same value to ``SequenceUnits(pad_value=...)``
    (and to the sequence models) so that padding is never ranked, removed or read. Pick a value no real step
    takes in every feature at once.
    """
    if len(seqs) == 0:
        raise ValueError("pad_sequences got no sequences")
    items = [torch.as_tensor(s) for s in seqs]
    items = [s[:, None] if s.ndim == 1 else s for s in items]
    bad = [i for i, s in enumerate(items) if s.ndim != 2]
    if bad:
        raise ValueError(f"every sequence must be (T, F) or (T,); sequences {bad[:5]} have other shapes")
    feats = {int(s.shape[1]) for s in items}
    if len(feats) != 1:
        raise ValueError(f"sequences disagree on their number of features: {sorted(feats)}")
    return torch.nn.utils.rnn.pad_sequence(items, batch_first=True, padding_value=float(pad_value))


# -- synthetic sets -----------------------------------------------------------------------------------------------
def _balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    return y


def _ramp(length: int, rising: bool, height: float, rng: np.random.Generator) -> np.ndarray:
    """A straight ramp from -height to +height (or back) with a small sinusoidal wiggle, as in SeqComb."""
    x = np.arange(length) - length // 2
    slope = 2 * height / length * (1 if rising else -1)
    freq = rng.poisson(10)
    return slope * x + 0.3 * np.sin(freq * x)


def seqcomb(n_train: int = 1000, n_test: int = 200, length: int = 100, noise: float = 0.5, height: float = 2.5,
            seed: int = 0) -> SeqSplit:
    """SeqComb-UV-like: univariate noise with two planted ramps; the class is their combination.

    Class 0 has no shapes (its ground truth is empty), class 1 two falling ramps, class 2 two rising ramps,
    class 3 one of each in random order. One ramp lies in each half of the sequence, 10-19 steps long.

    Args:
        n_train, n_test: split sizes (classes balanced).
        length: time steps T (at least 40).
        noise: standard deviation of the Gaussian background.
        height: a ramp goes from -height to +height.
        seed: the set is a function of the seed.
    """
    if length < 40:
        raise ValueError(f"seqcomb needs length >= 40 for two 10-19 step shapes, got {length}")
    rng = np.random.default_rng(seed)
    kinds = {1: (False, False), 2: (True, True), 3: (True, False)}

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = _balanced_labels(n, 4, rng)
        x = rng.normal(0.0, noise, size=(n, length, 1))
        gt = np.zeros((n, length), dtype=bool)
        half = length // 2
        for i, c in enumerate(y):
            if c == 0:
                continue
            rising = list(kinds[int(c)])
            rng.shuffle(rising)
            for h, up in enumerate(rising):
                seg = int(rng.integers(10, 20))
                start = h * half + int(rng.integers(0, half - seg + 1))
                x[i, start : start + seg, 0] = _ramp(seg, bool(up), height, rng)
                gt[i, start : start + seg] = True
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long), torch.from_numpy(gt)

    xtr, ytr, gtr = make(n_train)
    xte, yte, gte = make(n_test)
    return SeqSplit(xtr, ytr, xte, yte, num_classes=4, gt_train=gtr, gt_test=gte,
                    info={"source": "synthetic SeqComb-UV-like", "length": length, "noise": noise, "seed": seed})


def freqshapes(n_train: int = 1000, n_test: int = 200, length: int = 50, noise: float = 0.25,
               seed: int = 0) -> SeqSplit:
    """FreqShapes-like: three-step spikes every 10 or 17 steps, pointing down or up; class = (shape, period).

    Class 0: down every 10 steps, 1: up every 10, 2: down every 17, 3: up every 17. Spikes start at a random
    offset; only whole spikes are planted. Ground truth: the spike steps.

    Args:
        n_train, n_test: split sizes (classes balanced).
        length: time steps T (at least 20).
        noise: standard deviation of the Gaussian background.
        seed: the set is a function of the seed.
    """
    if length < 20:
        raise ValueError(f"freqshapes needs length >= 20, got {length}")
    rng = np.random.default_rng(seed)
    shape_period = {0: (-1, 10), 1: (1, 10), 2: (-1, 17), 3: (1, 17)}
    bump = -0.25 * np.arange(-1, 2) ** 2 + 2  # 1.75, 2, 1.75

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = _balanced_labels(n, 4, rng)
        x = np.zeros((n, length, 1))
        gt = np.zeros((n, length), dtype=bool)
        for i, c in enumerate(y):
            sign, period = shape_period[int(c)]
            start = int(rng.integers(0, length - period))
            for centre in range(start, length, period):
                lo, hi = centre - 1, centre + 2
                if lo >= 0 and hi <= length:
                    x[i, lo:hi, 0] = sign * bump
                    gt[i, lo:hi] = True
        x += rng.normal(0.0, noise, size=x.shape)
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long), torch.from_numpy(gt)

    xtr, ytr, gtr = make(n_train)
    xte, yte, gte = make(n_test)
    return SeqSplit(xtr, ytr, xte, yte, num_classes=4, gt_train=gtr, gt_test=gte,
                    info={"source": "synthetic FreqShapes-like", "length": length, "noise": noise, "seed": seed})


# -- safe file readers ----------------------------------------------------------------------------------------------
def load_tensor_file(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` with clear errors: missing file, or anything but plain tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a plain torch-saved tensor file; refusing to unpickle arbitrary objects "
                         f"({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a readable torch-saved file ({type(exc).__name__}: {exc})") from None


def _as_tensor(obj: Any, path: Path, what: str) -> torch.Tensor:
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        obj = torch.from_numpy(obj)
    if not isinstance(obj, torch.Tensor):
        raise ValueError(f"{path}: expected {what} as a tensor, found {type(obj).__name__}")
    return obj


def load_npy(path: str | Path, allow_index_objects: bool = False) -> np.ndarray:
    """Reads a ``.npy`` file without running code.

    Numeric arrays load with ``allow_pickle=False``. With ``allow_index_objects`` an object array (how numpy
    saves a list of index arrays of different lengths) is unpickled by an unpickler that admits numpy arrays
    only.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    raw = path.read_bytes()
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        shape, _fortran, dtype = (np.lib.format.read_array_header_1_0(stream) if version == (1, 0)
                                  else np.lib.format.read_array_header_2_0(stream))
    except (ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a .npy array file ({exc})") from None
    if not dtype.hasobject:
        try:
            return np.load(io.BytesIO(raw), allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            raise ValueError(f"{path}: unreadable .npy array ({exc})") from None
    if not allow_index_objects:
        raise ValueError(f"{path}: holds Python objects (dtype object, shape {shape}), not a numeric array; "
                         "refusing to unpickle it")
    try:
        arr = safe_pickle.loads(stream)
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"{path}: not an array of index arrays ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{path}: expected a numpy array, found {type(arr).__name__}")
    return arr


def _three_index_arrays(obj: Any, path: Path, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) integer index arrays from a split file's content, checked against N rows."""
    try:
        parts = [np.asarray(p.numpy() if isinstance(p, torch.Tensor) else p) for p in obj]
    except TypeError:
        raise ValueError(f"{path}: expected (train, val, test) index arrays, found {type(obj).__name__}") from None
    if len(parts) != 3:
        raise ValueError(f"{path}: expected 3 index arrays (train, val, test), found {len(parts)}")
    out = []
    for name, p in zip(("train", "val", "test"), parts, strict=True):
        if p.dtype == object or not (np.issubdtype(p.dtype, np.integer) or np.issubdtype(p.dtype, np.bool_)):
            raise ValueError(f"{path}: the {name} indices are not integers (dtype {p.dtype})")
        p = np.flatnonzero(p) if p.dtype == np.bool_ else p.astype(np.int64).reshape(-1)
        if p.size and (p.min() < 0 or p.max() >= n):
            raise ValueError(f"{path}: {name} indices range {p.min()}..{p.max()} outside the {n} samples")
        out.append(p)
    return out[0], out[1], out[2]


def _limit(x: torch.Tensor, limit: int | None) -> torch.Tensor:
    return x[:limit] if limit else x


# -- PAM ------------------------------------------------------------------------------------------------------------
def pam(root: str | Path, split: int = 1, limit: int | None = None, stride: int = 1) -> SeqSplit:
    """PAMAP2 activity recognition (8 classes, 17 sensors, 600 steps) as prepared for Raindrop / TimeX.

    ``root`` is the ``PAMAP2data`` folder or its parent. Values are standardised per sensor with the training
    split's statistics over observed (> 0) readings and missing readings set to 0, as TimeX's
    ``process_PAM`` does (its ``gethalf`` view: the values without the observation-mask channels).

    Args:
        root: data folder.
        split: which of the five published splits (``PAMAP2_split_{split}.npy``).
        limit: keep the first ``limit`` rows of each split (quick runs).
        stride: keep every ``stride``-th time step (quick runs on a CPU).
    """
    root = Path(root)
    folder = root / "PAMAP2data" if (root / "PAMAP2data").is_dir() else root
    data_path = folder / "processed_data" / "PTdict_list.npy"
    label_path = folder / "processed_data" / "arr_outcomes.npy"
    split_path = folder / "splits" / f"PAMAP2_split_{split}.npy"
    for p in (data_path, label_path, split_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing PAM file (expected the TimeX/Raindrop PAMAP2data layout: "
                                    "processed_data/PTdict_list.npy, processed_data/arr_outcomes.npy, "
                                    "splits/PAMAP2_split_<k>.npy)")
    x = load_npy(data_path)
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{data_path}: expected a numeric (N, T, F) array, got dtype {x.dtype} shape {x.shape}")
    outcomes = load_npy(label_path)
    if outcomes.ndim == 1:
        outcomes = outcomes[:, None]
    if outcomes.ndim != 2 or outcomes.shape[0] != x.shape[0] or not np.issubdtype(outcomes.dtype, np.number):
        raise ValueError(f"{label_path}: expected numeric (N, k) outcomes for N = {x.shape[0]} samples, got "
                         f"dtype {outcomes.dtype} shape {outcomes.shape}")
    y = outcomes[:, -1].astype(np.int64)
    idx_train, idx_val, idx_test = _three_index_arrays(load_npy(split_path, allow_index_objects=True),
                                                       split_path, x.shape[0])
    x = x.astype(np.float32)
    train = x[idx_train].reshape(-1, x.shape[2])
    observed = train > 0
    count = observed.sum(0).clip(min=1)
    mean = np.where(observed, train, 0).sum(0) / count
    std = np.sqrt(np.where(observed, (train - mean) ** 2, 0).sum(0) / count).clip(min=1e-7)
    x = np.where(x > 0, (x - mean) / std, 0.0).astype(np.float32)
    xt = torch.from_numpy(x[:, :: max(1, int(stride))].copy())
    yt = torch.from_numpy(y)

    def part(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(idx)
        return _limit(xt[t], limit), _limit(yt[t], limit)

    (xtr, ytr), (xva, yva), (xte, yte) = part(idx_train), part(idx_val), part(idx_test)
    return SeqSplit(xtr, ytr, xte, yte, num_classes=int(y.max()) + 1, x_val=xva, y_val=yva,
                    info={"source": "PAM (PAMAP2, TimeX/Raindrop layout)", "root": str(folder), "split": split,
                          "stride": stride, "normalisation": "per-sensor z-score over observed values"})


# -- Boiler -----------------------------------------------------------------------------------------------------------
def boiler(root: str | Path, split: int = 1, limit: int | None = None, standardize: bool = True) -> SeqSplit:
    """Boiler fault detection (2 classes, 36 steps, 20 sensors) from TimeX's torch-saved tensors.

    ``root`` holds ``xfull.pt`` ((T, N, F), TimeX's time-first layout), ``yfull.pt`` ((N,) labels) and
    ``split={split}.pt`` ((train, val, test) index tensors). All are read with ``torch.load(weights_only=True)``.

    Args:
        root: data folder (or its parent holding ``Boiler/``).
        split: which split file.
        limit: keep the first ``limit`` rows of each split (quick runs).
        standardize: z-score each sensor with the training split's mean and std, so that a removed step
            (reference 0) is the training mean.
    """
    root = Path(root)
    folder = root / "Boiler" if (root / "Boiler").is_dir() else root
    x_path, y_path, s_path = folder / "xfull.pt", folder / "yfull.pt", folder / f"split={split}.pt"
    x = _as_tensor(load_tensor_file(x_path), x_path, "the (T, N, F) inputs")
    y = _as_tensor(load_tensor_file(y_path), y_path, "the (N,) labels")
    if x.ndim != 3 or x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"{x_path}: expected a real (T, N, F) tensor, got dtype {x.dtype} shape {tuple(x.shape)}")
    x = x.float().permute(1, 0, 2).contiguous()  # (N, T, F)
    y = y.reshape(-1)
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise ValueError(f"{y_path}: labels must be integers, found fractional values")
    y = y.long()
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{y_path}: {y.shape[0]} labels for {x.shape[0]} sequences in {x_path}")
    idx_train, idx_val, idx_test = _three_index_arrays(load_tensor_file(s_path), s_path, x.shape[0])
    if standardize:
        train = x[torch.from_numpy(idx_train)]
        mean = train.mean(dim=(0, 1), keepdim=True)
        std = train.std(dim=(0, 1), keepdim=True).clamp(min=1e-6)
        x = (x - mean) / std

    def part(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(idx)
        return _limit(x[t], limit), _limit(y[t], limit)

    (xtr, ytr), (xva, yva), (xte, yte) = part(idx_train), part(idx_val), part(idx_test)
    return SeqSplit(xtr, ytr, xte, yte, num_classes=max(2, int(y.max()) + 1), x_val=xva, y_val=yva,
                    info={"source": "Boiler (TimeX torch tensors)", "root": str(folder), "split": split,
                          "standardize": standardize})
