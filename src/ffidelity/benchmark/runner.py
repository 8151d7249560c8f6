"""The controlled experiment of the F-Fidelity paper, end to end, with a resumable cache and a report.

For each base explainer, degraded copies at noise 0, 0.2, ..., 1.0 (ground truth: less noise = more faithful)
are scored by every evaluation method over the sparsity grid; the methods are then judged by how well their
MoRF and LeRF curves recover the ground-truth order (``ffidelity.benchmark.correlation``). Every expensive artefact
(trained models, explanations, each method's curves) is cached under the output folder, so a rerun resumes.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ffidelity.benchmark.config import METHODS, BenchmarkConfig, StaleRunError
from ffidelity.benchmark.correlation import IDEAL, macro_scores, micro_per_level, micro_ranks, nanmean
from ffidelity.benchmark.distributed import evaluate_sharded, world
from ffidelity.benchmark.result import BenchmarkResult
from ffidelity.benchmark.tasks import Task, get_task
from ffidelity.explainers.core import explain
from ffidelity.explainers.degrade import degrade
from ffidelity.metrics.finetune import evaluator_folder
from ffidelity.models.training import CorruptFileWarning, fit_classifier
from ffidelity.utils import atomic
from ffidelity.utils.seeding import seeded_generator


# -- the run ---------------------------------------------------------------------------------------------------
def run(config: BenchmarkConfig | None = None, out_dir: str | Path | None = None, *, task: Task | None = None,
        devices: int = 1, evaluate: bool = True, **overrides: Any) -> BenchmarkResult:
    """Runs the controlled experiment and (with ``out_dir``) writes results.json, table.csv, plots, report.html.

    Args:
        config: the settings; keyword ``overrides`` replace single fields (``run(dataset="digits", seeds=1)``).
        out_dir: output and cache folder; rerunning with the same folder reuses everything computed.
        task: a prebuilt task (otherwise ``config.dataset`` is looked up in ``ffidelity.benchmark.tasks.TASKS``).
        devices: processes that share the evaluation (test inputs are sharded, results gathered; identical
            numbers to one process). Models and explanations are computed once, first, in this process.
        evaluate: ``False`` stops after training and explaining (fills the cache; returns ``None``).
    """
    cfg = config or BenchmarkConfig()
    if overrides:
        cfg = BenchmarkConfig(**{**asdict(cfg), **overrides})
    cfg.check()
    if devices > 1:
        from ffidelity.benchmark.distributed import launch

        if out_dir is None:
            raise ValueError("a run on several devices needs an output folder (out_dir) to share its cache")
        if task is not None:
            raise ValueError("a run on several devices rebuilds its task by name; pass config.dataset, not task=")
        run(cfg, out_dir, evaluate=False)  # train models and explain once, into the cache
        launch(_distributed_run, devices, cfg, str(out_dir))
        return run(cfg, out_dir)  # everything is cached now: gathers the results in this process
    return _run(cfg, out_dir, task, evaluate=evaluate)


def _distributed_run(cfg: BenchmarkConfig, out_dir: str) -> None:
    _run(cfg, out_dir, None, evaluate=True)


def _run(cfg: BenchmarkConfig, out_dir: str | Path | None, task: Task | None, evaluate: bool = True
         ) -> BenchmarkResult:
    rank = world()[0]
    out = Path(out_dir) if out_dir is not None else None
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    task = task or get_task(cfg.dataset, root=cfg.root, seed=cfg.model_seed, quick=cfg.quick)
    if cfg.epochs is not None or cfg.finetune_epochs is not None:
        task = copy.copy(task)
        task.fit = {**task.fit, **({"epochs": cfg.epochs} if cfg.epochs is not None else {})}
        task.finetune = {**task.finetune, **({"epochs": cfg.finetune_epochs} if cfg.finetune_epochs is not None else {})}
    explainers = tuple(cfg.explainers or task.explainers)
    methods = tuple(cfg.methods or default_methods(task))
    n_test = min(cfg.n_test or len(task.y_test), len(task.y_test))
    x_test, y_test = task.x_test[:n_test], task.y_test[:n_test]
    groups = None if task.degrade_groups is None else task.degrade_groups[:n_test]
    sub = (lambda *p: out.joinpath(*p)) if out is not None else (lambda *p: None)
    if out is not None:
        _check_run_key(out, cfg, n_test, task)

    # 1. the original model and the explanation-agnostic fine-tuned copy
    torch.manual_seed(cfg.model_seed)
    t = time.perf_counter()
    model = fit_classifier(task.make_model(), (task.x_train, task.y_train), seed=cfg.model_seed,
                           out_dir=sub("models", "original"), progress=cfg.progress, **task.fit)
    ffid = cfg.metric("ffid", cfg.model_seed)
    ffid.units = task.units
    tuned = None
    if "ffid" in methods:
        tuned = ffid.finetune(model, (task.x_train, task.y_train),
                              out_dir=sub("models", evaluator_folder(cfg.beta, task.units)), **task.finetune)
    timings["train_models_s"] = time.perf_counter() - t
    models = _model_report(model, tuned, x_test, y_test, task, cfg)

    # 2. explanations (cached as unit scores)
    t = time.perf_counter()
    scores_orig = {e: _explanation_scores(e, model, x_test, y_test, task, sub("explanations", f"original_{e}.safetensors"),
                                          cfg) for e in explainers}
    scores_tuned = {}
    if tuned is not None:
        scores_tuned = {e: _explanation_scores(e, tuned, x_test, y_test, task,
                                               sub("explanations", f"finetuned_{e}.safetensors"), cfg) for e in explainers}
    timings["explain_s"] = time.perf_counter() - t

    # 3. ROAR models, one per explainer
    roar_models: dict[str, nn.Module] = {}
    if "roar" in methods:
        t = time.perf_counter()
        for e in explainers:
            train_scores = _explanation_scores(e, model, task.x_train, task.y_train, task,
                                               sub("explanations", f"original_train_{e}.safetensors"), cfg)
            roar = cfg.metric("roar", cfg.model_seed)
            roar.units = task.units
            roar_models[e] = roar.retrain(task.make_model, task.x_train, task.y_train, train_scores,
                                          out_dir=sub("models", f"roar_{e}"), **task.fit)
        timings["roar_retrain_s"] = time.perf_counter() - t

    if not evaluate:
        return None  # type: ignore[return-value]

    # 4. the curves of every degraded copy under every method
    t = time.perf_counter()
    method_list = list(methods) + (["ffid_orig"] if cfg.original_explanations and tuned is not None else [])
    records = []
    for seed in cfg.seed_range():
        for e in explainers:
            for method in method_list:
                eval_model, base_scores = _model_and_scores(method, e, model, tuned, roar_models, scores_orig,
                                                            scores_tuned)
                for ni, noise in enumerate(cfg.noises):
                    key = sub("curves", f"seed{seed}", e, method, f"noise{noise:.2f}.json")
                    attributions = degrade(base_scores, noise, seed=seed * 1000 + ni, groups=groups)
                    records.append(_curve(cfg, method, seed, eval_model, x_test, y_test, attributions, task, key,
                                          explainer=e, noise=noise))
        if cfg.random_baseline:
            for method in method_list:
                eval_model, _ = _model_and_scores(method, explainers[0], model, tuned, roar_models, scores_orig,
                                                  scores_tuned)
                key = sub("curves", f"seed{seed}", "random", method, "noise0.00.json")
                rand = torch.rand(x_test.shape[0], task.units.num_units(x_test),
                                  generator=seeded_generator(seed, 0xBA5E))
                records.append(_curve(cfg, method, seed, eval_model, x_test, y_test, rand, task, key,
                                      explainer="random", noise=0.0))
    timings["evaluate_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0

    curves = pd.DataFrame(records)
    s_grid = cfg.sparsity_grid()
    result = BenchmarkResult(config=cfg, sparsities=s_grid, curves=curves,
                             scores=_score_table(curves, np.asarray(cfg.noises), s_grid, explainers),
                             baseline=_baseline_table(curves, s_grid), models=models, timings=timings,
                             out_dir=out)
    if out is not None and rank == 0:
        from ffidelity.benchmark.report import write_outputs

        write_outputs(result, task)
    return result


def _check_run_key(out: Path, cfg: BenchmarkConfig, n_test: int, task: Any) -> None:
    """Refuses to reuse a folder whose cached models and explanations were made with other settings.

    Curves are checked one by one against their metric's parameters (so ``--n-samples`` or ``--mode`` may change
    between reruns); models and explanations depend on the settings below (the task's training recipes
    included), which must stay the same.
    """
    key = {"dataset": cfg.dataset, "root": cfg.root, "quick": cfg.quick, "model_seed": cfg.model_seed,
           "n_test": n_test, "epochs": cfg.epochs, "finetune_epochs": cfg.finetune_epochs,
           "fit": json.loads(json.dumps(task.fit, default=str)),
           "finetune": json.loads(json.dumps(task.finetune, default=str))}
    path = out / "run_key.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = None
        if isinstance(old, dict) and old != key:
            diff = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in key.items() if old.get(k) != v)
            raise StaleRunError(f"{out} holds a benchmark run with other settings ({diff}); its cached models and "
                             "explanations do not apply: choose another output folder")
    if world()[0] == 0:
        atomic.write_json(path, key)


def default_methods(task: Task) -> tuple[str, ...]:
    """Every method that applies to the task: ROAD only on images (its imputation is 2-D)."""
    from ffidelity.units.grid import GridUnits

    is_image = isinstance(task.units, GridUnits) and len(task.units.block) == 2
    return METHODS if is_image else tuple(m for m in METHODS if m != "road")


def _model_and_scores(method, e, model, tuned, roar_models, scores_orig, scores_tuned):
    if method == "ffid":
        return tuned, scores_tuned[e]
    if method == "ffid_orig":
        return tuned, scores_orig[e]
    if method == "roar":
        return roar_models[e], scores_orig[e]
    return model, scores_orig[e]


def _curve(cfg: BenchmarkConfig, method: str, seed: int, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
           attributions: torch.Tensor, task: Task, key: Path | None, *, explainer: str, noise: float) -> dict:
    metric = cfg.metric("ffid" if method == "ffid_orig" else method, seed)
    metric.units = task.units
    metric.progress = False
    params = {**metric.get_params(), "n_inputs": int(x.shape[0])}
    if task.degrade_groups is not None:  # copies degraded within groups are other curves than copies degraded across
        params["degrade_within_groups"] = True
    if key is not None and key.exists():
        try:
            cached = json.loads(key.read_text())
            if not isinstance(cached, dict) or not {"fid_plus", "fid_minus", "auc_plus", "auc_minus"} <= cached.keys():
                raise ValueError("fields missing")
            if cached.pop("params", None) == json.loads(json.dumps(params)):
                return cached  # one computed with other settings (n_samples, mode, ...) is recomputed
        except (ValueError, UnicodeDecodeError) as exc:  # a damaged cache entry is recomputed
            warnings.warn(f"rebuilding damaged cache entry {key} ({exc})", CorruptFileWarning, stacklevel=2)
    res = evaluate_sharded(metric, model, x, y, attributions)
    rec = {"seed": seed, "explainer": explainer, "method": method, "noise": noise,
           "fid_plus": res.fid_plus.tolist(), "fid_minus": res.fid_minus.tolist(),
           "auc_plus": res.auc_plus, "auc_minus": res.auc_minus, "params": params}
    per_plus, per_minus = res.per_sample_auc()  # per test input: standard errors and paired comparisons
    rec.update(auc_plus_per_input=per_plus.tolist(), auc_minus_per_input=per_minus.tolist())
    if key is not None and world()[0] == 0:
        atomic.write_json(key, rec)
    rec.pop("params")
    return rec


def _explanation_scores(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task,
                        path: Path | None, cfg: BenchmarkConfig) -> torch.Tensor:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    if path is not None and path.exists():
        try:
            return load_file(str(path))["scores"]
        except (SafetensorError, KeyError, OSError) as exc:  # a damaged cache entry is recomputed
            warnings.warn(f"rebuilding damaged cache entry {path} ({type(exc).__name__}: {exc})", CorruptFileWarning,
                          stacklevel=2)
    kwargs = dict(task.explainer_kwargs.get(name, {}))
    attr = explain(name, model, x, y, batch_size=64, progress=cfg.progress, **kwargs)
    scores = task.units.scores(attr, x).float()
    if not torch.isfinite(scores).all():
        raise ValueError(f"explainer {name!r} produced NaN or inf attributions on {task.name}")
    if path is not None:
        with atomic.atomic_path(path) as tmp:
            save_file({"scores": scores.contiguous()}, str(tmp))
    return scores


def _model_report(model: nn.Module, tuned: nn.Module | None, x: torch.Tensor, y: torch.Tensor, task: Task,
                  cfg: BenchmarkConfig) -> dict[str, float]:
    from ffidelity.metrics.finetune import masked_accuracy

    def acc(m: nn.Module) -> float:
        return masked_accuracy(m, x, y, task.units, 0.0)

    out = {"original_clean_acc": acc(model),
           "original_masked_acc": masked_accuracy(model, x, y, task.units, cfg.beta)}
    if tuned is not None:
        out["finetuned_clean_acc"] = acc(tuned)
        out["finetuned_masked_acc"] = masked_accuracy(tuned, x, y, task.units, cfg.beta)
    return out


def _score_table(curves: pd.DataFrame, noises: np.ndarray, sparsities: np.ndarray,
                 explainers: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    deg = curves[curves["explainer"].isin(explainers)]
    for (seed, explainer), g in deg.groupby(["seed", "explainer"], sort=False):
        micro_by_method: dict[str, dict[str, np.ndarray]] = {}
        for method, gm in g.groupby("method", sort=False):
            gm = gm.set_index("noise").loc[list(noises)]
            plus = np.stack(gm["fid_plus"].to_numpy())
            minus = np.stack(gm["fid_minus"].to_numpy())
            macro = macro_scores(plus, minus, noises, sparsities)
            micro = micro_per_level(plus, minus, noises)
            micro_by_method[method] = micro
            row = {"seed": seed, "explainer": explainer, "method": method}
            row.update({f"macro_{k}": v for k, v in macro.items()})
            row.update({f"micro_{k}": nanmean(v) for k, v in micro.items()})
            row.update({f"micro_undefined_{k}": int((~np.isfinite(v)).sum()) for k, v in micro.items()})
            rows.append(row)
        for score in IDEAL:
            ranks = micro_ranks({m: v[score] for m, v in micro_by_method.items()}, score)
            for row in rows[-len(micro_by_method):]:
                row[f"micro_rank_{score}"] = ranks[row["method"]]
    return pd.DataFrame(rows)


def _baseline_table(curves: pd.DataFrame, sparsities: np.ndarray) -> pd.DataFrame:
    """MoRF/LeRF areas of each explainer at noise 0 and of the random explainer, mean over seeds."""
    base = curves[curves["noise"] == 0.0]
    g = base.groupby(["method", "explainer"], sort=False)[["auc_plus", "auc_minus"]].mean().reset_index()
    return g.rename(columns={"auc_plus": "morf_area", "auc_minus": "lerf_area"})
