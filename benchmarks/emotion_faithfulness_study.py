"""Which F-Fidelity setting tells good explanations of the emotion model from bad ones? (SynthAV, held-out actors)

The controlled experiment on the MultiMAE-DER model: explainers (saliency, integrated gradients, SG-SQ, ViT
Grad-CAM), their degraded copies (a fraction ``noise`` of their unit scores permuted), the random explainer and
the true explanation (SynthAV's cue regions, each modality weighted equally), scored on clips of held-out actors.
A faithful metric ranks the copies by noise (macro MoRF vs GT = -1, LeRF vs GT = +1), puts the random explainer
lowest and the true explanation above every strongly degraded copy (noise >= 0.6) on both sides.

Two SynthAV variants: ``redundant`` (the class cue in every frame and audio window, as SynthAV always did) and
``localized`` (the cue in one half of each clip, the same span for frames and audio; with a quarter the tiny
model reached only 0.41 held-out WAR in 40 epochs, too weak a model to explain). Per variant and seed, one FSLF model (tiny
VideoMAE, the demo's recipe but 40 epochs) is trained on 6 actors; the seed sets the data, the model and the degradations.

Settings, one knob changed at a time from the recommended one:

* ``recommended``: token dropping (removed tokens are left out of the encoder's sequence), the evaluator
  fine-tuned on random token drops, alpha+ = alpha- = 1, fine-tuning ratio and MoRF cap beta (``BASE``), the
  complement cap 1 (LeRF keeps only the explanation), probability mode, sparsities 0.05-0.5, one encoder
  token per unit;
* ``paper``: the paper's setting (pixels filled with the mean colour, beta 0.1 on both sides, alpha 0.5);
* alpha+, alpha-, beta, complement cap, accuracy mode, N (at alpha 0.8, where draws differ), fine-tuning
  epochs, unit (frame pair, modality), removal by filling, both removals without fine-tuning (R-Fidelity on the
  original model), and the degraded copies permuted across modalities instead of within each.

Writes ``results.json``, ``table.csv``, ``report.html`` and curve PNGs under ``--out`` (default
``docs/results/emotion-faithfulness``); models and curve caches go to ``--work`` and reruns reuse them.

    PYTHONPATH=src python benchmarks/emotion_faithfulness_study.py [--seeds 3] [--sweep-seeds 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
DATASETS: dict[str, float] = {"redundant": 1.0, "localized": 0.5}  # share of the clip that carries the cue
#: training epochs of the FSLF model: the demo's 12 left seeds 1 and 2 at 0.58 / 0.69 held-out WAR and the
#: localized set at chance; 40 epochs (960 steps at batch 8) reached 0.86 on it (0.41 with a quarter share)
EPOCHS = 40
#: the recommended setting; every other variant changes one of these
BASE: dict[str, Any] = {"removal": "drop", "method": "ffid", "alpha_plus": 1.0, "alpha_minus": 1.0, "beta": 0.5,
                        "beta_minus": 1.0, "mode": "prob", "n_samples": 10, "finetune_epochs": 3, "unit": "token",
                        "degrade": "modality"}
PAPER: dict[str, Any] = {"removal": "fill", "alpha_plus": 0.5, "alpha_minus": 0.5, "beta": 0.1, "beta_minus": None}
VARIANTS: dict[str, dict[str, Any]] = {
    "recommended": {},
    "paper": PAPER,
    "alpha+ 0.5": {"alpha_plus": 0.5},
    "alpha- 0.5": {"alpha_minus": 0.5},
    "alpha+- 0.8": {"alpha_plus": 0.8, "alpha_minus": 0.8},
    "beta 0.1": {"beta": 0.1},
    "beta 0.2": {"beta": 0.2},
    "beta 0.3": {"beta": 0.3},
    "beta 0.9": {"beta": 0.9},
    "cap = beta": {"beta_minus": None},
    "accuracy mode": {"mode": "acc"},
    "alpha+- 0.8 with N 20": {"n_samples": 20, "alpha_plus": 0.8, "alpha_minus": 0.8},
    "1 fine-tuning epoch": {"finetune_epochs": 1},
    "6 fine-tuning epochs": {"finetune_epochs": 6},
    "unit: frame pair": {"unit": "frame"},
    "unit: modality": {"unit": "modality"},
    "fill": {"removal": "fill"},
    "drop without fine-tuning": {"method": "rfid"},
    "fill without fine-tuning": {"removal": "fill", "method": "rfid"},
    "degraded across modalities": {"degrade": "all"},
    "paper degraded across modalities": {**PAPER, "degrade": "all"},
}
MAIN = ("recommended", "paper")  # run with every explainer and every seed
EXPLAINERS = ("saliency", "integrated_gradients", "sg_sq", "vit_gradcam")
SWEEP_EXPLAINERS = ("saliency", "vit_gradcam")
SPARSITIES = (0.05, 0.1, 0.2, 0.3, 0.5)
NOISES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
TARGET = {"morf": -0.9, "lerf": 0.9, "wins_strong": 0.9, "signal_se": 5.0}


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in name)


def settings(name: str) -> dict[str, Any]:
    """The full setting of variant ``name`` (BASE with the variant's changes)."""
    return {**BASE, **VARIANTS[name]}


def train_model(work: Path, variant: str, seed: int, progress: bool) -> Path:
    """The FSLF model of one SynthAV variant and seed (the demo's recipe), trained once and reused."""
    from multimae_der.model.experiments import fusion_study

    out = work / "data" / f"{variant}-s{seed}"
    extra: dict[str, Any] = {"cue_share": DATASETS[variant]}
    fusion_study(out, ("fslf",), progress=progress, actors=8, test_actors=2, clips_per_actor=32, epochs=EPOCHS,
                 batch_size=8, layers=2, workers=2, seed=seed, **extra)
    return out


def model_war(data_dir: Path) -> float:
    import json as _json

    return float(_json.loads((data_dir / "runs" / "fslf" / "metrics.json").read_text())["war"])


def run_variant(work: Path, data_dir: Path, variant: str, seed: int, name: str, n_test: int) -> dict[str, Any]:
    """One (data variant, seed, setting) cell: the controlled experiment and the ground-truth check."""
    from ffidelity.utils import atomic
    from multimae_der.data.datasets import build_dataset
    from multimae_der.data.prepare import PrepareConfig
    from multimae_der.explain.faithfulness import emotion_benchmark
    from multimae_der.explain.faithfulness_task import morf_signal
    from multimae_der.model.experiments import held_out_split

    cache = work / "cells" / f"{variant}-s{seed}-{_slug(name)}.json"
    s = settings(name)
    if cache.is_file():
        cell = json.loads(cache.read_text())
        if cell.get("settings") == json.loads(json.dumps(s)) and cell.get("n_test") == n_test:
            return cell
    data = build_dataset("ravdess", data_dir / "synthav", cache=data_dir / "cache",
                         config=PrepareConfig(num_frames=16, num_windows=16, image_size=64), progress=False)
    train_idx, test_idx = held_out_split(data.actors, 2)
    explainers = EXPLAINERS if name in MAIN else SWEEP_EXPLAINERS
    t0 = time.perf_counter()
    res = emotion_benchmark(
        data_dir / "runs" / "fslf", data, work / "runs" / f"{variant}-s{seed}" / _slug(name), quick=True,
        test_indices=test_idx, train_indices=train_idx, n_test=n_test, n_train=len(train_idx),
        explainers=explainers, removal=s["removal"], unit=s["unit"], degrade=s["degrade"], modality=False,
        methods=(s["method"],), noises=NOISES, sparsities=SPARSITIES, n_samples=s["n_samples"], seeds=1,
        first_seed=seed, model_seed=seed, mode=s["mode"], alpha_plus=s["alpha_plus"], alpha_minus=s["alpha_minus"],
        beta=s["beta"], beta_minus=s["beta_minus"], finetune_epochs=s["finetune_epochs"],
        original_explanations=False)
    seconds = time.perf_counter() - t0
    m = s["method"]
    scores = res.scores[res.scores["method"] == m]
    gt = res.ground_truth or {}
    comps = [c for c in gt.get("comparisons", []) if c["method"] == m]
    base = res.baseline[res.baseline["method"] == m].set_index("explainer")["morf_area"]
    cell = {
        "variant": variant, "seed": seed, "setting": name, "settings": s, "n_test": n_test, "seconds": seconds,
        "per_explainer": {r.explainer: {"morf": float(r.macro_morf_vs_gt), "lerf": float(r.macro_lerf_vs_gt)}
                          for r in scores.itertuples()},
        "wins": gt.get("wins", {}).get(m), "wins_strong": gt.get("wins_strong", {}).get(m),
        "strong_both": sum(c["strong_both"] for c in comps), "strong_copies": sum(c["strong_copies"] for c in comps),
        "morf_side_wins": sum(c["morf_higher"] for c in comps), "lerf_side_wins": sum(c["lerf_lower"] for c in comps),
        "copies": sum(c["copies"] for c in comps),
        "random_lowest_morf": bool(base.get("random", float("nan")) <= base.drop("random", errors="ignore").min()),
        "morf_areas": {k: float(v) for k, v in base.items()},
        "signal": morf_signal(res).get(m, {}),
        "models": res.models,
        "out": str(res.out_dir),
    }
    atomic.write_json(cache, cell)
    return cell


def summarize(cells: list[dict[str, Any]]) -> Any:
    """One row per (data variant, setting): means over seeds, ranges and targets."""
    import numpy as np
    import pandas as pd

    rows = []
    keyed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cells:
        keyed.setdefault((c["variant"], c["setting"]), []).append(c)
    for (variant, name), cs in keyed.items():
        explainers = sorted({e for c in cs for e in c["per_explainer"]})
        morf = {e: float(np.nanmean([c["per_explainer"][e]["morf"] for c in cs])) for e in explainers}
        lerf = {e: float(np.nanmean([c["per_explainer"][e]["lerf"] for c in cs])) for e in explainers}
        strong = sum(c["strong_both"] for c in cs) / max(1, sum(c["strong_copies"] for c in cs))
        diffs = [c["signal"] for c in cs if c["signal"]]
        rows.append({
            "data": variant, "setting": name, "seeds": len(cs), "explainers": ",".join(explainers),
            "worst_morf_vs_gt": max(morf.values()), "worst_lerf_vs_gt": min(lerf.values()),
            **{f"morf_{e}": v for e, v in morf.items()}, **{f"lerf_{e}": v for e, v in lerf.items()},
            "gt_wins_both": float(np.mean([c["wins"] for c in cs if c["wins"] is not None])),
            "gt_wins_strong": strong,
            "gt_morf_side": sum(c["morf_side_wins"] for c in cs) / max(1, sum(c["copies"] for c in cs)),
            "gt_lerf_side": sum(c["lerf_side_wins"] for c in cs) / max(1, sum(c["copies"] for c in cs)),
            "random_lowest": f"{sum(c['random_lowest_morf'] for c in cs)}/{len(cs)}",
            "signal_se": float(np.mean([d["signal_se"] for d in diffs])) if diffs else float("nan"),
            "finetuned_clean_acc": float(np.mean([c["models"].get("finetuned_clean_acc", np.nan) for c in cs])),
            "model_war": float(np.mean([c.get("model_war", np.nan) for c in cs])),
            "seconds": float(sum(c["seconds"] for c in cs)),
        })
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "emotion-faithfulness")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "raw" / "emotion-faithfulness",
                        help="data, models and curve caches (git-ignored)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the main settings (recommended, paper)")
    parser.add_argument("--sweep-seeds", type=int, default=1, help="seeds of the one-knob variants")
    parser.add_argument("--n-test", type=int, default=24, help="held-out test clips per run (3 per class)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated settings")
    parser.add_argument("--data", default=",".join(DATASETS), help="comma-separated SynthAV variants")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="write the report from the cached cells only")
    args = parser.parse_args(argv)

    from ffidelity.models.training import quiet_lightning
    from ffidelity.utils import atomic
    from ffidelity.utils.report import environment_info

    quiet_lightning()
    t_start = time.perf_counter()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    data_variants = [d.strip() for d in args.data.split(",") if d.strip()]
    cells, timings = [], {"train_s": 0.0}
    for variant in data_variants:
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            data_dir = args.work / "data" / f"{variant}-s{seed}"
            if not args.report_only:
                train_model(args.work, variant, seed, args.progress)
            timings["train_s"] += time.perf_counter() - t0
            for name in names:
                if name not in MAIN and seed >= args.sweep_seeds:
                    continue
                cached = args.work / "cells" / f"{variant}-s{seed}-{_slug(name)}.json"
                if args.report_only:
                    if not cached.is_file():
                        continue
                    cell = json.loads(cached.read_text())
                else:
                    cell = run_variant(args.work, data_dir, variant, seed, name, args.n_test)
                cell["model_war"] = model_war(data_dir)
                cells.append(cell)
                pe = cell["per_explainer"]
                print(f"{variant} s{seed} {name}: {cell['seconds']:.0f} s; MoRF "
                      + " ".join(f"{e} {v['morf']:+.2f}" for e, v in pe.items()) + "; LeRF "
                      + " ".join(f"{e} {v['lerf']:+.2f}" for e, v in pe.items())
                      + f"; truth wins (noise >= 0.6) {cell['strong_both']}/{cell['strong_copies']}", flush=True)
    timings["total_s"] = time.perf_counter() - t_start
    previous = args.out / "results.json"
    if args.report_only and previous.is_file():  # the run's own timings, not the report's
        timings = json.loads(previous.read_text()).get("timings_s", timings)
    table = summarize(cells)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(args.out / "table.csv", table.to_csv(index=False, float_format="%.4f"))
    verdict = verdicts(table)
    atomic.write_json(args.out / "results.json", {
        "base": BASE, "paper": PAPER, "variants": {n: VARIANTS[n] for n in names}, "datasets": DATASETS,
        "sparsities": SPARSITIES, "noises": NOISES, "explainers": EXPLAINERS, "sweep_explainers": SWEEP_EXPLAINERS,
        "seeds": args.seeds, "sweep_seeds": args.sweep_seeds, "n_test": args.n_test, "targets": TARGET,
        "cells": cells, "rows": table.to_dict(orient="records"), "verdicts": verdict, "timings_s": timings,
        "command": "PYTHONPATH=src python benchmarks/emotion_faithfulness_study.py "
                   f"--seeds {args.seeds} --sweep-seeds {args.sweep_seeds} --n-test {args.n_test}",
        "environment": environment_info()})
    report(args.out, table, cells, verdict, timings, args)
    for line in verdict:
        print(line)
    print(f"total {timings['total_s']:.0f} s")
    return 0


