"""F-Fidelity on the emotion model: the controlled experiment, a ground-truth check and a modality ablation.

* :func:`emotion_task` turns a trained run and some clips into an :class:`ffidelity.benchmark.tasks.Task`: inputs are the
  fused normalised clips ``(N, F, 3, S, S)`` (one tensor), the model is :class:`~multimae_der.explain.EmotionLogits`
  and a unit is one encoder token (:class:`ffidelity.VideoUnits`), so ``ffidelity.benchmark.run`` runs the
  paper's controlled experiment (explainers x degraded copies x Fid / R-Fid / F-Fid) unchanged, including the
  explanation-agnostic fine-tuning with random tube masking (``FFidelity.finetune``).
* :func:`ground_truth_check` (SynthAV only): the true explanation, the saved cue pixels mapped onto the fused
  input through the fusion layout and pooled per tube, is scored by the same metrics and compared with every
  explainer's degraded copies: a faithful metric should give it a higher MoRF (Fid+) area and a lower LeRF
  (Fid-) area.
* :func:`modality_check`: which modality the prediction depends on, by removing all video-derived or all
  audio-derived pixels of the fused clip (two :class:`ffidelity.GroupUnits` through the Fidelity engine), next
  to the explainers' modality shares.
* :func:`emotion_benchmark` runs all three and writes ``report.html`` (the benchmark's) plus ``emotion.html`` /
  ``emotion.json``.

The default metric setting (:data:`SETTINGS` ``recommended``) comes from the study in
``benchmarks/emotion_faithfulness_study.py`` (report in ``docs/results/emotion-faithfulness``): removed tokens are
*dropped* from the encoder's sequence (:class:`ffidelity.TokenDrop`) instead of filled with the mean colour,
the evaluator is fine-tuned on random token drops, the whole explanation (MoRF) or its whole complement (LeRF)
goes, and explanation sizes stay small. With the paper's setting (``setting="paper"``) the fine-tuned model
shrugs off the capped, mean-filled removals on SynthAV, whose evidence repeats over many frames, and every
explainer's areas sit at noise level. Clips the run trained on are refused (:mod:`multimae_der.data.heldout`), and
the controlled experiment degrades explanations within each modality (:func:`modality_groups`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ffidelity.benchmark.config import METHOD_NAMES, BenchmarkConfig
from ffidelity.benchmark.result import BenchmarkResult
from ffidelity.benchmark.runner import run
from ffidelity.benchmark.tasks import Task
from ffidelity.metrics.finetune import evaluator_folder
from ffidelity.utils import atomic
from multimae_der.data.heldout import check_held_out, held_out_indices
from multimae_der.explain.attributions import EmotionLogits

# defined in faithfulness_task; kept importable from here, where they lived before the split
from multimae_der.explain.faithfulness_task import (  # noqa: F401
    FULL,
    QUICK,
    REMOVALS,
    SETTINGS,
    STRONG_NOISE,
    UNIT_KINDS,
    default_split,
    emotion_task,
    emotion_units,
    ground_truth_check,
    ground_truth_scores,
    modality_check,
    modality_groups,
    morf_signal,
    paired_signal,
    video_units,
)
from multimae_der.model.run import Run, load_run


def _balanced(indices: Sequence[int], labels: Sequence[int] | None, n: int | None) -> list[int]:
    """Up to ``n`` of ``indices``, taking classes in turn so a small subset covers every class."""
    idx = [int(i) for i in indices]
    if n is None or n >= len(idx):
        return idx
    if labels is None:
        return idx[:n]
    by_class: dict[int, list[int]] = {}
    for i in idx:
        by_class.setdefault(int(labels[i]), []).append(i)
    out: list[int] = []
    queues = [list(v) for _, v in sorted(by_class.items())]
    while len(out) < n:
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return sorted(out)


SOURCE_FILE = Path("models") / "original" / "source.json"


def _state(run_: Run) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in EmotionLogits(run_.model).state_dict().items()}


def model_digest(run_: Run) -> str:
    """SHA-1 of the run's weights (the key ``source.json`` records), to tell which model a results folder
    evaluated."""
    state = _state(run_)
    return hashlib.sha1(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()


def _seed_original_model(out: Path, run_: Run) -> None:
    """Puts the run's trained weights where the benchmark caches its "original" model, so it evaluates this
    run instead of training a new model (``fit_classifier`` loads an existing ``model.safetensors``)."""
    from safetensors.torch import save_file

    state = _state(run_)
    digest = model_digest(run_)
    folder = out / "models" / "original"
    stamp = out / SOURCE_FILE
    if stamp.exists():
        known = json.loads(stamp.read_text(encoding="utf-8"))
        if known.get("sha1") != digest:
            raise ValueError(f"{out} holds results of another model ({known.get('run')}); use a fresh --out folder")
        return
    if (folder / "model.safetensors").exists():
        raise ValueError(f"{out} holds a benchmark model of unknown origin; use a fresh --out folder")
    with atomic.atomic_path(folder / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    atomic.write_json(stamp, {"run": str(run_.path), "sha1": digest})


def _tuned_model(cfg: BenchmarkConfig, task: Task, out: Path, original: torch.nn.Module) -> torch.nn.Module:
    """The benchmark's fine-tuned evaluator, read back from its cache (same folder, same settings)."""
    metric = cfg.metric("ffid", cfg.model_seed)
    metric.units = task.units
    return metric.finetune(original, (task.x_train, task.y_train), out_dir=out / "models" / evaluator_folder(cfg.beta, task.units),
                           progress=False, **task.finetune)


