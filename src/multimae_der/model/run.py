"""The run folder: everything needed to rebuild, evaluate or resume a trained model, without unpickling.

Layout::

    RUN/config.json          the full configuration: class names, the HF model config ("model"), fusion,
                             preprocessing (a PrepareConfig dict), data (dataset, root, cache, label set,
                             held-out fold), training hyper-parameters (written first, atomically)
    RUN/model.safetensors    final weights (HF VideoMAEForVideoClassification keys), written when training ends
    RUN/checkpoints/         Lightning checkpoints: last.ckpt (resume after a kill), best.ckpt (with validation)
    RUN/history.json         per-epoch train loss (and val_* metrics), the same after a kill and resume
    RUN/logs/                CSV logs (one version_N folder per attempt)
    RUN/metrics.json         written by ``evaluate`` (plus confusion_matrix.png)

:func:`load_run` reads only ``config.json`` and ``model.safetensors``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import VideoMAEConfig

from ffidelity.utils import atomic
from multimae_der.model.collate import FusionCollate
from multimae_der.model.videomae import MultiMAEClassifier, build_classifier

RUN_FORMAT = "multimae-der-run/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"


@dataclass
class Run:
    """A loaded run: the classifier (eval mode, CPU), its configuration and class names."""

    path: Path
    model: MultiMAEClassifier
    config: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    @property
    def fusion(self) -> dict[str, Any]:
        return dict(self.config["fusion"])

    @property
    def image_size(self) -> int:
        return int(self.config["model"]["image_size"])

    @property
    def preprocessing(self) -> Any:
        """The :class:`~multimae_der.data.prepare.PrepareConfig` the run's clips were prepared with (runs written
        before it was recorded get the defaults at the model's image size)."""
        from multimae_der.data.prepare import PrepareConfig

        recorded = self.config.get("preprocessing") or {}
        return PrepareConfig.from_dict(recorded) if recorded else PrepareConfig(image_size=self.image_size)

    @property
    def data(self) -> dict[str, Any]:
        """Where the training data came from: ``dataset``, ``root``, ``cache``, ``label_set``, ``fold``, ..."""
        return dict(self.config.get("data") or {})

    def collate(self) -> FusionCollate:
        """The batching/fusion step this run was trained with."""
        f = self.fusion
        return FusionCollate(f["strategy"], num_frames=f["num_frames"], seed=f["seed"],
                             image_size=self.image_size, options=dict(f.get("options", {})))


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """``RUN/config.json``, with clear errors for a missing or foreign file."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {path.name} is missing")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != RUN_FORMAT:
        raise ValueError(f"{path} is not a MultiMAE-DER run configuration (format {RUN_FORMAT!r} expected)")
    return cfg


def write_run_config(run_dir: str | Path, config: dict[str, Any]) -> None:
    """Writes ``config`` as the run's ``config.json`` (atomically), tagged with the run format."""
    atomic.write_json(Path(run_dir) / CONFIG_FILE, {"format": RUN_FORMAT, **config})


def model_config(run_config: dict[str, Any]) -> VideoMAEConfig:
    """The ``VideoMAEConfig`` stored in a run configuration (its ``model`` entry)."""
    return VideoMAEConfig.from_dict(dict(run_config["model"]))


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    """A state dict as safetensors, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic.atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})


def load_run(run_dir: str | Path) -> Run:
    """Rebuilds a trained classifier from ``config.json`` + ``model.safetensors`` (no pickle involved).

    Raises:
        FileNotFoundError: not a run folder, or training has not finished (no ``model.safetensors``).
        ValueError: the weights do not fit the configured model.
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{run_dir} has no {WEIGHTS_FILE}: training has not finished (rerun train with "
                                "the same folder to resume)")
    model = build_classifier(model_config(cfg))
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise ValueError(f"{weights} is not a readable safetensors file ({exc}); rerun train with the same folder "
                         "to rewrite it") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ValueError(f"{weights} does not fit the configured model: {str(exc).splitlines()[-1]}") from None
    if missing or unexpected:
        raise ValueError(f"{weights} does not fit the configured model: missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}")
    return Run(run_dir, model.eval(), cfg)


#: folders never searched for runs: a run's own internals and prepared-clip caches
_NOT_RUNS = {"checkpoints", "logs", "lightning_logs", ".multimae-cache", "__pycache__"}


def is_run(folder: str | Path) -> bool:
    """``folder`` holds a finished run: a MultiMAE-DER ``config.json`` and ``model.safetensors``."""
    folder = Path(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        return False
    try:
        read_run_config(folder)
    except (FileNotFoundError, ValueError):
        return False
    return True


def find_runs(folder: str | Path, *, max_depth: int = 4) -> list[Path]:
    """Finished runs at or below ``folder`` (at most ``max_depth`` levels down), sorted by path.

    Lets commands that take ``--run`` accept a folder of runs, such as ``demo-output`` or a ``cv`` output.
    Hidden folders, caches and a run's own ``checkpoints`` / ``logs`` are not searched.
    """
    root = Path(folder)
    found: list[Path] = []
    frontier = [root]
    for _ in range(max_depth + 1):
        below: list[Path] = []
        for d in frontier:
            if is_run(d):
                found.append(d)
                continue  # a run's subfolders are its own
            try:
                children = sorted(p for p in d.iterdir() if p.is_dir())
            except OSError:
                continue
            below += [p for p in children if p.name not in _NOT_RUNS and not p.name.startswith(".")]
        frontier = below
    return sorted(found)
