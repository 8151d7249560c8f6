"""Image data: scikit-learn's real digits (embedded) and CIFAR-10/100 from a user's folder.

CIFAR's python batches are pickles; they are read with an unpickler that only admits plain containers and
numpy arrays, so a planted pickle can never run code.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ffidelity.utils import safe_pickle


@dataclass
class ImageSplit:
    """A train/test split of images (N, C, H, W), standardised with the training set's statistics."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])


def digits(size: int = 32, test_size: float = 0.25, seed: int = 0) -> ImageSplit:
    """scikit-learn's 1,797 real 8x8 handwritten digits, resized to ``size`` x ``size``, one channel.

    The split is stratified and fixed by ``seed``; images are standardised (0 = the training mean), so a
    removed pixel (reference 0.0) is the mean grey.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.tensor(data.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed,
                                           stratify=data.target)
    return _standardised(x[idx_train], y[idx_train], x[idx_test], y[idx_test], [str(i) for i in range(10)])


def _standardised(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor,
                  classes: list[str]) -> ImageSplit:
    mean = xtr.mean(dim=(0, 2, 3), keepdim=True)
    std = xtr.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-6)
    return ImageSplit((xtr - mean) / std, ytr, (xte - mean) / std, yte, classes, mean[0], std[0])


def safe_unpickle(path: str | Path) -> Any:
    """Loads a CIFAR-style pickle without ever constructing arbitrary objects."""
    path = Path(path)
    try:
        return safe_pickle.loads(path.read_bytes(), encoding="bytes")
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"{path}: not a readable CIFAR batch ({type(exc).__name__}: {exc})") from None


def _key(d: dict, name: str) -> Any:
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    raise KeyError(name)


def cifar(root: str | Path, variant: int = 10, limit: int | None = None) -> ImageSplit:
    """CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) python batches at ``root``.

    ``root`` may be the extracted folder itself or its parent. ``limit`` keeps the first rows of each split.
    """
    if variant not in (10, 100):
        raise ValueError(f"variant must be 10 or 100, got {variant}")
    root = Path(root)
    folder = root / ("cifar-10-batches-py" if variant == 10 else "cifar-100-python")
    if not folder.is_dir():
        folder = root
    names = ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]) if variant == 10 else (["train"], ["test"])
    label_key = "labels" if variant == 10 else "fine_labels"

    def load(files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for name in files:
            path = folder / name
            if not path.exists():
                raise FileNotFoundError(f"{path}: missing CIFAR-{variant} batch file")
            d = safe_unpickle(path)
            try:
                data = np.asarray(_key(d, "data"), dtype=np.uint8)
                labels = np.asarray(_key(d, label_key), dtype=np.int64)
            except (KeyError, TypeError) as exc:
                raise ValueError(f"{path}: no {exc} entry; not a CIFAR-{variant} batch") from None
            if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
                raise ValueError(f"{path}: expected data (N, 3072) and N labels, got {data.shape} and "
                                 f"{labels.shape}")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(labels)
        x = torch.from_numpy(np.concatenate(xs)).float() / 255.0
        y = torch.from_numpy(np.concatenate(ys))
        return (x[:limit], y[:limit]) if limit else (x, y)

    xtr, ytr = load(names[0])
    xte, yte = load(names[1])
    meta = folder / ("batches.meta" if variant == 10 else "meta")
    classes = [str(i) for i in range(variant)]
    if meta.exists():
        m = safe_unpickle(meta)
        try:
            raw = _key(m, "label_names" if variant == 10 else "fine_label_names")
            classes = [c.decode() if isinstance(c, bytes) else str(c) for c in raw]
        except KeyError:
            pass
    return _standardised(xtr, ytr, xte, yte, classes)