@dataclass
class EmotionBenchmarkResult(BenchmarkResult):
    """A :class:`~ffidelity.benchmark.BenchmarkResult` plus the ground-truth and modality checks."""

    ground_truth: dict[str, Any] | None = None
    modality: dict[str, Any] | None = None


def emotion_benchmark(run_dir: str | Path | Run, dataset: Any, out: str | Path, quick: bool = True, *,
                      fold: int = 0, test_indices: Sequence[int] | None = None,
                      train_indices: Sequence[int] | None = None, n_test: int | None = None,
                      n_train: int | None = None, explainers: Sequence[str] | None = None,
                      progress: bool = False, setting: str = "recommended", removal: str | None = None,
                      unit: str | None = None, degrade: str = "modality", modality: bool = True,
                      allow_train_clips: bool = False, **overrides: Any) -> EmotionBenchmarkResult:
    """The controlled experiment on the emotion model, the ground-truth check and the modality check.

    Args:
        run_dir: a trained run folder (or a loaded :class:`Run`); its weights are the "original" model.
        dataset: contract items; with SynthAV ground truth the true explanation is scored too.
        out: output folder (benchmark cache and reports; rerunning resumes). Must not hold another model's run.
        quick: :data:`QUICK` sizes (24 test clips, N = 10, one seed, Fid and F-Fid, saliency and vit_gradcam)
            instead of :data:`FULL`.
        setting: the metric setting, ``recommended`` or ``paper`` (see :data:`SETTINGS`); ``removal``, ``unit``
            and ``overrides`` change single parts of it.
        degrade: how the controlled experiment degrades explanations (see :func:`emotion_task`).
        modality: also run the modality check.
        allow_train_clips: score test clips the run trained on (refused by default, when the run records them).
        fold, test_indices, train_indices: the clips; default the clips the run did not train on (when it records
            them), else the dataset's fold ``fold`` (0-based) as test and the other folds (fine-tuning), cut to
            ``n_test`` / ``n_train`` clips with classes in turn. Clips the run trained on are refused unless
            ``allow_train_clips``.
        explainers: base explainers (default the preset's).
        overrides: any :class:`ffidelity.benchmark.BenchmarkConfig` field (``n_samples``, ``seeds``, ``mode``...).

    Returns:
        An :class:`EmotionBenchmarkResult`; ``out`` holds ``report.html`` / ``table.csv`` / ``results.json`` (the
        benchmark) and ``emotion.html`` / ``emotion.json`` (ground truth and modality checks).
    """
    t0 = time.perf_counter()
    preset = QUICK if quick else FULL
    run_ = run_dir if isinstance(run_dir, Run) else load_run(run_dir)
    out = Path(out)
    held = held_out_indices(run_.config, dataset) if test_indices is None else None
    if held:  # the clips the run did not train on (recorded by the run)
        test_indices = held
    tr, te = default_split(dataset, fold) if test_indices is None else (list(train_indices or []), list(test_indices))
    if test_indices is not None and train_indices is None:
        tr = [i for i in range(len(dataset)) if i not in set(te)]
    labels = getattr(dataset, "labels", None)
    te = _balanced(te, labels, n_test or preset["n_test"])
    check_held_out(run_.config, dataset, te, allow=allow_train_clips)
    tr = _balanced(tr, labels, n_train or preset["n_train"])
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    metric_kw = dict(SETTINGS[setting])
    removal, unit = removal or metric_kw.pop("removal"), unit or metric_kw.pop("unit")
    metric_kw = {k: v for k, v in metric_kw.items() if k not in ("removal", "unit")}
    if setting == "paper" and metric_kw["sparsities"] is None and quick:
        metric_kw["sparsities"] = (0.1, 0.3, 0.5, 0.7)
    task, items, fused = emotion_task(run_, dataset, te, tr, quick=quick, explainers=explainers,
                                      finetune_epochs=overrides.get("finetune_epochs"), removal=removal, unit=unit,
                                      degrade=degrade)
    cfg_kw: dict[str, Any] = {"dataset": task.name, "explainers": task.explainers, "methods": preset["methods"],
                              "seeds": preset["seeds"], "noises": preset["noises"], **metric_kw,
                              "finetune_epochs": preset["finetune_epochs"],
                              "n_test": len(te), "n_samples": preset["n_samples"], "batch_size": "auto",
                              "original_explanations": not quick, "quick": quick, "progress": progress,
                              # a base explainer named "random" would collide with the random baseline's rows
                              "random_baseline": "random" not in task.explainers}
    cfg_kw.update(overrides)
    cfg = BenchmarkConfig(**cfg_kw)
    out.mkdir(parents=True, exist_ok=True)
    _seed_original_model(out, run_)
    result = run(cfg, out, task=task)
    original = EmotionLogits(run_.model).eval()
    models = {"original": original}
    if "ffid" in cfg.methods:
        models["finetuned"] = _tuned_model(cfg, task, out, original)
    gt_scores = ground_truth_scores(fused, items, task.units)
    gt = ground_truth_check(result, task, gt_scores, models) if gt_scores is not None else None
    modality_res = modality_check(run_, items, fused, models, [e for e in task.explainers if e != "random"]) \
        if modality else None
    full = EmotionBenchmarkResult(**{f.name: getattr(result, f.name) for f in fields(BenchmarkResult)},
                                  ground_truth=gt, modality=modality_res)
    full.timings["checks_s"] = time.perf_counter() - t0 - result.timings.get("total_s", 0.0)
    full.timings["emotion_total_s"] = time.perf_counter() - t0
    write_emotion_report(full, task)
    return full


