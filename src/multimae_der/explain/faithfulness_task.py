"""The emotion model as an F-Fidelity task, and the checks run on its benchmark results.

* :func:`emotion_task` turns a trained run and some clips into an :class:`ffidelity.benchmark.tasks.Task` (one encoder token
  per unit, or frames / modalities; removals filled or dropped, see :data:`SETTINGS`);
* :func:`ground_truth_check` scores SynthAV's true explanation like the explainers' degraded copies;
* :func:`modality_check` removes all video-derived or all audio-derived pixels of the fused clip.

:func:`multimae_der.explain.faithfulness.emotion_benchmark` runs them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ffidelity.benchmark.result import BenchmarkResult
from ffidelity.benchmark.tasks import Task
from ffidelity.metrics.engine import Fidelity
from ffidelity.units.base import Units
from ffidelity.units.token_drop import TokenDrop
from ffidelity.units.token_fill import TokenFill
from ffidelity.units.video import GroupUnits, VideoUnits
from multimae_der.explain.attributions import EmotionLogits, FusedClips, explain_items, fuse_items
from multimae_der.explain.provenance import modality_labels, modality_units, project_to_fused
from multimae_der.model.fusion import MODALITIES
from multimae_der.model.run import Run, model_config
from multimae_der.model.videomae import build_classifier

#: degraded copies at least this noisy are the ones the true explanation must beat ("wins_strong")
STRONG_NOISE = 0.6

#: sizes of the quick experiment (a minute or two on 2 CPU cores with the tiny model).
QUICK = {"n_test": 24, "n_train": 192, "n_samples": 10, "noises": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
         "methods": ("fid", "ffid"), "explainers": ("saliency", "vit_gradcam"), "finetune_epochs": 3, "seeds": 1}
#: sizes of the full experiment.
FULL = {"n_test": 48, "n_train": 256, "n_samples": 20, "noises": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
        "methods": ("fid", "rfid", "ffid"), "explainers": ("saliency", "integrated_gradients", "sg_sq", "vit_gradcam"),
        "finetune_epochs": 5, "seeds": 3}

#: metric settings. ``recommended``, from the study in docs/results/emotion-faithfulness (token dropping, the
#: evaluator fine-tuned on random token drops, whole-explanation removal, LeRF keeping only the explanation,
#: small explanation sizes); ``paper``, F-Fidelity as published (mean-colour filling, beta 0.1, alpha 0.5).
SETTINGS: dict[str, dict[str, Any]] = {
    "recommended": {"removal": "drop", "unit": "token", "alpha_plus": 1.0, "alpha_minus": 1.0, "beta": 0.5,
                    "beta_minus": 1.0, "mode": "prob", "sparsities": (0.05, 0.1, 0.2, 0.3, 0.5)},
    "paper": {"removal": "fill", "unit": "token", "alpha_plus": 0.5, "alpha_minus": 0.5, "beta": 0.1,
              "beta_minus": None, "mode": "prob", "sparsities": None},
}


#: how a unit is removed: ``fill`` replaces its pixels with the mean colour (0 after normalisation; a token is
#: filled in token space, :class:`ffidelity.TokenFill`, the same numbers), ``drop``
#: leaves its tokens out of the encoder's sequence (:class:`ffidelity.TokenDrop`, in distribution for VideoMAE)
REMOVALS = ("fill", "drop")
#: what a unit is: one encoder token (a tube), a fused frame pair (``tubelet_size`` whole frames: a video frame
#: pair or an audio-window pair with FSLF), or a whole modality (every video- / audio-derived pixel)
UNIT_KINDS = ("token", "frame", "modality")


def video_units(run: Run) -> VideoUnits:
    """Units = the run's own tokens: tubes of ``tubelet_size`` frames x ``patch_size``^2 pixels."""
    mc = run.config["model"]
    return VideoUnits(tubelet=int(mc["tubelet_size"]), patch=int(mc["patch_size"]), reference=0.0)


