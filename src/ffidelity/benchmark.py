"""The controlled experiment of the F-Fidelity paper, end to end, with a resumable cache and a report.

For each base explainer, degraded copies at noise 0, 0.2, ..., 1.0 (ground truth: less noise = more faithful)
are scored by every evaluation method over the sparsity grid; the methods are then judged by how well their
MoRF and LeRF curves recover the ground-truth order (``ffidelity.correlation``). Every expensive artefact
(trained models, explanations, each method's curves) is cached under the output folder, so a rerun resumes.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ffidelity import atomic
from ffidelity.correlation import IDEAL, macro_scores, micro_per_level, micro_ranks, nanmean
from ffidelity.distributed import evaluate_sharded, world
from ffidelity.engine import FFidelity, Fidelity, RFidelity, seeded_generator
from ffidelity.explainers import degrade, explain
from ffidelity.finetune import evaluator_folder
from ffidelity.road import ROAD
from ffidelity.roar import ROAR
from ffidelity.tasks import Task, get_task
from ffidelity.training import CorruptFileWarning, fit_classifier

METHODS = ("fid", "roar", "rfid", "ffid", "road")
METHOD_NAMES = {"fid": "Fidelity", "roar": "ROAR", "rfid": "R-Fidelity", "ffid": "F-Fidelity", "road": "ROAD",
                "ffid_orig": "F-Fidelity (explanations of the original model)"}
NOISES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SCORES = ("morf_vs_gt", "lerf_vs_gt", "morf_vs_lerf")
SCORE_NAMES = {"morf_vs_gt": "MoRF vs GT", "lerf_vs_gt": "LeRF vs GT", "morf_vs_lerf": "MoRF vs LeRF"}


class StaleRunError(ValueError):
    """The output folder holds a benchmark run made with other settings (its cached models do not apply)."""


@dataclass
class BenchmarkConfig:
    """Settings of one benchmark run (saved as ``config`` in results.json).

    ``explainers=None`` takes the task's defaults; ``methods=None`` takes every method that applies (ROAD
    imputes pixels, so it applies to images only); ``quick`` shrinks everything so the run takes minutes.
    ``epochs`` / ``finetune_epochs`` override the task's training and F-Fidelity fine-tuning epochs (``None``:
    the task's own).
    """

    dataset: str = "digits"
    root: str | None = None
    explainers: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    seeds: int = 5
    noises: tuple[float, ...] = NOISES
    sparsities: tuple[float, ...] | None = None
    n_test: int | None = 200
    n_samples: int = 50
    alpha_plus: float = 0.5
    alpha_minus: float = 0.5
    beta: float = 0.1
    beta_minus: float | None = None
    mode: str = "acc"
    batch_size: int | str = "auto"
    original_explanations: bool = True
    random_baseline: bool = True
    quick: bool = False
    model_seed: int = 0
    first_seed: int = 0
    epochs: int | None = None
    finetune_epochs: int | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick_preset(cls, **overrides: Any) -> BenchmarkConfig:
        """One seed, 9 sparsities, 100 test inputs, 10 samples: a few minutes on 2 CPU cores."""
        base = {"seeds": 1, "sparsities": tuple(round(0.1 * i, 2) for i in range(1, 10)), "n_test": 100,
                "n_samples": 10, "quick": True}
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def sparsity_grid(self) -> np.ndarray:
        return Fidelity(sparsities=self.sparsities).sparsity_grid()

    def seed_range(self) -> range:
        """The degradation / Monte-Carlo seeds: ``first_seed`` .. ``first_seed + seeds - 1``."""
        return range(self.first_seed, self.first_seed + self.seeds)

    def check(self) -> None:
        unknown = set(self.methods or ()) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if len(self.noises) < 2:
            raise ValueError("at least two noise levels are needed to rank degraded explainers")
        if self.n_test is not None and self.n_test < 1:
            raise ValueError(f"n_test must be >= 1, got {self.n_test}")
        for name in ("epochs", "finetune_epochs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.metric("ffid", 0)  # validates alpha, beta, sparsities, n_samples, mode

    def metric(self, method: str, seed: int) -> Fidelity:
        common = {"sparsities": self.sparsities, "mode": self.mode, "seed": seed, "batch_size": self.batch_size,
                  "progress": self.progress}
        if method in ("fid",):
            return Fidelity(**common)
        if method == "roar":
            return ROAR(**common)
        if method == "road":
            return ROAD(**common)
        if method == "rfid":
            return RFidelity(self.alpha_plus, self.alpha_minus, self.n_samples, **common)
        return FFidelity(self.beta, self.alpha_plus, self.alpha_minus, self.n_samples, beta_minus=self.beta_minus,
                         **common)


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


# -- the run ---------------------------------------------------------------------------------------------------
def run(config: BenchmarkConfig | None = None, out_dir: str | Path | None = None, *, task: Task | None = None,
        devices: int = 1, evaluate: bool = True, **overrides: Any) -> BenchmarkResult:
    """Runs the controlled experiment and (with ``out_dir``) writes results.json, table.csv, plots, report.html.

    Args:
        config: the settings; keyword ``overrides`` replace single fields (``run(dataset="digits", seeds=1)``).
        out_dir: output and cache folder; rerunning with the same folder reuses everything computed.
        task: a prebuilt task (otherwise ``config.dataset`` is looked up in ``ffidelity.tasks.TASKS``).
        devices: processes that share the evaluation (test inputs are sharded, results gathered; identical
            numbers to one process). Models and explanations are computed once, first, in this process.
        evaluate: ``False`` stops after training and explaining (fills the cache; returns ``None``).
    """
    cfg = config or BenchmarkConfig()
    if overrides:
        cfg = BenchmarkConfig(**{**asdict(cfg), **overrides})
    cfg.check()
    if devices > 1:
        from ffidelity.distributed import launch

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
        from ffidelity.benchmark_report import write_outputs

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
    from ffidelity.units import GridUnits

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
    from ffidelity.finetune import masked_accuracy

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
