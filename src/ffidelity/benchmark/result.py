"""The controlled experiment's outcome: curves of every (seed, explainer, method, noise) and the scores
derived from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ffidelity.benchmark.config import METHOD_NAMES, SCORE_NAMES, SCORES, BenchmarkConfig
from ffidelity.benchmark.correlation import nanmean


@dataclass
class BenchmarkResult:
    """Curves of every (seed, explainer, method, noise) and the scores derived from them."""

    config: BenchmarkConfig
    sparsities: np.ndarray
    curves: pd.DataFrame  # one row per (seed, explainer, method, noise): fid_plus / fid_minus lists
    scores: pd.DataFrame  # one row per (seed, explainer, method): macro/micro scores and micro ranks
    baseline: pd.DataFrame  # noise-0 areas of each explainer and the random one, per method
    models: dict[str, float]  # clean / masked accuracies of the models used
    timings: dict[str, float]
    out_dir: Path | None = None

    def table(self) -> pd.DataFrame:
        """The paper's Table 1 layout: rows = scores, columns = (explainer, method), cells "mean ± std"."""
        rows = [("macro", s) for s in SCORES] + [("micro", s) for s in SCORES] + [("micro rank", "morf_vs_gt")]
        cols = []
        data: dict[tuple[str, str], list[str]] = {}
        for (explainer, method), g in self.scores.groupby(["explainer", "method"], sort=False):
            cols.append((explainer, METHOD_NAMES.get(method, method)))
            cells = []
            for kind, score in rows:
                col = f"{kind.replace(' ', '_')}_{score}"
                cells.append(_mean_std(g[col].to_numpy()))
            data[(explainer, METHOD_NAMES.get(method, method))] = cells
        frame = pd.DataFrame(data, index=[f"{k} {SCORE_NAMES[s]}" for k, s in rows])
        frame.columns = pd.MultiIndex.from_tuples(cols, names=["explainer", "method"])
        return frame

    def summary(self) -> dict[str, Any]:
        """Mean of every score over seeds, keyed by explainer and method."""
        out: dict[str, Any] = {}
        for (explainer, method), g in self.scores.groupby(["explainer", "method"], sort=False):
            out.setdefault(explainer, {})[method] = {
                c: nanmean(g[c].to_numpy()) for c in g.columns if c.startswith(("macro_", "micro_"))}
        return out

    def verdicts(self) -> list[str]:
        """One sentence per method: did it recover the ground-truth ranking (macro MoRF vs GT <= -0.9)?"""
        lines = []
        summ = self.summary()
        methods = list(dict.fromkeys(self.scores["method"]))
        for method in methods:
            parts, ok = [], []
            for explainer, by_method in summ.items():
                if method in by_method:
                    v = by_method[method]["macro_morf_vs_gt"]
                    ok.append(bool(np.isfinite(v) and v <= -0.9))
                    parts.append(f"{explainer} {_fmt(v)}")
            verdict = ("recovered" if all(ok) else "partly recovered" if any(ok) else "did not recover")
            lines.append(f"{METHOD_NAMES.get(method, method)} {verdict} the ground-truth ranking on the MoRF side "
                         f"(macro MoRF vs GT, ideal -1, threshold -0.9: {', '.join(parts)}).")
        return lines


def _fmt(v: float) -> str:
    return "-" if not np.isfinite(v) else f"{v:+.2f}"


def _mean_std(values: np.ndarray) -> str:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "-"
    return f"{v.mean():+.2f} ± {v.std():.2f}" if v.size > 1 else f"{v.mean():+.2f}"
