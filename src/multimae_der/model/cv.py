"""Cross-validation: folds x fusion strategies -> a table laid out like the paper's (UAR / WAR mean +- std).

Each (strategy, fold) trains into ``OUT/<strategy>/fold_<k>`` (folds numbered from 1, as the CLI's ``--fold``)
and is scored on its test fold; a finished cell
(its ``metrics.json`` exists) is reused, and an interrupted one resumes, so rerunning the same command
continues where it stopped. Outputs: ``folds.csv`` (one row per cell), ``results.csv``, ``results.md`` and
``results.png`` (bar chart).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from torch.utils.data import Dataset, Subset

from ffidelity.utils import atomic
from multimae_der.model.evaluate import evaluate
from multimae_der.model.fusion import FUSIONS, PAPER_ORDER, display_name
from multimae_der.model.run import METRICS_FILE
from multimae_der.model.train import TrainConfig, dataset_class_names, train

Fold = tuple[Sequence[int], Sequence[int]]


def check_folds(folds: Sequence[Fold], n: int) -> None:
    """Each fold: non-empty train and test index lists within ``0..n-1`` that do not overlap."""
    if not folds:
        raise ValueError("no folds given")
    for k, (tr, te) in enumerate(folds):
        tr, te = [int(i) for i in tr], [int(i) for i in te]
        if not tr or not te:
            raise ValueError(f"fold {k} has an empty train or test set")
        if min(tr + te) < 0 or max(tr + te) >= n:
            raise ValueError(f"fold {k} has indices outside 0..{n - 1}")
        if set(tr) & set(te):
            raise ValueError(f"fold {k}: {len(set(tr) & set(te))} clips are in both train and test")


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: UAR/WAR mean and sample std (ddof 1; NaN for one fold) in percent, in the paper's order."""
    g = rows.groupby("strategy")
    table = pd.DataFrame({
        "uar_mean": g["uar"].mean() * 100, "uar_std": g["uar"].std(ddof=1) * 100,
        "war_mean": g["war"].mean() * 100, "war_std": g["war"].std(ddof=1) * 100,
        "folds": g["fold"].count(),
    })
    order = [s for s in PAPER_ORDER if s in table.index] + [s for s in table.index if s not in PAPER_ORDER]
    return table.loc[order].reset_index()


def to_markdown(table: pd.DataFrame) -> str:
    """The summary table as Markdown: UAR and WAR as ``mean ± std`` (%) per strategy, with the fold count."""
    def pm(m: float, s: float) -> str:
        return f"{m:.2f} ± {s:.2f}" if pd.notna(s) else f"{m:.2f}"

    lines = ["| strategy | UAR (%) | WAR (%) | folds |", "|---|---|---|---|"]
    for r in table.itertuples():
        name = display_name(r.strategy)
        lines.append(f"| {name} | {pm(r.uar_mean, r.uar_std)} | {pm(r.war_mean, r.war_std)} | {r.folds} |")
    return "\n".join(lines) + "\n"


def plot_table(table: pd.DataFrame, path: str | Path, title: str = "") -> None:
    """Grouped bars of UAR and WAR per strategy with std error bars, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(table), 3.5))
    for off, col, label in ((-0.2, "uar", "UAR"), (0.2, "war", "WAR")):
        ax.bar(x + off, table[f"{col}_mean"], 0.4, yerr=table[f"{col}_std"].fillna(0), capsize=3, label=label)
    ax.set_xticks(x, [s.upper() for s in table["strategy"]])
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def cross_validate(dataset: Dataset, folds: Sequence[Fold], out_dir: str | Path, config: TrainConfig | None = None,
                   *, strategies: Sequence[str] = PAPER_ORDER, class_names: Sequence[str] | None = None,
                   preprocessing: Any = None, data_info: dict[str, Any] | None = None,
                   batch_size: int | None = None, progress: bool = True, title: str = "",
                   fold_numbers: Sequence[int] | None = None, command: str | None = None) -> pd.DataFrame:
    """Trains and scores every (strategy, fold); returns the summary table (also written to ``out_dir``).

    Args:
        dataset: all labelled clips; folds index into it.
        folds: ``[(train_indices, test_indices), ...]`` (e.g. subject-independent splits from the data side).
        out_dir: root of the per-cell run folders and the tables.
        config: training settings; its ``fusion`` is replaced by each strategy.
        strategies: fusion strategies (default: the six of the paper, then video-only and audio-only).
        preprocessing: the data's :class:`~multimae_der.data.prepare.PrepareConfig` (default: the dataset's).
        data_info: where the data came from (see :func:`multimae_der.model.train.train`); each cell records its fold
            number too, so ``multimae-der evaluate --run OUT/<strategy>/fold_<k>`` works on its own.
        fold_numbers: the number of each given fold (default 1, 2, ...), when only some folds are run.
        command: the command line that reproduces the table, written under it in ``results.md``.
    """
    config = config or TrainConfig()
    out = Path(out_dir)
    check_folds(folds, len(dataset))
    numbers = list(fold_numbers) if fold_numbers is not None else list(range(1, len(folds) + 1))
    if len(numbers) != len(folds):
        raise ValueError(f"{len(numbers)} fold numbers for {len(folds)} folds")
    for s in strategies:
        FUSIONS.get(s)
    names = list(class_names) if class_names is not None else dataset_class_names(dataset)
    rows: list[dict[str, Any]] = []
    for strategy in strategies:
        for k, (tr, te) in zip(numbers, folds, strict=True):
            run_dir = out / strategy.lower() / f"fold_{k}"
            metrics_file = run_dir / METRICS_FILE
            if metrics_file.is_file():
                m = json.loads(metrics_file.read_text(encoding="utf-8"))
            else:
                cfg = dataclasses.replace(config, fusion=strategy.lower())
                info = {**data_info, "fold": k} if data_info else None
                train(Subset(dataset, list(tr)), run_dir, cfg, class_names=names, preprocessing=preprocessing,
                      data_info=info, progress=progress)
                m = evaluate(run_dir, Subset(dataset, list(te)), batch_size=batch_size or config.batch_size,
                             progress=progress)
            rows.append({"strategy": strategy.lower(), "fold": k, "uar": m["uar"], "war": m["war"], "n_test": m["n"]})
    frame = pd.DataFrame(rows)
    table = summarize(frame)
    atomic.write_text(out / "folds.csv", frame.to_csv(index=False))
    atomic.write_text(out / "results.csv", table.to_csv(index=False, float_format="%.2f"))
    md = to_markdown(table)
    if command:
        md += f"\nFolds {', '.join(map(str, numbers))} (mean ± sample std over folds). Reproduce with:\n\n    {command}\n"
    atomic.write_text(out / "results.md", md)
    plot_table(table, out / "results.png", title=title)
    return table
