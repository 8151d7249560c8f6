"""The web app's faithfulness panel: :func:`load_faithfulness` / :func:`faithfulness_markdown` read the F-Fidelity
results of ``multimae-der faithfulness`` for THIS model (checked by the weights' digest) or say that none were
computed and how to."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multimae_der.explain.attributions import resolve_explainer
from multimae_der.model.run import Run

_METHODS = {"ffid": "F-Fidelity", "rfid": "R-Fidelity", "fid": "Fidelity"}


# -- faithfulness results --------------------------------------------------------------------------------------
@dataclass
class FaithfulnessView:
    """The F-Fidelity results shown beside the explanation.

    Attributes:
        folder: the results folder used (``None``: nothing found for this model).
        rows: per (method, explainer): ``morf_area`` (area under the Fid+ curve: removing the explainer's top
            tubes; higher = more faithful) and ``lerf_area`` (Fid-: keeping only them; lower = more faithful).
        note: where the numbers come from, or why there are none and the command that computes them.
    """

    folder: Path | None
    rows: list[dict[str, Any]]
    note: str

    def explainers(self) -> list[str]:
        return list(dict.fromkeys(r["explainer"] for r in self.rows))


def faithfulness_command(run_dir: Path) -> str:
    """The command that computes F-Fidelity results the app picks up."""
    return f"multimae-der faithfulness --run {run_dir} --out {run_dir / 'faithfulness'} --quick"


def faithfulness_candidates(run_dir: Path) -> list[Path]:
    """Folders searched when none is given: ``RUN/faithfulness``, ``RUN``, and the demo's layout
    (``<out>/emotion/runs/<strategy>`` is evaluated in ``<out>/explain/faithfulness``)."""
    found = [run_dir / "faithfulness", run_dir]
    if run_dir.parent.name == "runs" and len(run_dir.parents) >= 3:
        found.append(run_dir.parents[2] / "explain" / "faithfulness")
    return found


def _canonical(name: str) -> str:
    try:
        return resolve_explainer(name)
    except ValueError:
        return name


def load_faithfulness(run: Run, folder: str | os.PathLike[str] | None = None, *, digest: str | None = None
                      ) -> FaithfulnessView:
    """Reads ``results.json`` of ``multimae-der faithfulness`` from ``folder`` (or the default candidates).

    A folder counts only when it evaluated THIS model: its ``models/original/source.json`` records the SHA-1 of
    the weights (compared with ``digest``, computed when not given). Never invents numbers: without results
    the view is empty and its note says how to compute them.
    """
    import json

    from multimae_der.explain.faithfulness import SOURCE_FILE, model_digest

    folders = [Path(folder)] if folder is not None else faithfulness_candidates(run.path)
    command = faithfulness_command(run.path)
    reasons: list[str] = []
    for f in folders:
        results = f / "results.json"
        if not results.is_file():
            continue
        try:
            saved = json.loads(results.read_text(encoding="utf-8"))
            source = json.loads((f / SOURCE_FILE).read_text(encoding="utf-8")) if (f / SOURCE_FILE).is_file() \
                else None
        except (OSError, json.JSONDecodeError) as exc:
            reasons.append(f"{results} cannot be read ({exc})")
            continue
        if source is None:
            reasons.append(f"{f} does not record which model it evaluated")
            continue
        digest = digest or model_digest(run)
        if source.get("sha1") != digest:
            reasons.append(f"{f} holds results of another model ({source.get('run')})")
            continue
        summary = saved.get("summary") or {}
        rows = []
        for r in saved.get("baseline") or []:
            e, m = str(r.get("explainer")), str(r.get("method"))
            if m not in _METHODS:
                continue
            gt = (summary.get(e) or {}).get(m, {}).get("macro_morf_vs_gt")
            rows.append({"explainer": _canonical(e), "method": m, "morf_area": r.get("morf_area"),
                         "lerf_area": r.get("lerf_area"), "macro_morf_vs_gt": gt,
                         "gap_se": _gap_to_random(saved.get("curves") or [], e, m)})
        cfg = saved.get("config") or {}
        task = saved.get("task") or {}
        removal = {"drop": "tokens dropped from the encoder's sequence",
                   "fill": "tubes filled with the mean colour"}.get(str(task.get("removal", "fill")), "?")
        note = (f"From `{results}`: {task.get('n_test_used', '?')} held-out test clips, removal: {removal}, "
                f"N = {cfg.get('n_samples', '?')} samples, beta = {cfg.get('beta', '?')}, "
                f"{len(saved.get('sparsities') or [])} sparsities, mode {cfg.get('mode', '?')}.")
        return FaithfulnessView(f, rows, note)
    why = ("; ".join(reasons) + ". ") if reasons else ""
    note = (f"No F-Fidelity results were computed for this model. {why}Compute them with "
            f"`{command}` (minutes on a CPU); this page reads them on the next analysis.")
    if folder is not None and not reasons:
        note = f"`{folder}` holds no results.json. " + note
    return FaithfulnessView(None, [], note)


def _gap_to_random(curves: list[dict[str, Any]], explainer: str, method: str) -> float | None:
    """How many standard errors the explainer's MoRF area stands above the random explainer's (paired over the
    test clips and seeds, noise 0); ``None`` when the results hold no per-clip areas."""
    def per_input(name: str) -> dict[int, np.ndarray]:
        return {int(c["seed"]): np.asarray(c["auc_plus_per_input"], float) for c in curves
                if c.get("explainer") == name and c.get("method") == method and float(c.get("noise", 0)) == 0.0
                and c.get("auc_plus_per_input") is not None}

    mine, rand = per_input(explainer), per_input("random")
    seeds = sorted(set(mine) & set(rand))
    if explainer == "random" or not seeds:
        return None
    from multimae_der.explain.faithfulness_task import paired_signal

    d = np.concatenate([mine[s] - rand[s] for s in seeds])
    _, _, signal = paired_signal(d)
    return signal if np.isfinite(signal) else None


def _num(v: Any) -> str:
    return "-" if v is None or not np.isfinite(float(v)) else f"{float(v):.3g}"


def faithfulness_markdown(view: FaithfulnessView, explainer: str | None = None) -> str:
    """A Markdown table: one row per evaluated explainer (the chosen one marked), Fid+ / Fid- areas per method."""
    if not view.rows:
        return view.note
    chosen = _canonical(explainer) if explainer else None
    methods = [m for m in _METHODS if any(r["method"] == m for r in view.rows)]
    by = {(r["explainer"], r["method"]): r for r in view.rows}
    head = ["explainer"]
    for m in methods:
        head += [f"{_METHODS[m]}+ area (higher = more faithful)", f"{_METHODS[m]}- area (lower = more faithful)",
                 f"{_METHODS[m]}+ above random (standard errors)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in view.explainers():
        cells = [f"**{e}** (shown)" if e == chosen else e]
        for m in methods:
            r = by.get((e, m), {})
            gap = r.get("gap_se")
            cells += [_num(r.get("morf_area")), _num(r.get("lerf_area")), "-" if gap is None else f"{gap:+.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    text = ("Faithfulness of each explainer on this model: areas under the Fid+ (remove the explainer's top "
            "tubes) and Fid- (keep only them) curves over the sparsities; F-Fidelity evaluates on the model's "
            "randomly-masked fine-tuned copy. `random` is the chance reference; an explainer a few standard "
            "errors above it is distinguishable from chance, one near 0 is not.\n\n" + "\n".join(lines) + "\n\n"
            + view.note)
    if chosen and chosen not in view.explainers():
        text += (f"\n\n**{chosen}** was not among the evaluated explainers; rerun `multimae-der faithfulness` "
                 f"with `--explainers {','.join([*(e for e in view.explainers() if e != 'random'), chosen])}` to score it.")
    return text