def verdicts(table: Any) -> list[str]:
    """The issue's targets, stated for the recommended setting on each data variant."""
    out = []
    for r in table[table["setting"] == "recommended"].itertuples():
        checks = [("MoRF <= -0.9 for every explainer", r.worst_morf_vs_gt <= TARGET["morf"], f"{r.worst_morf_vs_gt:+.2f}"),
                  ("LeRF >= +0.9 for every explainer", r.worst_lerf_vs_gt >= TARGET["lerf"], f"{r.worst_lerf_vs_gt:+.2f}"),
                  ("truth beats copies with noise >= 0.6 on both sides in >= 90%", r.gt_wins_strong >= TARGET["wins_strong"],
                   f"{r.gt_wins_strong:.0%}"),
                  ("random explainer lowest MoRF area", r.random_lowest.split("/")[0] == r.random_lowest.split("/")[1],
                   r.random_lowest),
                  ("best explainer >= 5 SE above random", r.signal_se >= TARGET["signal_se"], f"{r.signal_se:.1f} SE")]
        out.append(f"{r.data}: " + "; ".join(f"{name}: {'MET' if ok else 'NOT MET'} ({value})"
                                            for name, ok, value in checks))
    return out


def report(out: Path, table: Any, cells: list[dict[str, Any]], verdict: list[str], timings: dict[str, float],
           args: Any) -> None:
    import shutil

    import matplotlib.pyplot as plt
    import numpy as np

    from ffidelity.utils.report import HtmlReport

    rep = HtmlReport("F-Fidelity on the emotion model: which setting is faithful?", out)
    for para in __doc__.split("\n\n")[1:5]:
        rep.paragraph(para.replace("\n", " ").replace("``", ""))
    rep.paragraph(f"{args.seeds} seeds for the recommended and paper settings (4 explainers), {args.sweep_seeds} for "
                  f"the one-knob variants (saliency and ViT Grad-CAM); {args.n_test} held-out clips per run; "
                  f"sparsities {SPARSITIES}; noise levels {NOISES}. Total {timings['total_s'] / 60:.1f} min on this "
                  "machine (2 CPU cores).")
    rep.heading("Targets (recommended setting)")
    rep.bullets(verdict)
    show = table.copy()
    cols = ["data", "setting", "seeds", "model_war", "worst_morf_vs_gt", "worst_lerf_vs_gt", "gt_wins_strong", "gt_morf_side",
            "gt_lerf_side", "random_lowest", "signal_se", "finetuned_clean_acc", "seconds"]
    rep.heading("Every setting")
    rep.table(show[cols], index=False, caption="worst = the worst explainer's macro score (ideal -1 MoRF, +1 LeRF); "
              "gt_wins_strong = share of degraded copies with noise >= 0.6 the true explanation beats on both sides; "
              "gt_morf_side / gt_lerf_side = share of all copies it beats on that side; signal = best explainer's "
              "MoRF area minus the random explainer's, in standard errors (paired over clips)")
    per = [c for c in show.columns if c.startswith(("morf_", "lerf_")) and c not in cols]
    rep.heading("Per explainer (macro MoRF / LeRF vs GT, mean over seeds)")
    rep.table(show[["data", "setting", *per]], index=False)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(VARIANTS) + 1.5), sharey=True)
    for ax, variant in zip(axes, DATASETS, strict=True):
        t = show[show["data"] == variant]
        y = np.arange(len(t))
        ax.barh(y - 0.2, -t["worst_morf_vs_gt"], 0.4, label="-worst MoRF vs GT")
        ax.barh(y + 0.2, t["worst_lerf_vs_gt"], 0.4, label="worst LeRF vs GT")
        ax.axvline(0.9, color="k", ls=":", lw=1)
        ax.set_yticks(y, t["setting"], fontsize=7)
        ax.set_title(f"{variant} SynthAV", fontsize=9)
        ax.set_xlim(-1, 1)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    rep.figure(fig, "settings.png", "worst explainer's ranking quality per setting (1 = perfect on both bars; the "
                                    "dotted line is the 0.9 target). recommended and paper: mean of 3 seeds (4 "
                                    "explainers, models of 0.50-0.95 WAR); every other row: seed 0 only (2 "
                                    "explainers, the best-trained models), so compare those rows with each other")
    plt.close(fig)
    rep.heading("Curves of the recommended and the paper's setting (first seed)")
    for c in cells:
        if c["setting"] in MAIN and c["seed"] == 0:
            src = Path(c["out"])
            for png in sorted(src.glob("curves_*.png")):
                name = f"{c['variant']}_{c['setting']}_{png.name}"
                shutil.copyfile(png, out / name)
                rep.image(out / name, f"{c['variant']} SynthAV, {c['setting']}: {png.stem[7:]}")
    rep.save("report.html")


if __name__ == "__main__":
    raise SystemExit(main())
