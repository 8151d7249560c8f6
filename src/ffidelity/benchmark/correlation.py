"""How a faithfulness metric is itself scored: Spearman agreement with the ground-truth ranking.

Given, for one base explainer and one evaluation method, the MoRF (Fid+) and LeRF (Fid-) curves of its degraded
copies (noise 0, 0.2, ..., 1.0: less noise = more faithful), the paper's scores are

* macro: the area under each copy's curve, then Spearman of the areas against the noise levels ("MoRF vs GT",
  ideal -1; "LeRF vs GT", ideal +1) and between the two areas ("MoRF vs LeRF", ideal -1);
* micro: the same Spearman at each sparsity level, averaged over levels;
* micro rank: at each level the methods are ranked by their correlation (best = 1), averaged over levels.

A correlation over constant values is undefined: it stays NaN (shown as "-"), never 0.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata, spearmanr

#: (score name, direction): +1 if higher is better, -1 if lower is better (ideal -1).
IDEAL = {"morf_vs_gt": -1.0, "lerf_vs_gt": 1.0, "morf_vs_lerf": -1.0}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho; NaN when either side is constant (undefined)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)


def area(curves: np.ndarray, sparsities: np.ndarray) -> np.ndarray:
    """Area under each row's curve over the sparsity grid (trapezoid rule)."""
    if len(sparsities) < 2:
        return curves[..., 0]
    return np.trapezoid(curves, sparsities, axis=-1)


def macro_scores(plus: np.ndarray, minus: np.ndarray, noises: np.ndarray, sparsities: np.ndarray
                 ) -> dict[str, float]:
    """Macro correlations from (n_noise, n_sparsity) MoRF and LeRF curves."""
    a_plus, a_minus = area(plus, sparsities), area(minus, sparsities)
    return {"morf_vs_gt": spearman(a_plus, noises), "lerf_vs_gt": spearman(a_minus, noises),
            "morf_vs_lerf": spearman(a_plus, a_minus)}


def micro_per_level(plus: np.ndarray, minus: np.ndarray, noises: np.ndarray) -> dict[str, np.ndarray]:
    """Spearman at every sparsity level, (n_sparsity,) arrays with NaN where undefined."""
    levels = plus.shape[1]
    return {
        "morf_vs_gt": np.array([spearman(plus[:, j], noises) for j in range(levels)]),
        "lerf_vs_gt": np.array([spearman(minus[:, j], noises) for j in range(levels)]),
        "morf_vs_lerf": np.array([spearman(plus[:, j], minus[:, j]) for j in range(levels)]),
    }


def nanmean(x: np.ndarray) -> float:
    """Mean of the defined values; NaN when none is defined."""
    x = np.asarray(x, float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def micro_ranks(per_method: dict[str, np.ndarray], score: str) -> dict[str, float]:
    """Average rank of each method over levels (1 = closest to the ideal); undefined counts as worst.

    Args:
        per_method: method -> (n_sparsity,) micro correlations for one score.
        score: the score's name, for its ideal direction.
    """
    methods = list(per_method)
    mat = np.stack([per_method[m] for m in methods])  # (n_methods, n_levels)
    badness = -IDEAL[score] * mat  # lower = better
    badness = np.where(np.isfinite(badness), badness, np.inf)
    ranks = np.stack([rankdata(badness[:, j], method="average") for j in range(mat.shape[1])], axis=1)
    return {m: float(ranks[i].mean()) for i, m in enumerate(methods)}
