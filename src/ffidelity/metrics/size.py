"""Explanation size: the sparsity at which the F-Fid+ curve peaks.

The F-Fidelity paper's theorem: when inputs have a most-influential tier of size c1 and
``beta * D / alpha_plus <= c1``, the expected FFid+ of a faithful explainer rises with the sparsity s up to c1 and
falls after it, so the argmax of the FFid+ curve over s estimates the true explanation size. ``planted_images``
builds a data set where the class lives in a planted region of known size, to check it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ffidelity.metrics.engine import FFidelity
from ffidelity.metrics.result import FidelityResult

#: a fine grid for size estimation: 0.025, 0.05, ..., 0.5 (explanations larger than half are rare)
SIZE_GRID: tuple[float, ...] = tuple(round(0.025 * i, 3) for i in range(1, 21))


@dataclass
class SizeEstimate:
    """The FFid+ curve over sparsity and its argmax."""

    sparsities: np.ndarray
    fid_plus: np.ndarray
    size: float
    result: FidelityResult

    def plot(self, ax: Any = None, label: str = "F-Fid+", true_size: float | None = None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(self.sparsities, self.fid_plus, "-o", ms=3, label=f"{label} (argmax {self.size:.3f})")
        if true_size is not None:
            ax.axvline(true_size, color="k", ls=":", lw=1)
        ax.set_xlabel("sparsity s")
        ax.set_ylabel("Fid+")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        return ax.figure


def estimate(model: nn.Module, inputs: torch.Tensor, targets: Any, attributions: torch.Tensor,
             metric: FFidelity | None = None, sparsities: tuple[float, ...] | None = None) -> SizeEstimate:
    """Estimates the explanation size as the argmax of the (F-)Fid+ curve.

    Args:
        model: the evaluator (for F-Fidelity, the fine-tuned model).
        inputs, targets, attributions: as ``Fidelity.evaluate``.
        metric: the metric whose Fid+ curve is used (default ``FFidelity(mode="prob")``: the probability score
            gives a smooth curve); its sparsity grid is replaced by ``sparsities``.
        sparsities: the grid searched (default ``SIZE_GRID``: 0.025 to 0.5).
    """
    metric = metric if metric is not None else FFidelity(mode="prob", n_samples=50)
    metric.sparsities = tuple(sparsities or SIZE_GRID)
    res = metric.evaluate(model, inputs, targets, attributions)
    curve = res.fid_plus
    return SizeEstimate(res.sparsities, curve, float(res.sparsities[int(np.argmax(curve))]), res)


def planted_images(n: int = 1200, size: int = 20, ratio: float = 0.2, amplitude: float = 0.6, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two-class images whose class is carried only by a planted region covering ``ratio`` of the pixels.

    Background pixels are N(0, 1) noise. The region is a rectangle at a random position (``ratio * size**2``
    pixels); inside it pixels are ``+/- amplitude`` (the class's sign) plus the same noise, so the evidence grows
    with every region pixel kept and no single pixel decides.

    Returns:
        x (n, 1, size, size), y (n,), and the region masks (n, size, size) as bool: the true explanations.
    """
    gen = torch.Generator().manual_seed(seed)
    area = round(ratio * size * size)
    h = max(d for d in range(1, size + 1) if area % d == 0 and area // d <= size and d <= area ** 0.5 + 1e-9)
    w = area // h
    x = torch.randn(n, 1, size, size, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    tops = torch.randint(0, size - h + 1, (n,), generator=gen)
    lefts = torch.randint(0, size - w + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5  # rectangles lie either way
    for i in range(n):  # drawing masks only; no model calls
        hh, ww = (w, h) if flip[i] else (h, w)
        t, left = min(int(tops[i]), size - hh), min(int(lefts[i]), size - ww)
        masks[i, t : t + hh, left : left + ww] = True
    sign = (2 * y - 1).float()[:, None, None, None]
    x = x + masks[:, None].float() * sign * amplitude
    return x, y, masks


def size_study(out_dir: Any = None, *, betas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5),
               explainers: tuple[str, ...] = ("saliency", "gradcam", "sg_sq"), n_train: int = 1500,
               n_test: int = 200, ratio: float = 0.2, epochs: int = 15, n_samples: int = 30, seed: int = 0,
               progress: bool = True) -> dict[str, Any]:
    """The paper's explanation-size check on ``planted_images``, with an ablation over beta.

    Trains a small CNN on planted-region images (true size ``ratio``), fine-tunes one copy per beta, and
    estimates the size from the FFid+ curve of the true region masks and of each explainer (computed on the
    fine-tuned model); plain Fidelity's argmax is reported beside it. With ``out_dir`` it writes size.json,
    size.csv and size.png atomically.

    Returns:
        ``{"true_size", "rows": [{"beta", "explainer", "size", "condition_holds", ...}], "curves": ...}``.
    """
    import pandas as pd

    from ffidelity.explainers.core import explain
    from ffidelity.metrics.engine import Fidelity
    from ffidelity.models.image import SmallCNN
    from ffidelity.models.training import fit_classifier
    from ffidelity.utils import atomic

    x, y, _ = planted_images(n_train, ratio=ratio, seed=seed)
    xt, yt, mt = planted_images(n_test, ratio=ratio, seed=seed + 1)
    torch.manual_seed(seed)
    model = fit_classifier(SmallCNN(1, 2, 16), (x, y), epochs=epochs, lr=3e-3, batch_size=64, seed=seed,
                           progress=progress)
    rows, curves = [], {}
    for beta in betas:
        metric = FFidelity(beta=beta, mode="prob", n_samples=n_samples, seed=seed, progress=False)
        tuned = metric.finetune(model, (x, y), epochs=max(2, epochs // 3), lr=1e-3, batch_size=64,
                                progress=progress)
        for name in ("truth", *explainers):
            kw = {"n_steps": 8, "nt_samples": 5} if name == "sg_sq" else {}
            attr = mt[:, None].float() if name == "truth" else explain(name, tuned, xt, yt, **kw)
            est = estimate(tuned, xt, yt, attr, metric=metric)
            plain = estimate(model, xt, yt, attr, metric=Fidelity(mode="prob", seed=seed, progress=False))
            rows.append({"beta": beta, "explainer": name, "ffid_size": est.size, "fid_size": plain.size,
                         "abs_error": abs(est.size - ratio),
                         "condition_holds": bool(beta / metric.alpha_plus <= ratio + 1e-9)})
            curves[f"{beta}/{name}"] = {"sparsities": est.sparsities.tolist(), "ffid_plus": est.fid_plus.tolist(),
                                        "fid_plus": plain.fid_plus.tolist()}
    out = {"true_size": ratio, "rows": rows, "curves": curves}
    if out_dir is not None:
        from pathlib import Path

        import matplotlib.pyplot as plt

        folder = Path(out_dir)
        atomic.write_json(folder / "size.json", out)
        with atomic.atomic_open(folder / "size.csv", "w") as fh:
            pd.DataFrame(rows).to_csv(fh, index=False)
        fig, axes = plt.subplots(1, len(betas), figsize=(3.4 * len(betas), 3), sharey=False)
        for ax, beta in zip(np.atleast_1d(axes), betas, strict=True):
            for name in ("truth", *explainers):
                c = curves[f"{beta}/{name}"]
                ax.plot(c["sparsities"], c["ffid_plus"], label=name)
            ax.axvline(ratio, color="k", ls=":", lw=1)
            ax.set_title(f"beta = {beta} (beta/alpha {'<=' if beta / 0.5 <= ratio + 1e-9 else '>'} {ratio})",
                         fontsize=9)
            ax.set_xlabel("sparsity")
            ax.grid(alpha=0.3)
        np.atleast_1d(axes)[0].set_ylabel("F-Fid+ (prob)")
        np.atleast_1d(axes)[0].legend(fontsize=7)
        fig.tight_layout()
        with atomic.atomic_path(folder / "size.png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
    return out
