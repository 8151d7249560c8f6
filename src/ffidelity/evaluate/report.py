"""Writes the outputs of ``ffidelity evaluate``: results.json, table.csv, curves.csv, curve plots, report.html and
config.json, each atomically, with the HTML report built by :class:`ffidelity.utils.report.HtmlReport`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from ffidelity.utils import atomic
from ffidelity.utils.report import HtmlReport, environment_info

if TYPE_CHECKING:
    from ffidelity.evaluate.config import Evaluation
    from ffidelity.metrics.result import FidelityResult


def entry(result: FidelityResult) -> dict[str, Any]:
    """The JSON record of one curve: Fid+/Fid- per sparsity, their standard errors and the areas."""
    rec = result.to_dict()
    rec.pop("params")
    rec.pop("method")
    frame = result.to_frame()
    rec["fid_plus_sem"] = frame["fid_plus_sem"].to_numpy()
    rec["fid_minus_sem"] = frame["fid_minus_sem"].to_numpy()
    return rec


def summary_table(ev: Evaluation) -> pd.DataFrame:
    """One row per (metric, explanation): the areas under the Fid+ and Fid- curves."""
    rows = [{"metric": m, "explanation": name, "auc_plus": r.auc_plus, "auc_minus": r.auc_minus,
             "base_score": float(r.base_scores.mean()), "n_inputs": int(r.base_scores.shape[0])}
            for m, by_name in ev.results.items() for name, r in by_name.items()]
    return pd.DataFrame(rows)


def curves_table(ev: Evaluation) -> pd.DataFrame:
    """One row per (metric, explanation, sparsity): Fid+ and Fid- with their standard errors."""
    frames = []
    for m, by_name in ev.results.items():
        for name, r in by_name.items():
            f = r.to_frame()
            f.insert(0, "explanation", name)
            f.insert(0, "metric", m)
            frames.append(f)
    return pd.concat(frames, ignore_index=True)


def results_json(ev: Evaluation) -> dict[str, Any]:
    from ffidelity.evaluate.config import METRIC_NAMES

    return {
        "config": ev.config.settings(),
        "model": {**ev.model.describe(), "n_classes": ev.n_classes},
        "inputs": ev.data.describe(),
        "targets": "labels" if ev.data.y is not None else "the model's predicted class",
        "accuracy": ev.accuracy,
        "metrics": {m: {"name": METRIC_NAMES[m], "params": next(iter(by_name.values())).params,
                        "evaluated_on": "fine-tuned model" if m == "ffid" else "model",
                        "results": {name: {"source": ev.sources[m][name], **entry(r)}
                                    for name, r in by_name.items()}}
                    for m, by_name in ev.results.items()},
        "timings_s": ev.timings,
        "environment": environment_info(),
    }


def write_outputs(ev: Evaluation, out: str | Path) -> None:
    """Writes every output of ``ev`` into the folder ``out``."""
    from ffidelity.evaluate.config import METRIC_NAMES

    out = Path(out)
    table, curves = summary_table(ev), curves_table(ev)
    with atomic.atomic_open(out / "table.csv", "w", encoding="utf-8", newline="") as fh:
        table.to_csv(fh, index=False)
    with atomic.atomic_open(out / "curves.csv", "w", encoding="utf-8", newline="") as fh:
        curves.to_csv(fh, index=False)
    atomic.write_json(out / "results.json", results_json(ev))
    atomic.write_json(out / "config.json", ev.config.settings())

    cfg = ev.config
    rep = HtmlReport(f"Faithfulness of explanations: {ev.model.path.name}", out)
    rep.paragraph(f"Model {ev.model.path} ({ev.model.kind}, {ev.n_classes} classes); inputs {ev.data.path} "
                  f"({ev.data.x.shape[0]} of shape {tuple(ev.data.x.shape[1:])}); target: "
                  f"{'the labels' if ev.data.y is not None else 'the predicted class'}.")
    acc = [f"{k}: {v:.3f}" for k, v in ev.accuracy.items() if v is not None]
    if acc:
        rep.paragraph("Accuracy on the inputs: " + ", ".join(acc) + ".")
    rep.paragraph("Fid+ (MoRF): the explanation removed; higher = more faithful. Fid- (LeRF): everything else "
                  "removed; lower = more faithful. Areas are under the curves over the sparsity grid. "
                  "F-Fidelity evaluates on a copy of the model fine-tuned on random masks, and explainers are "
                  "computed on that copy; attributions read from a file are used as they are.")
    rep.heading("Areas under the curves")
    rep.table(table.assign(metric=table["metric"].map(METRIC_NAMES)).set_index(["metric", "explanation"]),
              caption=f"N = {cfg.n_samples} samples (R-/F-Fidelity), alpha = {cfg.alpha}, beta = {cfg.beta}, "
                      f"mode {cfg.mode}, seed {cfg.seed}.")
    rep.heading("Curves")
    for m, by_name in ev.results.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for k, (name, r) in enumerate(by_name.items()):
            r.plot(ax=ax, label=name, color=f"C{k % 10}")  # one colour per explanation, Fid- dashed
        ax.set_title(METRIC_NAMES[m])
        rep.figure(fig, f"curves_{m}.png", f"{METRIC_NAMES[m]}: Fid+ (solid) and Fid- (dashed) per sparsity")
    rep.heading("Explanations")
    rep.bullets([f"{METRIC_NAMES[m]}, {name}: {src}" for m, by_name in ev.sources.items()
                 for name, src in by_name.items()])
    rep.heading("Settings")
    rep.code("\n".join(f"{k} = {v}" for k, v in cfg.settings().items()))
    rep.paragraph("Files: results.json (every number, settings, versions), table.csv (areas), curves.csv "
                  "(curves), config.json (the command's settings).", cls="small")
    rep.save("report.html")


__all__ = ["curves_table", "entry", "results_json", "summary_table", "write_outputs"]
