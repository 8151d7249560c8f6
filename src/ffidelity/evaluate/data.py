"""A user's inputs, labels and attributions: ``.npz`` / ``.pt`` arrays or a folder of images, read safely.

``.npz`` files are read with ``allow_pickle=False`` and ``.pt`` files with ``torch.load(weights_only=True)``,
so no user file can run code. Images are read with Pillow into float tensors in [0, 1], channel-first. Every
problem is raised as a ``ValueError`` (or ``FileNotFoundError``) whose one-line message names the file.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ffidelity.evaluate.model import short_error

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


@dataclass
class UserData:
    """Inputs read from a user's file or folder.

    Attributes:
        x: float32 inputs (N, ...).
        y: int64 labels (N,), or ``None`` (the model's predictions are then used).
        attributions: attributions stored with the inputs (an ``attributions`` array of an ``.npz``), or ``None``.
        path: the file or folder the inputs came from.
        labels_path: the file or folder the labels came from (named in label errors).
        classes: class names of an image folder or of a labels CSV with names, index = label.
        files: the image files, in input order (image folders only).
    """

    x: torch.Tensor
    y: torch.Tensor | None
    attributions: torch.Tensor | None
    path: Path
    labels_path: Path | None = None
    classes: list[str] | None = None
    files: list[str] | None = None

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "n": int(self.x.shape[0]), "shape": list(self.x.shape[1:]),
                "labels": str(self.labels_path) if self.labels_path else None, "classes": self.classes}


def load_data(path: str | Path, *, labels: str | Path | None = None, image_size: int | None = None,
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> UserData:
    """Reads inputs (and labels) from an ``.npz``, a ``.pt`` or a folder of images.

    Args:
        path: an ``.npz`` with arrays ``x`` and optional ``y`` and ``attributions``; a ``.pt`` holding a dict with
            ``x`` and optional ``y``; or a folder of images, either with one subfolder per class (labels = the
            index of the folder name in sorted order) or flat (labels from ``labels``, else none).
        labels: a CSV with columns ``file,label`` (file names relative to the folder; labels integers or class
            names, names numbered in sorted order) for a flat image folder.
        image_size: resize images to ``image_size`` x ``image_size`` (image folders only).
        mean, std: per-channel normalisation ``(x - mean) / std`` (one value or one per channel).

    Raises:
        FileNotFoundError, ValueError: with a one-line message naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        data = _load_image_folder(path, Path(labels) if labels else None, image_size)
    else:
        if labels is not None:
            raise ValueError(f"{labels}: a labels CSV goes with a folder of images; {path} carries its labels as "
                             "its 'y' array")
        if image_size is not None:
            raise ValueError(f"{path}: --image-size resizes a folder of images; arrays are used as they are")
        data = _load_array_file(path)
    if mean is not None or std is not None:
        data.x = _normalise(data.x, mean, std, path)
    return data


def load_arrays(path: Path) -> dict[str, Any]:
    """The named arrays of an ``.npz`` (no pickles) or the tensors of a ``.pt`` (``weights_only=True``)."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except Exception as exc:  # BadZipFile, ValueError (object arrays), OSError ...
            raise ValueError(f"{path}: cannot read it as an .npz of plain arrays ({short_error(exc)})") from None
    if suffix in (".pt", ".pth"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError for anything but tensors and containers, or a damaged file
            raise ValueError(f"{path}: cannot read it as a .pt of tensors (loaded with weights_only=True, never "
                             f"unpickled; {short_error(exc)})") from None
        if isinstance(obj, torch.Tensor):
            return {"": obj}
        if isinstance(obj, dict):
            return {str(k): v for k, v in obj.items()}
        raise ValueError(f"{path}: expected a dict of tensors (or one tensor), got {type(obj).__name__}")
    raise ValueError(f"{path}: unsupported file type {suffix or '(none)'}; use an .npz, a .pt or a folder of images")


def _as_float(value: Any, path: Path, name: str) -> torch.Tensor:
    t = _tensor(value, path, name)
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{path}: '{name}' must hold real numbers, got dtype {t.dtype}")
    t = t.float()
    if not torch.isfinite(t).all():
        bad = (~torch.isfinite(t.reshape(t.shape[0], -1))).any(1).nonzero().flatten() if t.ndim else []
        raise ValueError(f"{path}: '{name}' contains NaN or inf values (rows {list(map(int, bad[:5]))})")
    return t


def _tensor(value: Any, path: Path, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.ascontiguousarray(value))
    raise ValueError(f"{path}: '{name}' must be a numeric array, got "
                     f"{getattr(value, 'dtype', type(value).__name__)}")


def _labels(value: Any, n: int, path: Path) -> torch.Tensor:
    y = _tensor(value, path, "y")
    if y.is_floating_point():
        if not torch.isfinite(y).all() or not torch.equal(y, y.round()):
            raise ValueError(f"{path}: 'y' must hold integer class indices, got non-integer values")
    elif y.dtype == torch.bool:
        raise ValueError(f"{path}: 'y' must hold integer class indices, got dtype bool")
    if tuple(y.shape) != (n,):
        raise ValueError(f"{path}: 'y' must have shape ({n},), one label per input, got {tuple(y.shape)}")
    return y.long()


def _load_array_file(path: Path) -> UserData:
    arrays = load_arrays(path)
    if "x" not in arrays:
        raise ValueError(f"{path}: no 'x' array of inputs (found: {', '.join(sorted(arrays)) or 'nothing'})")
    x = _as_float(arrays["x"], path, "x")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{path}: 'x' must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    y = _labels(arrays["y"], x.shape[0], path) if "y" in arrays else None
    attr = None
    if "attributions" in arrays:
        attr = _as_float(arrays["attributions"], path, "attributions")
        check_rows(attr, x.shape[0], path)
    return UserData(x=x, y=y, attributions=attr, path=path, labels_path=path if y is not None else None)


def _normalise(x: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None,
               path: Path) -> torch.Tensor:
    c = x.shape[1]
    m = torch.tensor(list(mean) if mean is not None else [0.0], dtype=torch.float32)
    s = torch.tensor(list(std) if std is not None else [1.0], dtype=torch.float32)
    for name, v in (("--mean", m), ("--std", s)):
        if v.numel() not in (1, c):
            raise ValueError(f"{path}: {name} needs 1 or {c} values (one per channel), got {v.numel()}")
    if not torch.isfinite(m).all() or not torch.isfinite(s).all() or (s <= 0).any():
        raise ValueError(f"{path}: --mean must be finite and --std positive, got {m.tolist()} and {s.tolist()}")
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - m.reshape(shape)) / s.reshape(shape)


# -- images -------------------------------------------------------------------------------------------------------
def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def _load_image_folder(folder: Path, labels: Path | None, image_size: int | None) -> UserData:
    if image_size is not None and image_size < 1:
        raise ValueError(f"--image-size must be a positive number of pixels, got {image_size}")
    classes: list[str] | None = None
    y: list[int] | None = None
    if labels is not None:
        files, y, classes = _read_labels_csv(labels, folder)
    else:
        top = _image_files(folder)
        class_dirs = [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")
                      and _image_files(d)]
        if top and class_dirs:
            raise ValueError(f"{folder}: holds both images and class subfolders ({class_dirs[0].name}/); use one "
                             "subfolder per class, or a flat folder of images with --labels")
        if class_dirs:
            classes = [d.name for d in class_dirs]
            files, y = [], []
            for k, d in enumerate(class_dirs):
                found = _image_files(d)
                files += found
                y += [k] * len(found)
        elif top:
            files = top
        else:
            raise ValueError(f"{folder}: no images found (extensions {', '.join(sorted(IMAGE_EXTENSIONS))}), "
                             "neither directly nor in class subfolders")
    x = _read_images(files, image_size, folder)
    return UserData(x=x, y=torch.tensor(y, dtype=torch.long) if y is not None else None, attributions=None,
                    path=folder, labels_path=labels if labels is not None else (folder if y is not None else None),
                    classes=classes, files=[str(f.relative_to(folder)) for f in files])


def _read_labels_csv(csv_path: Path, folder: Path) -> tuple[list[Path], list[int], list[str] | None]:
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: no such labels file")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = [f.strip().lower() for f in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{csv_path}: cannot read it as a CSV ({short_error(exc)})") from None
    if not rows or not {"file", "label"} <= set(fields):
        raise ValueError(f"{csv_path}: needs a header 'file,label' and one row per image, got columns "
                         f"{fields or 'none'}")
    rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k is not None} for r in rows]
    files: list[Path] = []
    for no, r in enumerate(rows, 2):
        f = folder / r["file"]
        if not r["file"] or not f.is_file():
            raise FileNotFoundError(f"{csv_path}: line {no} names {r['file']!r}, which is not a file in {folder}")
        files.append(f)
    raw = [r["label"] for r in rows]
    if any(not v for v in raw):
        raise ValueError(f"{csv_path}: line {2 + [bool(v) for v in raw].index(False)} has an empty label")
    try:
        return files, [int(v) for v in raw], None
    except ValueError:  # class names: numbered in sorted order, as class folders are
        classes = sorted(set(raw))
        return files, [classes.index(v) for v in raw], classes


def _read_images(files: Sequence[Path], image_size: int | None, folder: Path) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    images = []
    for f in files:
        try:
            with Image.open(f) as img:
                img.load()
                images.append(img.copy())
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ValueError(f"{f}: cannot read the image ({short_error(exc)})") from None
    grey = all(img.mode in _GREY_MODES for img in images)
    arrays = []
    size0 = None
    for f, img in zip(files, images, strict=True):
        img = img.convert("L" if grey else "RGB")
        if image_size is not None:
            img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
        size0 = size0 or img.size
        if img.size != size0:
            raise ValueError(f"{f}: image is {img.size[0]}x{img.size[1]} while {files[0].name} is "
                             f"{size0[0]}x{size0[1]}; pass --image-size to resize every image of {folder}")
        a = np.asarray(img, dtype=np.float32) / 255.0
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays))


# -- labels and attributions -----------------------------------------------------------------------------------
def check_labels(data: UserData, n_classes: int, model_path: str | Path) -> None:
    """Raises a ``ValueError`` naming the labels' file when a label is not a class of the model."""
    if data.y is None:
        return
    lo, hi = int(data.y.min()), int(data.y.max())
    if lo < 0 or hi >= n_classes:
        raise ValueError(f"{data.labels_path}: labels must lie in [0, {n_classes - 1}] because the model "
                         f"{model_path} has {n_classes} classes, got labels from {lo} to {hi}")


def check_rows(attributions: torch.Tensor, n: int, path: Path) -> None:
    if attributions.ndim < 1 or attributions.shape[0] != n:
        raise ValueError(f"{path}: attributions of shape {tuple(attributions.shape)} hold "
                         f"{attributions.shape[0] if attributions.ndim else 0} rows for {n} inputs")


def load_attributions(path: str | Path, n: int) -> torch.Tensor:
    """One array of attributions from an ``.npz`` or ``.pt``: the only array, or the one named
    ``attributions``; (N, ...) with one row per input, finite."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such attributions file")
    arrays = load_arrays(path)
    if len(arrays) == 1:
        (name, value), = arrays.items()
    elif "attributions" in arrays:
        name, value = "attributions", arrays["attributions"]
    else:
        raise ValueError(f"{path}: expected one array of attributions (or one named 'attributions'), found "
                         f"{len(arrays)}: {', '.join(sorted(arrays)) or 'none'}")
    attr = _as_float(value, path, name or "attributions")
    check_rows(attr, n, path)
    return attr


__all__ = ["IMAGE_EXTENSIONS", "UserData", "check_labels", "check_rows", "load_arrays", "load_attributions",
           "load_data"]
