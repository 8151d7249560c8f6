"""Fidelity, R-Fidelity and F-Fidelity of explanations of a user's own model, with every output of a run.

``run(EvaluateConfig(...))`` loads the model (:mod:`ffidelity.evaluate.model`), the inputs and any attributions
(:mod:`ffidelity.evaluate.data`), computes the asked explainers, fine-tunes the F-Fidelity evaluator when F-Fidelity
is asked, evaluates every (metric, explanation) pair with the public API and writes results.json, table.csv,
curves.csv, one curve plot per metric, report.html and config.json. The outputs are written into a temporary
folder beside ``out`` that is renamed to ``out`` only when all of them are complete: a failed run leaves nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ffidelity.evaluate.config import (
    METRIC_NAMES,
    METRICS,
    EvaluateConfig,
    Evaluation,
    resolve_explainer,
    units_for,
)
from ffidelity.evaluate.data import UserData, check_labels, load_attributions, load_data
from ffidelity.evaluate.model import LoadedModel, load_model, probe_model, short_error
from ffidelity.explainers.core import EXPLAINER_ALIASES, explain
from ffidelity.metrics.engine import FFidelity, Fidelity
from ffidelity.metrics.result import FidelityResult
from ffidelity.metrics.schedule import PLAIN_BATCH
from ffidelity.units.base import Units


def run(cfg: EvaluateConfig) -> Evaluation:
    """Runs the evaluation described by ``cfg`` and writes its outputs to ``cfg.out``.

    Raises:
        ValueError, FileNotFoundError, FileExistsError: one-line messages naming the offending file or option.
    """
    t_start = time.perf_counter()
    cfg.check()
    out = Path(cfg.out)
    _check_out(out, cfg.overwrite)
    timings: dict[str, float] = {}
    loaded = load_model(cfg.model)
    data = load_data(cfg.inputs, labels=cfg.labels, image_size=cfg.image_size, mean=cfg.mean, std=cfg.std)
    n_classes = probe_model(loaded, data.x, data.path)
    check_labels(data, n_classes, loaded.path)
    units = units_for(data.x, cfg.patch, cfg.reference, data.path)
    plain = cfg.batch_size if isinstance(cfg.batch_size, int) else PLAIN_BATCH  # unmasked passes
    targets = data.y if data.y is not None else _predict(loaded.model, data.x, plain)

    given: dict[str, torch.Tensor] = {}  # attributions read from files, by the name they are reported under
    read_from: dict[str, str] = {}
    files = [(data.path, data.attributions)] if data.attributions is not None else []
    if cfg.attributions is not None:
        files.append((Path(cfg.attributions), load_attributions(cfg.attributions, data.x.shape[0])))
    for path, attr in files:
        _check_attribution_shape(attr, data.x, units, path)
        name = f"file:{path.name}" if f"file:{path.name}" not in given else f"file:{path}"
        given[name], read_from[name] = attr, f"read from {path}"
    if not cfg.explainers and not given:
        raise ValueError(f"{data.path}: nothing to evaluate: pass --explainers (e.g. saliency,ig) and/or "
                         "--attributions FILE, or store an 'attributions' array beside 'x'")

    tuned = None
    if "ffid" in cfg.metrics:
        t = time.perf_counter()
        tuned = _finetune(cfg, loaded, data, units, n_classes)
        timings["finetune_s"] = time.perf_counter() - t

    accuracy = {"model": _accuracy(loaded.model, data.x, data.y, plain),
                "finetuned": _accuracy(tuned, data.x, data.y, plain) if tuned is not None else None}
    results: dict[str, dict[str, FidelityResult]] = {}
    explained: dict[tuple[int, str], torch.Tensor] = {}
    sources: dict[str, dict[str, str]] = {}
    t = time.perf_counter()
    for m in cfg.metrics:
        model = tuned if m == "ffid" and tuned is not None else loaded.model
        metric = cfg.metric(m, units)
        results[m] = {}
        sources[m] = {**{e: f"explainer {e} on the {'fine-tuned ' if model is tuned else ''}model"
                         for e in cfg.explainers}, **read_from}
        for e in cfg.explainers:
            key = (id(model), e)
            if key not in explained:
                explained[key] = _explain(e, model, data.x, targets, loaded.path, cfg.progress)
            results[m][e] = _evaluate(metric, model, data.x, targets, explained[key], loaded.path, e)
        for name, attr in given.items():
            results[m][name] = _evaluate(metric, model, data.x, targets, attr, loaded.path, name)
    timings["evaluate_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start
    ev = Evaluation(cfg, loaded, data, n_classes, results, sources, accuracy, timings)
    from ffidelity.evaluate.report import write_outputs

    ev.out = publish(out, cfg.overwrite, lambda tmp: write_outputs(ev, tmp))
    return ev


# -- steps --------------------------------------------------------------------------------------------------------
def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: --out must be a folder, and this is a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: the output folder exists and is not empty; pass --overwrite or a new --out")


def publish(out: Path, overwrite: bool, write: Any) -> Path:
    """Calls ``write(tmp)`` on a fresh folder beside ``out`` and renames it to ``out`` once ``write`` returns;
    on any error the temporary folder is removed and ``out`` is left as it was."""
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        write(tmp)
        if out.is_dir() and any(out.iterdir()):  # --overwrite: the old folder goes only once the new is in
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        elif out.is_dir():
            out.rmdir()
        try:
            os.replace(tmp, out)
        except OSError:
            if old is not None:
                os.replace(old, out)
                old = None
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)
    return out


def _check_attribution_shape(attr: torch.Tensor, x: torch.Tensor, units: Units, path: Path) -> None:
    try:
        units.scores(attr, x)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: {short_error(exc).removeprefix('ValueError: ')}") from None


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(x[s : s + batch_size]).argmax(-1) for s in range(0, x.shape[0], batch_size)])


def _accuracy(model: nn.Module | None, x: torch.Tensor, y: torch.Tensor | None, batch_size: int) -> float | None:
    if model is None or y is None:
        return None
    model.eval()
    return float((_predict(model, x, batch_size) == y).double().mean())


def _finetune(cfg: EvaluateConfig, loaded: LoadedModel, data: UserData, units: Units, n_classes: int) -> nn.Module:
    ft_path = Path(str(cfg.finetune_data))
    ft = load_data(ft_path, labels=cfg.finetune_labels, image_size=cfg.image_size, mean=cfg.mean, std=cfg.std)
    if ft.y is None:
        raise ValueError(f"{ft_path}: fine-tuning needs labels: a 'y' array, class subfolders, or "
                         "--finetune-labels CSV for a flat image folder")
    if ft.x.shape[1:] != data.x.shape[1:]:
        raise ValueError(f"{ft_path}: fine-tuning inputs have shape {tuple(ft.x.shape[1:])} per input while the "
                         f"inputs of {data.path} have {tuple(data.x.shape[1:])}")
    check_labels(ft, n_classes, loaded.path)
    metric = cfg.metric("ffid", units)
    assert isinstance(metric, FFidelity)
    try:
        tuned = metric.finetune(loaded.model, (ft.x, ft.y), epochs=cfg.finetune_epochs, lr=cfg.finetune_lr)
    except Exception as exc:  # the user's model may fail in training mode, refuse gradients, ...
        raise ValueError(f"{loaded.path}: fine-tuning on {ft_path} failed ({short_error(exc)})") from None
    return tuned.eval()


def _explain(name: str, model: nn.Module, x: torch.Tensor, targets: torch.Tensor, model_path: Path,
             progress: bool) -> torch.Tensor:
    try:
        attr = explain(name, model, x, targets, progress=progress)
    except Exception as exc:  # Captum on a model it cannot explain (no conv layer for gradcam, ...)
        raise ValueError(f"{model_path}: explainer {name!r} failed ({short_error(exc)})") from None
    if not torch.isfinite(attr).all():
        raise ValueError(f"{model_path}: explainer {name!r} produced NaN or inf attributions")
    return attr


def _evaluate(metric: Fidelity, model: nn.Module, x: torch.Tensor, targets: torch.Tensor, attr: torch.Tensor,
              model_path: Path, name: str) -> FidelityResult:
    try:
        return metric.evaluate(model, x, targets, attr)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{model_path}: {metric.method} of {name} failed ({short_error(exc)})") from None


__all__ = ["EXPLAINER_ALIASES", "METRICS", "METRIC_NAMES", "EvaluateConfig", "Evaluation", "publish",
           "resolve_explainer", "run", "units_for"]
