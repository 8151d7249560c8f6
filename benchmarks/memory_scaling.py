"""Memory and scaling of the engine: flat peak memory as ``n_samples`` grows, time linear in inputs and draws.

The engine streams every masked copy through chunks of ``batch_size``; nothing it holds grows with
``n_samples`` except a (inputs, sparsities, 2) table of sums. Peak RSS is read in fresh processes
(``ru_maxrss`` never decreases within one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmarks.common import BenchResult, Context, Target, register, run_child, threads, timed
from ffidelity import RFidelity
from ffidelity.models.image import SmallCNN
from ffidelity.utils import atomic


@register("memory")
def memory(ctx: Context) -> BenchResult:
    """Peak RSS of R-Fidelity at a small and a 10x larger n_samples, each in a fresh process."""
    p = ctx.profile
    res = BenchResult("memory", "Engine memory: peak RSS as n_samples grows")
    small, large = p.memory_samples
    runs = {}
    for n in (small, large):
        runs[n] = run_child("rfid_memory", {"n_samples": n, "n_inputs": p.memory_inputs, "batch_size": 256,
                                            "threads": min(ctx.threads)})
        ctx.log(f"  n_samples {n}: peak {runs[n]['peak_rss_mb']:.0f} MB, working {runs[n]['working_mb']:.1f} MB, "
                f"{runs[n]['seconds']:.1f} s")
    res.data = {"runs": {str(k): v for k, v in runs.items()}, "model": "SmallCNN(3, 10, 16) on 3x32x32",
                "batch_size": 256}
    ratio = runs[large]["peak_rss_mb"] / runs[small]["peak_rss_mb"]
    res.targets.append(Target(f"peak RSS at n_samples={large} / at n_samples={small}", ratio, 1.15, op="<=",
                              unit="x", note=f"{runs[small]['peak_rss_mb']:.0f} MB -> {runs[large]['peak_rss_mb']:.0f}"
                              f" MB; {runs[large]['passes']} masked passes"))
    res.targets.append(Target(f"memory added by evaluating, n_samples={large} vs {small}",
                              runs[large]["working_mb"] - runs[small]["working_mb"], unit="MB",
                              note=f"above the ready process: {runs[small]['working_mb']:.1f} MB vs "
                              f"{runs[large]['working_mb']:.1f} MB"))
    res.notes.append("Peak RSS includes the interpreter, torch and the model (the whole process), as the target "
                     "states; the working figure is the peak above the process just before evaluate().")
    return res


def _linear_fit(x: list[float], y: list[float]) -> dict[str, float]:
    """Least-squares line y = a + b x and its R^2."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    b, a = np.polyfit(xa, ya, 1)
    pred = a + b * xa
    ss_res = float(((ya - pred) ** 2).sum())
    ss_tot = float(((ya - ya.mean()) ** 2).sum())
    return {"intercept": float(a), "slope": float(b), "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0}


@register("scaling")
def scaling(ctx: Context) -> BenchResult:
    """R-Fidelity time against the number of inputs and against n_samples on the tiny CNN."""
    p = ctx.profile
    res = BenchResult("scaling", "Engine scaling: time vs inputs and vs n_samples")
    torch.manual_seed(0)
    model = SmallCNN(3, 10, 16).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(max(p.scaling_inputs), 3, 32, 32, generator=gen)
    attr = torch.randn(x.shape, generator=gen)
    t = min(ctx.threads)

    def run(n_inputs: int, n_samples: int) -> float:
        metric = RFidelity(n_samples=n_samples, batch_size=256, progress=False)
        return min(timed(lambda: metric.evaluate(model, x[:n_inputs], None, attr[:n_inputs]))
                   for _ in range(max(2, p.repeats)))

    curves: dict[str, Any] = {}
    with threads(t):
        run(1, p.scaling_samples[0])  # warm-up
        fixed_samples = p.scaling_samples[1] if len(p.scaling_samples) > 1 else p.scaling_samples[0]
        curves["inputs"] = {"x": list(p.scaling_inputs), "n_samples": fixed_samples,
                            "seconds": [run(n, fixed_samples) for n in p.scaling_inputs]}
        fixed_inputs = min(2, max(p.scaling_inputs))
        curves["n_samples"] = {"x": list(p.scaling_samples), "inputs": fixed_inputs,
                               "seconds": [run(fixed_inputs, s) for s in p.scaling_samples]}
    for key, c in curves.items():
        c["fit"] = _linear_fit(c["x"], c["seconds"])
        if key == "inputs":
            passes = [n * 19 * 2 * c["n_samples"] for n in c["x"]]
        else:
            passes = [c["inputs"] * 19 * 2 * s for s in c["x"]]
        c["us_per_pass"] = [1e6 * sec / n for sec, n in zip(c["seconds"], passes, strict=True)]
        ctx.log(f"  vs {key}: {[round(s, 2) for s in c['seconds']]} s, R^2 {c['fit']['r2']:.4f}")
        res.targets.append(Target(f"time vs {key.replace('_', ' ')} is linear (R^2 of a line)", c["fit"]["r2"],
                                  0.98, unit="",
                                  note=f"{c['seconds'][0]:.2f} s -> {c['seconds'][-1]:.2f} s over x = {c['x']}; "
                                  f"{c['us_per_pass'][0]:.0f} -> {c['us_per_pass'][-1]:.0f} us per masked pass"))
    res.data = {"curves": curves, "threads": t, "model": "SmallCNN(3, 10, 16) on 3x32x32", "batch_size": 256}
    res.figures.append(_plot(curves, ctx))
    return res


def _plot(curves: dict[str, Any], ctx: Context) -> tuple[str, str]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    labels = {"inputs": "inputs (n_samples = {n_samples})", "n_samples": "n_samples ({inputs} inputs)"}
    for ax, (key, c) in zip(axes, curves.items(), strict=True):
        xs = np.asarray(c["x"], float)
        ax.plot(xs, c["seconds"], "o", label="measured")
        grid = np.linspace(0, xs.max(), 50)
        ax.plot(grid, c["fit"]["intercept"] + c["fit"]["slope"] * grid, "-", label=f"line, R^2 {c['fit']['r2']:.3f}")
        ax.set_xlabel(labels[key].format(**c))
        ax.set_ylabel("seconds")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.suptitle("R-Fidelity on the tiny CNN (19 sparsities, both sides)")
    fig.tight_layout()
    file = "scaling.png"
    with atomic.atomic_path(ctx.out / file) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return file, "Evaluation time grows linearly with the number of inputs and with n_samples."
