"""What ``ffidelity evaluate`` is asked to do (``EvaluateConfig``) and what a run computed (``Evaluation``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ffidelity.evaluate.data import UserData
from ffidelity.evaluate.model import LoadedModel
from ffidelity.explainers.core import resolve_explainer as _resolve
from ffidelity.metrics.engine import FFidelity, Fidelity, RFidelity
from ffidelity.metrics.result import FidelityResult
from ffidelity.units.base import Units
from ffidelity.units.grid import GridUnits, ImageUnits

METRICS: tuple[str, ...] = ("fid", "rfid", "ffid")
METRIC_NAMES = {"fid": "Fidelity", "rfid": "R-Fidelity", "ffid": "F-Fidelity"}
def resolve_explainer(name: str) -> str:
    """The registered name of ``name`` (aliases such as ``ig`` resolved); unknown names raise ``ValueError``."""
    try:
        return _resolve(name)
    except ValueError as exc:
        raise ValueError(f"{exc} (in --explainers)") from None


@dataclass
class EvaluateConfig:
    """Settings of one ``ffidelity evaluate`` run (saved as config.json).

    Attributes:
        model: a TorchScript file or a Hugging Face ``save_pretrained`` folder.
        inputs: an ``.npz`` / ``.pt`` of arrays, or a folder of images.
        out: the output folder.
        explainers: registered explainers (or aliases) to compute.
        attributions: an ``.npz`` / ``.pt`` with one array of attributions of the inputs.
        metrics: any of ``fid``, ``rfid``, ``ffid``.
        labels: a ``file,label`` CSV for a flat image folder.
        image_size, mean, std: image resizing and per-channel normalisation.
        beta, alpha, n_samples, sparsities, mode, seed, batch_size: the metrics' settings.
        patch, reference: a unit is a ``patch`` x ``patch`` pixel block; removed units become ``reference``.
        finetune_data, finetune_labels, finetune_epochs, finetune_lr: F-Fidelity's random-mask fine-tuning.
        overwrite: replace a non-empty ``out``.
        progress: show progress bars.
    """

    model: str
    inputs: str
    out: str
    explainers: tuple[str, ...] = ()
    attributions: str | None = None
    metrics: tuple[str, ...] = METRICS
    labels: str | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    beta: float = 0.1
    alpha: float = 0.5
    n_samples: int = 50
    sparsities: tuple[float, ...] | None = None
    mode: str = "acc"
    seed: int = 0
    batch_size: int | str = "auto"
    patch: int = 1
    reference: float = 0.0
    finetune_data: str | None = None
    finetune_labels: str | None = None
    finetune_epochs: int = 5
    finetune_lr: float = 1e-4
    overwrite: bool = False
    progress: bool = False

    def check(self) -> None:
        """Checks every setting before any file is read; raises ``ValueError`` naming the option."""
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"--metrics must be a comma-separated subset of {', '.join(METRICS)}, got "
                             f"{','.join(self.metrics) or 'nothing'}")
        self.explainers = tuple(dict.fromkeys(resolve_explainer(e) for e in self.explainers))
        if "ffid" in self.metrics and self.finetune_data is None:
            raise ValueError("F-Fidelity (ffid in --metrics) evaluates on a copy of the model fine-tuned on random "
                             "masks: pass --finetune-data (an .npz/.pt with x and y, or a labelled image folder, "
                             "ideally the training data), or leave ffid out with --metrics fid,rfid")
        if self.finetune_epochs < 1:
            raise ValueError(f"--finetune-epochs must be >= 1, got {self.finetune_epochs}")
        if not (math.isfinite(self.finetune_lr) and self.finetune_lr > 0):
            raise ValueError(f"--finetune-lr must be positive, got {self.finetune_lr}")
        if self.patch < 1:
            raise ValueError(f"--patch must be >= 1, got {self.patch}")
        if not math.isfinite(self.reference):
            raise ValueError(f"--reference must be a finite number, got {self.reference}")
        for m in self.metrics:
            try:
                self.metric(m)  # the engine checks its parameters
            except ValueError as exc:
                flag = next((f for word, f in _FLAGS if word in str(exc)), "settings")
                raise ValueError(f"{flag}: {exc}") from None

    def metric(self, name: str, units: Units | None = None) -> Fidelity:
        """The metric ``name`` with this run's settings (what a Python user would build)."""
        common: dict[str, Any] = {"sparsities": self.sparsities, "mode": self.mode, "units": units,
                                  "seed": self.seed, "batch_size": self.batch_size, "progress": self.progress}
        if name == "fid":
            return Fidelity(**common)
        if name == "rfid":
            return RFidelity(alpha_plus=self.alpha, alpha_minus=self.alpha, n_samples=self.n_samples, **common)
        return FFidelity(beta=self.beta, alpha_plus=self.alpha, alpha_minus=self.alpha, n_samples=self.n_samples,
                         **common)

    def settings(self) -> dict[str, Any]:
        """The settings as a JSON-able dict (config.json)."""
        return asdict(self)


#: words of the engine's parameter errors -> the command-line option to name
_FLAGS = (("sparsit", "--sparsities"), ("beta", "--beta"), ("alpha", "--alpha"), ("n_samples", "--n-samples"),
          ("batch_size", "--batch-size"), ("mode", "--mode"))


def units_for(x: torch.Tensor, patch: int, reference: float, path: Path) -> Units:
    """Image units for (N, C, H, W) inputs; one unit per feature (or per position of (N, C, L) inputs) else."""
    if x.ndim == 4:
        return ImageUnits(patch=patch, reference=reference)
    if x.ndim == 3:
        return GridUnits(block=(patch,), channel_dim=1, reference=reference)
    if x.ndim == 2:
        return GridUnits(block=(patch,), channel_dim=None, reference=reference)
    raise ValueError(f"{path}: inputs of shape {tuple(x.shape)} ({x.ndim} axes): the command takes (N, C, H, W) "
                     "images, (N, C, L) or (N, F); use the Python API with GridUnits / VideoUnits otherwise")


@dataclass
class Evaluation:
    """What a run computed: ``results[metric][explanation]`` and what the outputs describe."""

    config: EvaluateConfig
    model: LoadedModel
    data: UserData
    n_classes: int
    results: dict[str, dict[str, FidelityResult]]
    sources: dict[str, dict[str, str]]
    accuracy: dict[str, float | None]
    timings: dict[str, float]
    out: Path | None = None
