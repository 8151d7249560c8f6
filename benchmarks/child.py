"""Work run in a fresh interpreter so that its peak RSS is its own: ``python -m benchmarks.child NAME JSON``.

Each function prints one JSON line with its measurements (the last line starting with ``{``).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch

from benchmarks.common import peak_rss_mb, reset_peak_rss, rss_mb


def rfid_memory(n_samples: int, n_inputs: int, batch_size: int, threads: int, width: int = 16) -> dict[str, Any]:
    """R-Fidelity on the tiny CNN: peak RSS of the whole process, and above the state before evaluating."""
    from ffidelity import RFidelity
    from ffidelity.models.image import SmallCNN

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = SmallCNN(3, 10, width).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_inputs, 3, 32, 32, generator=gen)
    attr = torch.randn(x.shape, generator=gen)
    with torch.inference_mode():
        model(torch.randn(batch_size, 3, 32, 32, generator=gen))  # allocate the forward pass's buffers once
    before = rss_mb()
    reset = reset_peak_rss()
    t0 = time.perf_counter()
    res = RFidelity(n_samples=n_samples, batch_size=batch_size, progress=False).evaluate(model, x, None, attr)
    seconds = time.perf_counter() - t0
    return {"n_samples": n_samples, "n_inputs": n_inputs, "batch_size": batch_size, "seconds": seconds,
            "rss_before_mb": before, "peak_rss_mb": peak_rss_mb(), "working_mb": peak_rss_mb() - before,
            "peak_reset_after_setup": reset, "passes": n_inputs * 19 * 2 * n_samples,
            "fid_plus_mean": float(res.fid_plus.mean())}


def explain_memory(method: str, configs: list[dict[str, int]], n_inputs: int, width: int, threads: int,
                   batch_size: int = 64) -> dict[str, Any]:
    """Integrated Gradients or SG-SQ on ResNet-9, one configuration after another (``internal_batch_size``,
    ``n_steps``, ``nt_samples``): seconds per input and the peak RSS of each, the peak reset in between."""
    from ffidelity import explain
    from ffidelity.models.image import ResNet9

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ResNet9(3, 10, width).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_inputs, 3, 32, 32, generator=gen)
    # one gradient pass on a single input: allocator and oneDNN caches warm, almost no activations kept
    explain("saliency", model, x[:1], 0)
    out = []
    for cfg in configs:
        kwargs: dict[str, Any] = {"n_steps": cfg["n_steps"], "internal_batch_size": cfg["internal_batch_size"]}
        if method == "sg_sq":
            kwargs["nt_samples"] = cfg["nt_samples"]
        before = rss_mb()
        reset = reset_peak_rss()
        t0 = time.perf_counter()
        attr = explain(method, model, x, None, batch_size=batch_size, **kwargs)
        seconds = time.perf_counter() - t0
        peak = peak_rss_mb()
        evaluations = n_inputs * cfg["n_steps"] * (cfg["nt_samples"] if method == "sg_sq" else 1)
        out.append({**cfg, "method": method, "n_inputs": n_inputs, "width": width, "seconds": seconds,
                    "seconds_per_input": seconds / n_inputs, "gradient_evaluations": evaluations,
                    "rss_before_mb": before, "peak_rss_mb": peak, "working_mb": peak - before,
                    "peak_reset": reset, "finite": bool(torch.isfinite(attr).all())})
        del attr
    return {"runs": out}


def quantus_pixelflipping(n_inputs: int, features_in_step: int, width: int, threads: int, site: str | None,
                          repeats: int = 1) -> dict[str, Any]:
    """Quantus PixelFlipping vs our plain Fidelity at the same count of forward passes, and the raw limit."""
    import numpy as np

    from benchmarks.engine_throughput import raw_rate
    from benchmarks.quantus_cmp import resnet9_and_data
    from ffidelity import Fidelity

    quantus, model, x, attr, y = resnet9_and_data(n_inputs, width, threads, site)
    # Both sides are charged the inputs their model actually saw (a forward hook counts them): PixelFlipping
    # spreads (N, 1, H, W) attributions over the 3 channels, so it takes 3 * H * W / features_in_step steps per
    # input, not H * W / features_in_step (an earlier version of this benchmark assumed the latter and
    # overstated our speed-up 3x).
    seen = [0]
    hook = model.register_forward_hook(lambda _m, args, _o: seen.__setitem__(0, seen[0] + int(args[0].shape[0])))
    steps = x[0].numel() // features_in_step  # PixelFlipping's steps per input
    sparsities = [(i + 1) / (steps // 2 + 1) for i in range(steps // 2)]  # 2 sides x steps/2 = steps per input
    metric = quantus.PixelFlipping(features_in_step=features_in_step, perturb_baseline="black",
                                   disable_warnings=True, display_progressbar=False)
    fid = Fidelity(sparsities=sparsities, batch_size=n_inputs, progress=False)
    rows = []
    for _ in range(repeats):
        hook.remove()
        raw = raw_rate(model, x, n_inputs, 1.0)
        hook = model.register_forward_hook(
            lambda _m, args, _o: seen.__setitem__(0, seen[0] + int(args[0].shape[0])))
        seen[0] = 0
        t0 = time.perf_counter()
        metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=attr.numpy(), device="cpu",
               batch_size=n_inputs, channel_first=True)
        q_passes, q = seen[0], seen[0] / (time.perf_counter() - t0)
        seen[0] = 0
        t0 = time.perf_counter()
        fid.evaluate(model, x, y, attr[:, 0])
        ours_passes, ours = seen[0], seen[0] / (time.perf_counter() - t0)
        rows.append({"raw": raw, "quantus": q, "ours": ours})
    hook.remove()
    return {"quantus_version": quantus.__version__, "n_inputs": n_inputs, "features_in_step": features_in_step,
            "passes_per_input": q_passes / n_inputs, "ours_passes_per_input": ours_passes / n_inputs,
            "width": width, "repeats": rows, "np_version": np.__version__}


def engine_model(name: str, profile: str, threads: list[int]) -> dict[str, Any]:
    """One model of the engine-throughput benchmark (see ``benchmarks.engine_throughput.measure_model``).

    Each model runs in its own process so that the allocator state left by one never speeds up or slows down
    the next; the parent picks the allocator settings through the environment. The log lines come back in
    the answer's ``log``.
    """
    import tempfile
    from pathlib import Path

    from benchmarks.common import PROFILES, Context
    from benchmarks.engine_throughput import build_model, measure_model

    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        print(line, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(PROFILES[profile], Path(tmp), Path(tmp), tuple(threads), log)
        model, n_inputs = build_model(name, ctx.profile)
        data = measure_model(name, model, n_inputs, ctx)
    return {**data, "log": lines}


def quantus_adapter(**kwargs: Any) -> dict[str, Any]:
    """The Quantus adapter against ``evaluate`` and PixelFlipping (``benchmarks.quantus_adapter.measure``)."""
    from benchmarks.quantus_adapter import measure

    return measure(**kwargs)


def engine_first(**kwargs: Any) -> dict[str, Any]:
    """The first evaluation of a fresh process (``benchmarks.engine_defaults.first_evaluation``)."""
    from benchmarks.engine_defaults import first_evaluation

    return first_evaluation(**kwargs)


def engine_defaults(**kwargs: Any) -> dict[str, Any]:
    """One model of the default-settings engine benchmark (``benchmarks.engine_defaults.measure``)."""
    from benchmarks.engine_defaults import measure

    return measure(**kwargs)


FUNCTIONS = {"rfid_memory": rfid_memory, "explain_memory": explain_memory,
             "quantus_pixelflipping": quantus_pixelflipping, "engine_model": engine_model,
             "quantus_adapter": quantus_adapter, "engine_defaults": engine_defaults,
             "engine_first": engine_first}


def main() -> None:
    name, kwargs = sys.argv[1], json.loads(sys.argv[2])
    if name not in FUNCTIONS:
        raise SystemExit(f"unknown child function {name!r}; known: {', '.join(FUNCTIONS)}")
    print(json.dumps(FUNCTIONS[name](**kwargs)), flush=True)


if __name__ == "__main__":
    main()
