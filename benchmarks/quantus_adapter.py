"""The Quantus adapter's overhead: ``FFidelityMetric`` called the Quantus way against ``FFidelity.evaluate`` on
the same ResNet-9, inputs and attributions, beside Quantus's own PixelFlipping, in one child process.

Throughput is masked forward passes per second (of the process's CPU time for the target, of wall-clock time
beside it): ``inputs x sparsities x 2 sides x n_samples`` for F-Fidelity (through the adapter or not) and ``inputs x steps`` for PixelFlipping (its curve length: it flips single
channel values, so a 3-channel 32 x 32 image has 3,072 features). The adapter's evaluator is the model itself
(``evaluator="model"``): fine-tuning is not part of the measurement. Quantus is optional (see
``benchmarks/quantus_cmp.py``).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.common import BenchResult, Context, Target, clocked, register, run_child
from benchmarks.quantus_cmp import SITE, available, resnet9_and_data


def measure(n_inputs: int, width: int, n_samples: int, n_sparsities: int, features_in_step: int, threads: int,
            repeats: int, site: str | None = None) -> dict[str, Any]:
    """Runs in the child: alternates engine, adapter and PixelFlipping ``repeats`` times; rates per repeat."""
    import numpy as np

    from ffidelity import FFidelity
    from ffidelity.integrations.quantus import FFidelityMetric

    quantus, model, x, a, y = resnet9_and_data(n_inputs, width, threads, site)
    x_np, y_np, a_np = x.numpy(), y.numpy(), a.numpy()
    sparsities = [round((i + 1) / (n_sparsities + 1), 4) for i in range(n_sparsities)]
    params = {"beta": 0.1, "n_samples": n_samples, "sparsities": sparsities, "mode": "prob", "seed": 0}
    engine = FFidelity(progress=False, **params)
    metric = FFidelityMetric(evaluator="model", **params)
    pixel_flipping = quantus.PixelFlipping(features_in_step=features_in_step, perturb_baseline="black",
                                           disable_warnings=True, display_progressbar=False)
    passes = n_inputs * n_sparsities * 2 * n_samples
    call = {"model": model, "x_batch": x_np, "y_batch": y_np, "a_batch": a_np, "channel_first": True,
            "softmax": True, "device": "cpu", "batch_size": n_inputs}

    def run_engine() -> Any:
        return engine.evaluate(model, x, y, a[:, 0]).per_sample_auc()[0]

    def run_adapter() -> Any:
        return np.asarray(metric(**call))

    def run_pixel_flipping() -> Any:
        return pixel_flipping(**call)

    run_engine(), run_adapter()  # warm-up: allocator, oneDNN primitives
    steps = len(run_pixel_flipping()[0])
    rows, last = [], {}
    for r in range(repeats):
        row: dict[str, float] = {}
        order = [("engine", run_engine), ("adapter", run_adapter)]
        for name, fn in order if r % 2 == 0 else order[::-1]:  # alternate who runs first
            wall, cpu, last[name] = clocked(fn)
            row[name], row[f"{name}_cpu"] = passes / wall, passes / cpu
        t0 = time.perf_counter()
        run_pixel_flipping()
        row["pixel_flipping"] = n_inputs * steps / (time.perf_counter() - t0)
        rows.append(row)
    same = bool(np.array_equal(last["engine"], last["adapter"]))
    return {"quantus_version": quantus.__version__, "n_inputs": n_inputs, "width": width, "n_samples": n_samples,
            "sparsities": sparsities, "passes_per_call": passes, "pixel_flipping_steps": steps,
            "features_in_step": features_in_step, "threads": threads, "repeats": rows, "identical_scores": same}


@register("quantus_adapter")
def quantus_adapter(ctx: Context) -> BenchResult:
    """The Quantus adapter's throughput against our own evaluate, beside Quantus PixelFlipping."""
    p = ctx.profile
    res = BenchResult("quantus_adapter", "F-Fidelity inside Quantus: adapter vs evaluate (optional)")
    name = "FFidelityMetric (Quantus call) / FFidelity.evaluate (masked passes per CPU second)"
    if not available():
        res.targets.append(Target(name, None, 0.9, unit="x", skipped=True,
                                  note="Quantus is not installed (pip install 'ffidelity-multimae[quantus]')"))
        res.notes.append("Skipped: Quantus is not installed; it is the optional 'quantus' extra.")
        return res
    # (inputs, samples, sparsities): the full profile's ResNet-9 (width 64) runs ~150 masked passes per second
    # here, so it gets a few hundred passes per call, not the engine benchmark's tens of thousands
    n, n_samples, n_sparsities = {"full": (4, 10, 5), "quick": (8, 10, 5)}.get(p.name, (2, 2, 2))
    out = run_child("quantus_adapter", {
        "n_inputs": n, "width": p.resnet_width, "n_samples": n_samples, "n_sparsities": n_sparsities,
        "features_in_step": 64 if p.name == "full" else 256, "threads": ctx.best_threads,
        "repeats": max(5, p.repeats), "site": str(SITE) if SITE.is_dir() else None}, timeout=900)
    rows = out["repeats"]
    # the target is on passes per CPU second of the process: on a shared machine the wall clock also counts the
    # time other processes hold the cores (both runs are the same engine, so their CPU time is their work)
    ratio = [r["adapter_cpu"] / r["engine_cpu"] for r in rows]
    wall = [r["adapter"] / r["engine"] for r in rows]
    pf = statistics.median(r["adapter"] / r["pixel_flipping"] for r in rows)
    res.data = {**out, "ratio": {"median": statistics.median(ratio), "best": max(ratio), "min": min(ratio)},
                "ratio_wall": {"median": statistics.median(wall), "best": max(wall), "min": min(wall)}}
    ctx.log(f"  adapter / evaluate {statistics.median(ratio):.3f} per CPU second, {statistics.median(wall):.3f} "
            f"per wall second; adapter / PixelFlipping {pf:.2f} (masked passes per wall second)")
    # the smoke size (a few dozen passes) measures the ~1 ms fixed cost of Quantus's preprocessing, not throughput
    res.targets.append(Target(name, statistics.median(ratio), None if p.name == "smoke" else 0.9, op=">=", unit="x",
                              note=f"ResNet-9 width {p.resnet_width}, {n} inputs, {n_sparsities} sparsities x 2 "
                              f"sides x {n_samples} samples; per wall second "
                              f"{statistics.median(wall):.3f}x; scores identical: {out['identical_scores']}"))
    res.targets.append(Target(f"FFidelityMetric / Quantus {out['quantus_version']} PixelFlipping (masked passes "
                              "per second, same model and call)", pf, None, unit="x",
                              note=f"PixelFlipping: {out['pixel_flipping_steps']} steps of "
                              f"{out['features_in_step']} channel values per input"))
    res.notes.append("Both F-Fidelity runs use the model as the evaluator (no fine-tuning); the adapter is "
                     "called with numpy inputs, channel_first=True, softmax=True, device='cpu' and one Quantus "
                     "batch, exactly as PixelFlipping is.")
    return res