def emotion_units(run_: Run, removal: str = "fill", unit: str = "token",
                  fused: Sequence[FusedClips] = ()) -> Units:
    """The units of the emotion experiment: ``unit`` (see :data:`UNIT_KINDS`) removed by ``removal``.

    Args:
        fused: every batch of clips the units will see (test and fine-tuning clips), needed for ``modality``
            units when the fusion layout differs between clips (RFAS).
    """
    if removal not in REMOVALS:
        raise ValueError(f"removal must be one of {REMOVALS}, got {removal!r}")
    if unit not in UNIT_KINDS:
        raise ValueError(f"unit must be one of {UNIT_KINDS}, got {unit!r}")
    tokens = video_units(run_)
    if unit == "token":
        units: Units = tokens
    elif unit == "frame":
        units = VideoUnits(tubelet=tokens.tubelet, patch=run_.image_size, reference=0.0)
    else:
        layouts = [lay for f in fused for lay in f.layouts]
        inputs = torch.cat([f.inputs for f in fused]) if fused else None
        units = modality_units(layouts, inputs)
    if removal == "fill":  # a token filled in token space: the same numbers without a masked copy in pixels
        return TokenFill(tokens) if unit == "token" else units
    return TokenDrop(units, tokens=None if unit == "token" else tokens)


def ground_truth_scores(fused: FusedClips, items: Sequence[Mapping[str, Any]], units: Units) -> torch.Tensor | None:
    """The true explanation as unit scores ``(N, D)``: each unit's share of each modality's cue pixels.

    The cue masks (``gt_video`` (T, S, S), ``gt_audio`` (N, S, S)) are placed onto the fused frames one
    modality at a time with :func:`~multimae_der.explain.provenance.project_to_fused` (so CFAS halves, SFAS weights and
    RFAS orders are honoured) and summed per unit. Each modality's sums are divided by that modality's total,
    so the video cue and the audio cue weigh the same: SynthAV's class needs both (each alone decides at most
    half of the classes), and a ranking by raw pixel area would put every video cue tube (the mouth and brows
    fill more of a tube than the voiced harmonics do) above every audio one, an explanation that keeps one
    modality and loses the class. ``None`` when a clip has no ground truth.
    """
    if not all("gt_video" in it and "gt_audio" in it for it in items):
        return None
    total = None
    for modality in MODALITIES:
        maps = []
        for it, layout in zip(items, fused.layouts, strict=True):
            maps.append(project_to_fused(layout, {modality: torch.as_tensor(np.asarray(it[f"gt_{modality}"])).float()}))
        part = units.scores(torch.stack(maps), fused.inputs).double()  # maps (N, F, S, S): summed over channels
        part = part / part.sum(1, keepdim=True).clamp(min=1e-12)
        total = part if total is None else total + part
    return total.float()


def modality_groups(fused: FusedClips, units: Units) -> torch.Tensor | None:
    """Long ``(N, D)``: the modality (0 video, 1 audio) holding most of each unit's pixels, for degrading
    explanations within each modality; ``None`` when the fusion mixes both in every pixel (SFAS) or a unit is
    a whole modality (nothing to permute within)."""
    if isinstance(units, GroupUnits) or isinstance(getattr(units, "units", None), GroupUnits):
        return None
    try:
        labels = torch.stack([modality_labels(lay) for lay in fused.layouts])  # (N, F, S, S)
    except ValueError:
        return None
    mass = torch.stack([units.scores((labels == m).float(), fused.inputs) for m in (0, 1)])  # (2, N, D)
    return mass.argmax(0)


