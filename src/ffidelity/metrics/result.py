"""The result of one fidelity evaluation: per-input and mean Fid+/Fid- curves over sparsity."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ffidelity.utils import atomic

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


@dataclass
class FidelityResult:
    """Fid+ (MoRF: the explanation removed) and Fid- (LeRF: the rest removed) at every sparsity.

    Attributes:
        method: ``"fid"``, ``"rfid"`` or ``"ffid"``.
        sparsities: the explanation sizes, fractions of the units.
        base_scores: score of each unmasked input (accuracy indicator or probability), (N,).
        per_sample_plus: Fid+ of each input at each sparsity, (N, S).
        per_sample_minus: Fid- of each input at each sparsity, (N, S).
        params: the metric's configuration, saved with the numbers.
    """

    method: str
    sparsities: np.ndarray
    base_scores: np.ndarray
    per_sample_plus: np.ndarray
    per_sample_minus: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def fid_plus(self) -> np.ndarray:
        """Mean Fid+ over inputs at each sparsity; higher = more faithful."""
        return self.per_sample_plus.mean(axis=0)

    @property
    def fid_minus(self) -> np.ndarray:
        """Mean Fid- over inputs at each sparsity; lower = more faithful."""
        return self.per_sample_minus.mean(axis=0)

    @property
    def auc_plus(self) -> float:
        """Area under the Fid+ curve over the sparsity grid (trapezoid rule)."""
        return float(np.trapezoid(self.fid_plus, self.sparsities)) if len(self.sparsities) > 1 else float(
            self.fid_plus[0])

    @property
    def auc_minus(self) -> float:
        """Area under the Fid- curve over the sparsity grid (trapezoid rule)."""
        return float(np.trapezoid(self.fid_minus, self.sparsities)) if len(self.sparsities) > 1 else float(
            self.fid_minus[0])

    def per_sample_auc(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-input areas under the Fid+ and Fid- curves (their means are ``auc_plus``, ``auc_minus``), for
        standard errors and paired comparisons."""
        if len(self.sparsities) > 1:
            return (np.trapezoid(self.per_sample_plus, self.sparsities, axis=1),
                    np.trapezoid(self.per_sample_minus, self.sparsities, axis=1))
        return self.per_sample_plus[:, 0].copy(), self.per_sample_minus[:, 0].copy()

    def to_frame(self) -> pd.DataFrame:
        """A table with one row per sparsity: fid_plus, fid_minus and their standard errors."""
        import pandas as pd

        n = max(self.per_sample_plus.shape[0], 1)
        return pd.DataFrame({
            "sparsity": self.sparsities,
            "fid_plus": self.fid_plus,
            "fid_minus": self.fid_minus,
            "fid_plus_sem": self.per_sample_plus.std(axis=0, ddof=0) / np.sqrt(n),
            "fid_minus_sem": self.per_sample_minus.std(axis=0, ddof=0) / np.sqrt(n),
        })

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "params": self.params,
            "sparsities": self.sparsities,
            "fid_plus": self.fid_plus,
            "fid_minus": self.fid_minus,
            "auc_plus": self.auc_plus,
            "auc_minus": self.auc_minus,
            "base_score": float(self.base_scores.mean()),
            "n_inputs": int(self.base_scores.shape[0]),
        }

    def save(self, path: str | Path) -> None:
        """Writes the summary (not the per-input arrays) as JSON, atomically."""
        atomic.write_json(path, self.to_dict())

    def plot(self, ax: Any = None, label: str | None = None, color: Any = None) -> Figure:
        """Plots Fid+ and Fid- against sparsity (in one ``color`` when given); returns the figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(5, 3.5))
        else:
            fig = ax.figure
        name = label or self.method
        ax.plot(self.sparsities, self.fid_plus, "-o", ms=3, color=color, label=f"{name} Fid+ (MoRF)")
        ax.plot(self.sparsities, self.fid_minus, "--s", ms=3, color=color, label=f"{name} Fid- (LeRF)")
        ax.set_xlabel("sparsity (fraction of units in the explanation)")
        ax.set_ylabel(f"fidelity ({self.params.get('mode', 'acc')})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig
