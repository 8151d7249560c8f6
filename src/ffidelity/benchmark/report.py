"""Writes a benchmark's outputs: results.json, table.csv, curve plots and report.html."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ffidelity.utils import atomic
from ffidelity.utils.report import HtmlReport, environment_info

if TYPE_CHECKING:
    from ffidelity.benchmark.result import BenchmarkResult
    from ffidelity.benchmark.tasks import Task


def write_outputs(result: BenchmarkResult, task: Task) -> None:
    """Writes results.json, table.csv, the curve plots and report.html of ``result`` into its ``out_dir``."""
    from ffidelity.benchmark.config import METHOD_NAMES

    out = result.out_dir
    assert out is not None
    cfg = result.config
    table = result.table()
    with atomic.atomic_open(out / "table.csv", "w", encoding="utf-8") as fh:
        table.to_csv(fh)
    atomic.write_json(out / "results.json", {
        "config": asdict(cfg),
        "environment": environment_info(),
        "task": {"name": task.name, "n_train": len(task.y_train), "n_test_used": int(result.curves.shape[0] and
                 min(cfg.n_test or len(task.y_test), len(task.y_test))), "units": task.units.describe(),
                 **task.info},
        "sparsities": result.sparsities,
        "models": result.models,
        "timings_s": result.timings,
        "summary": result.summary(),
        "verdicts": result.verdicts(),
        "scores": result.scores.to_dict(orient="records"),
        "baseline": result.baseline.to_dict(orient="records"),
        "curves": result.curves.to_dict(orient="records"),
    })

    rep = HtmlReport(f"F-Fidelity controlled experiment: {task.name}", out)
    rep.paragraph(
        "Each base explainer is degraded by permuting a growing fraction of its scores (noise 0 to 1); the true "
        "faithfulness order is the noise order. A good evaluation method gives decreasing MoRF (Fid+) areas and "
        "increasing LeRF (Fid-) areas as noise grows: MoRF vs GT = -1, LeRF vs GT = +1, MoRF vs LeRF = -1, and micro "
        "rank 1. '-' marks an undefined correlation (constant values), never counted as 0.")
    rep.heading("Verdicts")
    rep.bullets(result.verdicts())
    rep.heading("Table (mean ± std over seeds)")
    rep.table(table, caption=f"{cfg.seeds} seed(s); sparsities {result.sparsities[0]:.2f}..{result.sparsities[-1]:.2f} "
                             f"({len(result.sparsities)} levels); N = {cfg.n_samples} samples; alpha+ = "
                             f"{cfg.alpha_plus}, alpha- = {cfg.alpha_minus}, beta = {cfg.beta}; mode {cfg.mode}.")
    rep.heading("Random-explainer baseline (noise 0 areas, mean over seeds)")
    base = result.baseline.copy()
    base["method"] = base["method"].map(lambda m: METHOD_NAMES.get(m, m))
    rep.table(base.set_index(["method", "explainer"]),
              caption="A faithful explainer has a larger MoRF area and a smaller LeRF area than the random one.")
    rep.bullets(_random_checks(result))
    rep.heading("Models")
    rep.bullets([f"{k.replace('_', ' ')}: {v:.3f}" for k, v in result.models.items()] +
                [f"masked = {cfg.beta:.0%} of the units removed at random"])
    rep.heading("Curves (seed 0)")
    for explainer in dict.fromkeys(result.curves["explainer"]):
        if explainer == "random":
            continue
        for method in dict.fromkeys(result.curves["method"]):
            fig = _curve_figure(result, explainer, method)
            rep.figure(fig, f"curves_{explainer}_{method}.png",
                       f"{explainer}, {METHOD_NAMES.get(method, method)}: MoRF (left) and LeRF (right) per noise")
    rep.heading("Timings")
    rep.bullets([f"{k}: {v:.1f}" for k, v in result.timings.items()])
    rep.paragraph(f"Files: results.json (every number, config, versions), table.csv. "
                  f"Config: {asdict(cfg)}", cls="small")
    rep.save("report.html")


def _random_checks(result: BenchmarkResult) -> list[str]:
    from ffidelity.benchmark.config import METHOD_NAMES

    lines = []
    base = result.baseline
    if "random" not in set(base["explainer"]):
        return lines
    for method, g in base.groupby("method", sort=False):
        g = g.set_index("explainer")
        rnd = g.loc["random"]
        others = g.drop(index="random")
        morf_ok = bool((others["morf_area"] > rnd["morf_area"]).all())
        lerf_ok = bool((others["lerf_area"] < rnd["lerf_area"]).all())
        lines.append(f"{METHOD_NAMES.get(method, method)}: random is "
                     f"{'at the bottom' if morf_ok else 'NOT at the bottom'} on MoRF and "
                     f"{'at the bottom' if lerf_ok else 'NOT at the bottom'} on LeRF.")
    return lines


def _curve_figure(result: BenchmarkResult, explainer: str, method: str) -> plt.Figure:
    c = result.curves
    g = c[(c["explainer"] == explainer) & (c["method"] == method) & (c["seed"] == c["seed"].min())]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharex=True)
    cmap = plt.get_cmap("viridis")
    noises = sorted(g["noise"].unique())
    for noise in noises:
        row = g[g["noise"] == noise].iloc[0]
        color = cmap(noise / max(max(noises), 1e-9))
        axes[0].plot(result.sparsities, row["fid_plus"], color=color, label=f"noise {noise:.1f}")
        axes[1].plot(result.sparsities, row["fid_minus"], color=color)
    axes[0].set_title("MoRF (Fid+): higher = more faithful")
    axes[1].set_title("LeRF (Fid-): lower = more faithful")
    for ax in axes:
        ax.set_xlabel("sparsity")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{explainer} / {method}")
    fig.tight_layout()
    return fig


__all__ = ["write_outputs"]
