"""Settings of the controlled experiment: the evaluation methods, the noise levels of the degraded copies,
the scores, and one run's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ffidelity.metrics.engine import FFidelity, Fidelity, RFidelity
from ffidelity.metrics.road import ROAD
from ffidelity.metrics.roar import ROAR

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