def default_split(dataset: Any, fold: int = 0) -> tuple[list[int], list[int]]:
    """(train, test) indices: the dataset's subject-independent fold ``fold`` when it has folds, else the
    last quarter of the clips as test."""
    if hasattr(dataset, "folds") and hasattr(dataset, "actors"):
        from multimae_der.data.datasets import fold_split

        return fold_split(dataset, fold)
    n = len(dataset)
    cut = max(1, n - max(1, n // 4))
    return list(range(cut)), list(range(cut, n))


def emotion_task(run_: Run, dataset: Any, test_indices: Sequence[int], train_indices: Sequence[int], *,
                 quick: bool = True, explainers: Sequence[str] | None = None, finetune_epochs: int | None = None,
                 lr: float = 1e-4, removal: str = "fill", unit: str = "token", degrade: str = "modality"
                 ) -> tuple[Task, list[Mapping[str, Any]], FusedClips]:
    """The emotion model as a benchmark task over clips of ``dataset``.

    Args:
        run_: the loaded run (its fusion, model and class names are used).
        dataset: contract items (``video``, ``audio``, ``label``; ``gt_video``/``gt_audio`` for SynthAV).
        test_indices: clips to evaluate on; train_indices: clips for the random-mask fine-tuning.
        quick: smaller settings.
        explainers: base explainers of the controlled experiment.
        finetune_epochs, lr: the fine-tuning schedule (Adam, weight decay 1e-4, as the paper's code).
        removal, unit: how a unit is removed and what it is (see :func:`emotion_units`).
        degrade: ``modality``: the degraded copies permute scores within each modality (they keep the
            explainer's balance between video and audio, see :func:`modality_groups`); ``all``: across all
            units, as the paper does for images.

    Returns:
        The task, the test items (with their ground truth) and the fused test clips (with layouts).
    """
    preset = QUICK if quick else FULL
    if not test_indices:
        raise ValueError("no test clips")
    if not train_indices:
        raise ValueError("no training clips for the random-mask fine-tuning")
    test_items = [dataset[i] for i in test_indices]
    test = fuse_items(run_, test_items)
    train = fuse_items(run_, [dataset[i] for i in train_indices])
    if test.labels is None or train.labels is None:
        raise ValueError("the F-Fidelity experiment needs labelled clips")
    units = emotion_units(run_, removal, unit, (test, train))
    gt = ground_truth_scores(test, test_items, units)
    mcfg = model_config(run_.config)
    tok = video_units(run_)
    names = list(explainers or preset["explainers"])
    epochs = int(finetune_epochs or preset["finetune_epochs"])
    task = Task(
        name=f"emotion-{run_.fusion['strategy']}",
        x_train=train.inputs, y_train=train.labels, x_test=test.inputs, y_test=test.labels,
        num_classes=len(run_.class_names), units=units,
        make_model=lambda: EmotionLogits(build_classifier(mcfg)),
        fit={"epochs": 1, "lr": 1e-3, "batch_size": 8, "optimizer": "adamw", "weight_decay": 0.05},
        finetune={"epochs": epochs, "lr": lr, "weight_decay": 1e-4, "batch_size": 8},
        explainers=tuple(names),
        explainer_kwargs={"sg_sq": {"n_steps": 8, "nt_samples": 4, "internal_batch_size": 32},
                          "integrated_gradients": {"n_steps": 16, "internal_batch_size": 32},
                          "occlusion": {"window": (tok.tubelet, tok.patch, tok.patch), "channel_dim": 2}},
        ground_truth=None if gt is None else gt > 0,
        degrade_groups=modality_groups(test, units) if degrade == "modality" else None,
        info={"run": str(run_.path), "fusion": run_.fusion["strategy"], "classes": run_.class_names,
              "test_indices": [int(i) for i in test_indices], "n_train_finetune": len(train_indices),
              "unit": _describe_unit(unit, tok, run_.image_size), "removal": removal, "degrade": degrade},
    )
    return task, test_items, test


def _describe_unit(unit: str, tok: VideoUnits, size: int) -> str:
    if unit == "token":
        return f"one encoder token: {tok.tubelet} frames x {tok.patch}x{tok.patch} pixels"
    if unit == "frame":
        return f"one fused frame pair: {tok.tubelet} whole {size}x{size} frames"
    return "one modality: every video-derived or every audio-derived fused pixel"


#: where a faithfulness folder records which run's weights it evaluated (``{"run": ..., "sha1": ...}``).


def ground_truth_check(result: BenchmarkResult, task: Task, gt_scores: torch.Tensor,
                       models: Mapping[str, torch.nn.Module]) -> dict[str, Any]:
    """Scores the true explanation with every method of ``result`` and compares it with the degraded copies.

    For each seed, method (``fid`` on the original model, ``rfid``, ``ffid`` on the fine-tuned one), explainer
    and noise level, the true explanation wins when its MoRF area is higher and its LeRF area lower.

    Returns:
        ``{"areas": rows of the true explanation's areas, "comparisons": per (method, explainer) the number of
        degraded copies beaten on each side, "wins": per method the fraction beaten on both sides}``.
    """
    cfg = result.config
    y = task.y_test[: gt_scores.shape[0]]
    x = task.x_test[: gt_scores.shape[0]]
    rows = []
    for seed in cfg.seed_range():
        for method in dict.fromkeys(result.curves["method"]):
            if method not in ("fid", "rfid", "ffid"):
                continue
            metric = cfg.metric(method, seed)
            metric.units = task.units
            metric.progress = False
            model = models["finetuned" if method == "ffid" else "original"]
            res = metric.evaluate(model, x, y, gt_scores)
            rows.append({"seed": seed, "method": method, "morf_area": res.auc_plus, "lerf_area": res.auc_minus,
                         "fid_plus": res.fid_plus.tolist(), "fid_minus": res.fid_minus.tolist()})
    areas = pd.DataFrame(rows)
    comps = []
    # The degraded copies (noise > 0) of every explainer; noise 0 is the explainer itself, not a degraded copy.
    deg = result.curves[result.curves["explainer"].isin(set(result.scores["explainer"])) & (result.curves["noise"] > 0)]
    for (method, explainer), g in deg.groupby(["method", "explainer"], sort=False):
        if method not in set(areas["method"]):
            continue
        truth = areas[areas["method"] == method].set_index("seed")
        plus = np.array([truth.loc[r.seed, "morf_area"] > r.auc_plus for r in g.itertuples()], bool)
        minus = np.array([truth.loc[r.seed, "lerf_area"] < r.auc_minus for r in g.itertuples()], bool)
        strong = g["noise"].to_numpy() >= STRONG_NOISE
        comps.append({"method": method, "explainer": explainer, "copies": int(plus.size),
                      "morf_higher": int(plus.sum()), "lerf_lower": int(minus.sum()), "both": int((plus & minus).sum()),
                      "strong_copies": int(strong.sum()), "strong_both": int((plus & minus & strong).sum()),
                      "best_copy_morf_area": float(g["auc_plus"].max()), "best_copy_lerf_area": float(g["auc_minus"].min())})
    comp = pd.DataFrame(comps)
    wins, wins_strong = {}, {}
    for m, g in (comp.groupby("method", sort=False) if len(comp) else ()):
        wins[m] = float(g["both"].sum() / max(1, g["copies"].sum()))
        wins_strong[m] = float(g["strong_both"].sum() / g["strong_copies"].sum()) if g["strong_copies"].sum() else None
    return {"areas": areas.drop(columns=["fid_plus", "fid_minus"]).to_dict(orient="records"),
            "curves": rows, "comparisons": comp.to_dict(orient="records"), "wins": wins,
            "wins_strong": wins_strong, "strong_noise": STRONG_NOISE}


def morf_signal(result: BenchmarkResult) -> dict[str, dict[str, Any]]:
    """Per method: how far the best explainer's MoRF area stands above the random explainer's.

    For each seed, the explainer with the largest mean noise-0 MoRF area is compared with the random explainer
    clip by clip (paired: the same clips and draws); the signal is the mean difference divided by its standard
    error over all (seed, clip) pairs. A metric whose signal is a few standard errors cannot tell a good
    explanation from a random one.
    """
    c = result.curves
    if "auc_plus_per_input" not in c.columns:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for method, g in c[c["noise"] == 0].groupby("method", sort=False):
        diffs, best_names = [], []
        for _seed, gs in g.groupby("seed"):
            rand = gs[gs["explainer"] == "random"]
            expl = gs[gs["explainer"] != "random"]
            if rand.empty or expl.empty or rand["auc_plus_per_input"].isna().any():
                continue
            best = expl.loc[expl["auc_plus"].idxmax()]
            best_names.append(str(best["explainer"]))
            diffs.append(np.asarray(best["auc_plus_per_input"]) - np.asarray(rand.iloc[0]["auc_plus_per_input"]))
        if not diffs:
            continue
        d = np.concatenate(diffs)
        mean, se, signal = paired_signal(d)
        out[method] = {"best": max(set(best_names), key=best_names.count), "difference": mean, "se": se,
                       "signal_se": signal, "pairs": int(d.size)}
    return out


def paired_signal(diffs: np.ndarray) -> tuple[float, float, float]:
    """``(mean, standard error, mean / standard error)`` of paired per-clip differences (nan when fewer than 2;
    inf when every difference is the same non-zero value)."""
    d = np.asarray(diffs, float)
    if d.size < 2:
        return float(d.mean()) if d.size else float("nan"), float("nan"), float("nan")
    se = float(d.std(ddof=1) / np.sqrt(d.size))
    return float(d.mean()), se, float(d.mean() / se) if se > 0 else float("inf")


def modality_check(run_: Run, items: Sequence[Mapping[str, Any]], fused: FusedClips,
                   models: Mapping[str, torch.nn.Module], explainers: Sequence[str], *,
                   batch_size: int = 16) -> dict[str, Any]:
    """Which modality the prediction depends on, and where the explainers put their mass.

    Ablation: with two :class:`ffidelity.GroupUnits` (every video-derived / audio-derived fused pixel),
    Fidelity at sparsity 0.5 with the video ranked first gives Fid+ = the drop of the true class's probability
    when the video is removed and Fid- = the drop when the audio is removed, per clip. Shares: the explainers'
    fraction of ``|attribution|`` mass on each modality (explaining the true class on the original model).
    """
    out: dict[str, Any] = {"fusion": run_.fusion["strategy"]}
    try:
        units = modality_units(fused.layouts, fused.inputs)
    except ValueError as exc:
        out["ablation"] = {"applicable": False, "reason": str(exc)}
        units = None
    if units is not None:
        scores = torch.tensor([[1.0, 0.0]]).expand(fused.inputs.shape[0], 2)
        metric = Fidelity(sparsities=[0.5], mode="prob", units=units, batch_size=batch_size, progress=False)
        abl: dict[str, Any] = {"applicable": True}
        valid = units.valid(fused.inputs)
        for name, model in models.items():
            res = metric.evaluate(model, fused.inputs, fused.labels, scores)
            drop_v, drop_a = res.per_sample_plus[:, 0], res.per_sample_minus[:, 0]
            drop_v = np.where(valid[:, 0].numpy(), drop_v, np.nan)
            drop_a = np.where(valid[:, 1].numpy(), drop_a, np.nan)
            abl[name] = {"base_prob": float(np.mean(res.base_scores)), "drop_without_video": _nanmean(drop_v),
                         "drop_without_audio": _nanmean(drop_a),
                         "per_clip": [{"base": float(b), "without_video": _f(v), "without_audio": _f(a)}
                                      for b, v, a in zip(res.base_scores, drop_v, drop_a, strict=True)]}
        out["ablation"] = abl
    if fused.labels is not None and explainers:
        expl = explain_items(run_, items, explainers, target="label", batch_size=batch_size)
        out["share"] = {n: {m: float(np.mean([e[n].share.get(m, 0.0) for e in expl])) for m in MODALITIES}
                        for n in expl[0]}
        if "gt_video" in items[0]:
            out["gt_overlap"] = {n: {m: _nanmean(np.array([e[n].gt_overlap.get(m, np.nan) for e in expl]))
                                     for m in MODALITIES} for n in expl[0]}
            first = next(iter(expl[0]))
            out["gt_overlap"]["chance (cue area)"] = {
                m: _nanmean(np.array([e[first].gt_area.get(m, np.nan) for e in expl])) for m in MODALITIES}
    return out


def _f(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def _nanmean(v: np.ndarray) -> float | None:
    v = np.asarray(v, float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else None
