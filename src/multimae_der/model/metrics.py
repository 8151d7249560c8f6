"""WAR, UAR, per-class recall and the confusion matrix, from torchmetrics.

UAR is the mean recall over the classes PRESENT in the targets. torchmetrics' ``average="macro"`` does not do
that: it drops a class only when it has no true positives, false positives and false negatives, so a class
that is absent from the targets but predicted counts as recall 0 (targets [0,0,1,1,1], predictions
[0,1,1,1,2]: macro 0.389, UAR 0.583). So UAR here averages torchmetrics' per-class recall over present classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassRecall


def classification_metrics(preds: torch.Tensor, targets: torch.Tensor, num_classes: int,
                           class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Metrics of predicted labels (or ``(n, C)`` scores) against integer targets.

    Returns:
        ``{"war", "uar", "n", "per_class_recall": {name: recall or None when absent}, "support": {name: n},
        "confusion_matrix": [[...]] (rows = true class, columns = predicted), "class_names": [...]}``.
    """
    preds, targets = torch.as_tensor(preds), torch.as_tensor(targets).long()
    if preds.dim() == 2:
        preds = preds.argmax(-1)
    preds = preds.long()
    if preds.shape != targets.shape or targets.dim() != 1:
        raise ValueError(f"predictions {tuple(preds.shape)} and targets {tuple(targets.shape)} must be two vectors "
                         "of equal length")
    if targets.numel() == 0:
        raise ValueError("no samples to score")
    for name, t in (("targets", targets), ("predictions", preds)):
        if t.min() < 0 or t.max() >= num_classes:
            raise ValueError(f"{name} hold labels outside 0..{num_classes - 1}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    war = MulticlassAccuracy(num_classes, average="micro")(preds, targets).item()
    recall = MulticlassRecall(num_classes, average=None)(preds, targets)
    support = torch.bincount(targets, minlength=num_classes)
    present = support > 0
    uar = recall[present].mean().item()
    cm = MulticlassConfusionMatrix(num_classes)(preds, targets)
    return {
        "war": war,
        "uar": uar,
        "n": int(targets.numel()),
        "classes_present": int(present.sum()),
        "per_class_recall": {n: (recall[i].item() if present[i] else None) for i, n in enumerate(names)},
        "support": {n: int(support[i]) for i, n in enumerate(names)},
        "confusion_matrix": cm.tolist(),
        "class_names": names,
    }


def plot_confusion_matrix(cm: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path,
                          title: str = "") -> None:
    """Writes a row-normalised confusion matrix (counts annotated) as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ffidelity.utils.atomic import atomic_path

    counts = np.asarray(cm, dtype=float)
    rows = counts.sum(1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.6 * n))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                    color="white" if frac[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="recall share")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def metrics_from_confusion(cm: torch.Tensor) -> dict[str, float]:
    """WAR and UAR (over classes present in the targets) of a confusion matrix (rows = true class)."""
    cm = torch.as_tensor(cm, dtype=torch.float64)
    support = cm.sum(1)
    total = support.sum()
    if total == 0:
        return {"war": float("nan"), "uar": float("nan")}
    present = support > 0
    recall = cm.diagonal()[present] / support[present]
    return {"war": (cm.diagonal().sum() / total).item(), "uar": recall.mean().item()}
