"""Scoring a trained run on a labelled dataset: ``metrics.json`` (atomic) and a confusion-matrix PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ffidelity.utils import atomic
from ffidelity.utils.progress import progress_bar
from multimae_der.model.fusion import normalize
from multimae_der.model.metrics import classification_metrics, plot_confusion_matrix
from multimae_der.model.run import METRICS_FILE, Run, load_run


@torch.inference_mode()
def predict_logits(run: Run, dataset: Dataset, *, batch_size: int = 16, progress: bool = True,
                   num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """Logits ``(n, C)`` of every item, their labels (None when unlabelled) and paths, in dataset order."""
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=run.collate(),
                        num_workers=num_workers)
    model = run.model.eval()
    device = next(model.parameters()).device
    logits, labels, paths = [], [], []
    with progress_bar(len(dataset), "predicting", enabled=progress) as advance:
        for batch in loader:
            logits.append(model(pixel_values=normalize(batch["frames"].to(device))).logits.float().cpu())
            if "labels" in batch:
                labels.append(batch["labels"])
            paths += batch["paths"]
            advance(len(batch["paths"]))
    return torch.cat(logits), (torch.cat(labels) if len(labels) == len(logits) else None), paths


def evaluate(run_dir: str | Path, dataset: Dataset, *, out_dir: str | Path | None = None, batch_size: int = 16,
             progress: bool = True, title: str = "") -> dict[str, Any]:
    """Scores the run on ``dataset``; writes ``metrics.json`` and ``confusion_matrix.png``.

    Args:
        run_dir: a finished run folder.
        dataset: labelled contract items.
        out_dir: where to write (default: ``run_dir``).

    Returns:
        the metrics (see :func:`multimae_der.model.metrics.classification_metrics`) plus ``fusion`` and ``run``.
    """
    run = load_run(run_dir)
    logits, labels, _ = predict_logits(run, dataset, batch_size=batch_size, progress=progress)
    if labels is None:
        raise ValueError("the dataset has no labels to evaluate against")
    metrics = classification_metrics(logits, labels, len(run.class_names), run.class_names)
    metrics = {"run": str(run.path), "fusion": run.fusion["strategy"], **metrics}
    out = Path(out_dir) if out_dir is not None else run.path
    atomic.write_json(out / METRICS_FILE, metrics)
    plot_confusion_matrix(metrics["confusion_matrix"], run.class_names, out / "confusion_matrix.png",
                          title=title or f"{run.fusion['strategy'].upper()}: UAR {metrics['uar']:.3f}, "
                                         f"WAR {metrics['war']:.3f}")
    return metrics