def write_emotion_report(result: EmotionBenchmarkResult, task: Task) -> None:
    """``emotion.json`` and ``emotion.html`` beside the benchmark's ``report.html``."""
    from ffidelity.utils.report import HtmlReport

    out = result.out_dir
    if out is None:
        return
    summary = {"task": {k: v for k, v in task.info.items()}, "models": result.models, "timings_s": result.timings,
               "summary": result.summary(), "verdicts": result.verdicts(), "ground_truth": result.ground_truth,
               "signal": morf_signal(result), "modality": result.modality}
    atomic.write_json(out / "emotion.json", summary)
    rep = HtmlReport(f"F-Fidelity on the emotion model ({task.info['fusion'].upper()})", out)
    rep.paragraph(f"Units: {task.info['unit']}. {len(task.y_test)} test clips; fine-tuning on "
                  f"{task.info['n_train_finetune']} clips with random tube masking. The controlled experiment "
                  "(explainers x degraded copies x methods) is in " + rep.link(out / "report.html", "report.html") + ".",
                  raw=True)
    rep.heading("Verdicts")
    rep.bullets(result.verdicts())
    rep.table(pd.DataFrame([result.models]), caption="accuracy of the evaluated models, clean and with 10% of "
                                                     "tubes removed at random", index=False)
    gt = result.ground_truth
    rep.heading("Ground truth: the true cue regions against the explainers")
    if gt is None:
        rep.paragraph("These clips carry no ground truth (only SynthAV does).")
    else:
        rep.paragraph("The true explanation ranks tubes by the area of SynthAV's cue pixels (mouth and brows; voiced "
                      "harmonics) they hold. A faithful metric should score it above every degraded explainer: a "
                      "higher MoRF area and a lower LeRF area.")
        areas = pd.DataFrame(gt["areas"])
        areas["method"] = areas["method"].map(lambda m: METHOD_NAMES.get(m, m))
        rep.table(areas, caption="areas of the true explanation", index=False)
        comp = pd.DataFrame(gt["comparisons"])
        if len(comp):
            comp["method"] = comp["method"].map(lambda m: METHOD_NAMES.get(m, m))
            rep.table(comp, caption="degraded copies beaten by the true explanation (out of 'copies')", index=False)
    mod = result.modality or {}
    rep.heading("Which modality the prediction depends on")
    abl = mod.get("ablation", {})
    if not abl.get("applicable"):
        rep.paragraph(f"Modality ablation not applicable: {abl.get('reason', '')}")
    else:
        rows = {name: {"p(true class)": v["base_prob"], "drop without video": v["drop_without_video"],
                       "drop without audio": v["drop_without_audio"]} for name, v in abl.items() if name != "applicable"}
        rep.table(pd.DataFrame(rows).T, caption="mean drop of the true class's probability when every video-derived "
                                                "(or audio-derived) fused pixel is replaced by the mean colour")
    if mod.get("share"):
        rep.table(pd.DataFrame(mod["share"]).T, caption="explainers' share of |attribution| mass per modality "
                                                        "(true class, original model)")
    if mod.get("gt_overlap"):
        rep.table(pd.DataFrame(mod["gt_overlap"]).T, caption="fraction of each modality's attribution mass on the "
                                                             "true cue pixels; last row: the cue's share of the "
                                                             "pixels, what an even spread would score")
    rep.save("emotion.html")
