"""Engine throughput: masked forward passes per second of R-Fid, F-Fid and Fid against the model's own limit.

The physical limit is the raw batched forward throughput of the same model at its best batch size (and best
thread count) under ``inference_mode``: the engine can only add work (ranking, random draws, masking) on top of
the forward passes. Two models: ResNet-9 on 32x32 CIFAR-sized images (the paper's model) and a tiny strided
CNN that runs > 20k inputs/s, where the masking overhead shows. The official code's way (see
:mod:`benchmarks.official`) runs in the same process, between the same raw measurements.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.common import (
    TUNED_MALLOC,
    BenchResult,
    Context,
    Target,
    allocator_env,
    clocked,
    register,
    run_child,
    summarize,
    threads,
)
from benchmarks.official import official_fidelity, official_rfidelity
from ffidelity import FFidelity, Fidelity, ImageUnits, RFidelity
from ffidelity.models.image import ResNet9, SmallCNN


def raw_rate(model: nn.Module, pool: torch.Tensor, batch_size: int, min_time: float, cpu: bool = False) -> float:
    """Inputs per second of plain batched forward passes under ``inference_mode`` (after one warm-up batch).

    ``cpu=True`` returns ``(wall rate, CPU-time rate)``.
    """
    with torch.inference_mode():
        model(pool[:batch_size])
        done, start, wall, cpu_s = 0, 0, 0.0, 0.0
        while wall < min_time or done < 2 * batch_size:
            xb = pool[start : start + batch_size]
            if xb.shape[0] < batch_size:
                start, xb = 0, pool[:batch_size]
            w, c, _ = clocked(lambda xb=xb: model(xb))
            wall, cpu_s, done, start = wall + w, cpu_s + c, done + batch_size, start + batch_size
    return (done / wall, done / max(cpu_s, 1e-9)) if cpu else done / wall


def calibrate(model: nn.Module, pool: torch.Tensor, ctx: Context, batch_sizes: tuple[int, ...]
              ) -> tuple[int, int, dict[str, float]]:
    """The (thread count, batch size) with the highest raw throughput, and every measured rate."""
    rates: dict[str, float] = {}
    for t, bs in itertools.product(ctx.threads, batch_sizes):
        with threads(t):
            rates[f"{t}x{bs}"] = raw_rate(model, pool, bs, ctx.profile.min_time / 2)
    best = max(rates, key=rates.__getitem__)
    t, bs = (int(v) for v in best.split("x"))
    return t, bs, rates


def _sparsities(count: int) -> list[float]:
    grid = [round(0.05 * i, 2) for i in range(1, 20)]
    if count >= len(grid):
        return grid
    idx = np.linspace(0, len(grid) - 1, count).round().astype(int)
    return [grid[i] for i in idx]


def build_model(name: str, p: Any) -> tuple[nn.Module, int]:
    """The benchmark's model called ``name`` (seeded weights) and how many inputs R-/F-Fid evaluate on it."""
    torch.manual_seed(0)
    if name == "resnet9":
        return ResNet9(3, 10, p.resnet_width), p.resnet_inputs
    if name == "tiny":
        return SmallCNN(3, 10, 16), p.tiny_inputs
    raise ValueError(f"unknown benchmark model {name!r}")


def measure_model(name: str, model: nn.Module, n_inputs: int, ctx: Context) -> dict[str, Any]:
    """Raw limit, ours (R-Fid, F-Fid, Fid) and the official way (same three) for one model, repeated."""
    p = ctx.profile
    gen = torch.Generator().manual_seed(0)
    model.eval()
    if name == "resnet9":  # a batch of 128 takes seconds on a CPU; throughput has saturated well before
        candidates = tuple(b for b in p.batch_sizes if b <= 64) or p.batch_sizes[:1]
    else:
        candidates = p.batch_sizes + ((1024,) if p.name == "full" else ())
    pool = torch.randn(max(candidates) * 2, 3, 32, 32, generator=gen)
    t, bs, calib = calibrate(model, pool, ctx, candidates)
    ctx.log(f"  {name}: best raw at {t} thread(s), batch {bs}: {calib[f'{t}x{bs}']:.0f} inputs/s")
    sp = _sparsities(p.n_sparsities)
    base_sp = _sparsities(min(p.baseline_sparsities, p.n_sparsities))
    fid_inputs = p.fid_inputs if name != "resnet9" else max(1, p.fid_inputs // 2)
    x = torch.randn(max(n_inputs, fid_inputs), 3, 32, 32, generator=gen)
    attr = torch.randn(x.shape, generator=gen)
    with torch.inference_mode():
        targets = model(x).argmax(-1)
    scores = ImageUnits().scores(attr, x).numpy()
    xe, ae, te = x[:n_inputs], attr[:n_inputs], targets[:n_inputs]
    # the engine at the raw best batch size on a slow model; on a fast one (where a chunk's fixed cost, a few
    # dozen small torch calls, matters) at its own best batch size, as a user would pick it
    ebs, engine_calib = bs, {}
    if calib[f"{t}x{bs}"] >= 2000:
        n_cal = min(2, n_inputs)
        with threads(t):
            for b in sorted({256, 512, 1024, bs}):
                m = RFidelity(n_samples=p.n_samples, sparsities=sp, batch_size=b, progress=False)
                m.evaluate(model, xe[:1], te[:1], ae[:1])  # warm-up
                sec = min(clocked(lambda m=m: m.evaluate(model, xe[:n_cal], te[:n_cal], ae[:n_cal]))[0]
                          for _ in range(2))
                engine_calib[b] = n_cal * len(sp) * 2 * p.n_samples / sec
        ebs = max(engine_calib, key=engine_calib.__getitem__)
        ctx.log(f"  {name}: engine batch size {ebs} ({', '.join(f'{k}: {v:.0f}/s' for k, v in engine_calib.items())})")
    metrics = {
        "rfid": RFidelity(n_samples=p.n_samples, sparsities=sp, batch_size=ebs, progress=False),
        "ffid": FFidelity(beta=0.1, n_samples=p.n_samples, sparsities=sp, batch_size=ebs, progress=False),
    }
    fid = Fidelity(sparsities=sp, batch_size=ebs, progress=False)
    reps: list[dict[str, float]] = []
    # the tiny model is cheap: more repeats; ResNet-9 repeats while its time budget lasts (at least p.repeats)
    n_repeats = p.repeats + 2
    budget = 150.0 if p.name == "full" else 10.0
    raw_time = 2 * p.min_time if name == "resnet9" else p.min_time  # comparable to one engine run
    passes = n_inputs * len(sp) * 2 * p.n_samples

    def record(r: dict[str, float], key: str, count: float, fn: Callable[[], Any]) -> None:
        wall, cpu_s, _ = clocked(fn)
        r[key], r[f"{key}_cpu"] = count / wall, count / max(cpu_s, 1e-9)

    started = time.perf_counter()
    with threads(t):
        for i in range(n_repeats):
            if name == "resnet9" and i >= p.repeats and time.perf_counter() - started > budget * i / (i + 1):
                break  # the next repeat would overrun the budget
            r: dict[str, float] = {}
            r["raw_before"], r["raw_before_cpu"] = raw_rate(model, pool, bs, raw_time, cpu=True)
            for key, metric in metrics.items():
                record(r, f"ours_{key}", passes, lambda m=metric: m.evaluate(model, xe, te, ae))
            record(r, "ours_fid", x.shape[0] * len(sp) * 2, lambda: fid.evaluate(model, x, targets, attr))
            for key, beta in (("rfid", None), ("ffid", 0.1)):
                record(r, f"official_{key}", len(base_sp) * 2 * p.n_samples, lambda beta=beta: official_rfidelity(
                    model, x[:1], targets[:1], scores[:1], base_sp, p.n_samples, 0.5, beta))
            n_fid = min(2, x.shape[0])
            record(r, "official_fid", n_fid * len(sp) * 2, lambda n_fid=n_fid: official_fidelity(
                model, x[:n_fid], targets[:n_fid], scores[:n_fid], sp))
            r["raw_after"], r["raw_after_cpu"] = raw_rate(model, pool, bs, raw_time, cpu=True)
            r["raw"], r["raw_cpu"] = (r["raw_before"] + r["raw_after"]) / 2, (r["raw_before_cpu"] + r["raw_after_cpu"]) / 2
            reps.append(r)
            ctx.log("    " + ", ".join(f"{k} {v:.0f}" for k, v in r.items() if not k.endswith("_cpu")))
    # two estimates per clock: the median of the ratios paired within a repeat (the targets' value: one lucky or
    # unlucky repeat cannot decide them), and the ratio of the best rates (the least disturbed run of each,
    # reported in the notes). A repeat's
    # raw rate is the mean of the measurements before and after it, so that both sides of a best-of ratio are
    # the best of as many samples (the best of twice as many would favour raw by chance alone)
    ratios: dict[str, dict[str, float]] = {}
    for clock in ("", "_cpu"):
        best_raw = max(r[f"raw{clock}"] for r in reps)
        for key in ("rfid", "ffid", "fid"):
            for who in ("ours", "official"):
                ratios[f"{who}_{key}_vs_raw{clock}"] = {
                    **summarize([r[f"{who}_{key}{clock}"] / r[f"raw{clock}"] for r in reps]),
                    "of_best": max(r[f"{who}_{key}{clock}"] for r in reps) / best_raw}
            ratios[f"ours_{key}_vs_official{clock}"] = {
                **summarize([r[f"ours_{key}{clock}"] / r[f"official_{key}{clock}"] for r in reps]),
                "of_best": max(r[f"ours_{key}{clock}"] for r in reps) / max(r[f"official_{key}{clock}"] for r in reps)}
    best_raw = max(r["raw"] for r in reps)
    extra: dict[str, Any] = {}
    if name != "resnet9":
        extra["engine_overhead_us_per_row"] = _overhead_per_row(metrics["rfid"], xe, ae, t)
    if name == "resnet9":
        extra = _channels_last(model, pool, bs, t, p.min_time)
    return {"model": name, "params": sum(q.numel() for q in model.parameters()), "threads": t, "batch_size": bs,
            "engine_batch_size": ebs, "engine_calibration": engine_calib, "best_raw": best_raw,
            "calibration": calib, "sparsities": sp, "baseline_sparsities": base_sp, "n_samples": p.n_samples,
            "inputs": n_inputs, "fid_inputs": int(x.shape[0]), "repeats": reps, "ratios": ratios,
            "raw_median": statistics.median(r["raw"] for r in reps), **extra}


def _spread(r: dict[str, float]) -> str:
    """The range of repeated paired ratios, for a target's note."""
    return f"range {r['min']:.2f}-{r['best']:.2f} over {r['n']} repeats"


class _SliceModel(nn.Module):
    """A 'model' that costs nothing: ten pixels of each input as logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10].clone()


def _overhead_per_row(metric: Fidelity, x: torch.Tensor, attr: torch.Tensor, t: int) -> float:
    """Microseconds the engine spends per masked copy besides the model (draws, masks, removal, scoring)."""
    n = min(2, x.shape[0])
    null = _SliceModel()
    rows = n * len(metric.sparsity_grid()) * 2 * metric.n_samples
    with threads(t):
        metric.evaluate(null, x[:1], None, attr[:1])
        sec = min(clocked(lambda: metric.evaluate(null, x[:n], None, attr[:n]))[0] for _ in range(3))
    return 1e6 * sec / rows


def _channels_last(model: nn.Module, pool: torch.Tensor, bs: int, t: int, min_time: float) -> dict[str, Any]:
    """Raw throughput with channels_last weights and inputs, beside the default layout (a library option)."""
    cl = model.to(memory_format=torch.channels_last)
    with threads(t):
        default = raw_rate(model.to(memory_format=torch.contiguous_format), pool, bs, min_time)
        fast = raw_rate(cl, pool.contiguous(memory_format=torch.channels_last), bs, min_time)
    model.to(memory_format=torch.contiguous_format)
    return {"channels_last": {"contiguous": default, "channels_last": fast, "speedup": fast / default}}


@register("engine")
def engine_throughput(ctx: Context) -> BenchResult:
    """ResNet-9 and a tiny CNN: ours vs raw vs the official way, R-Fid/F-Fid/Fid."""
    p = ctx.profile
    res = BenchResult("engine", "Fidelity engine throughput (masked forward passes per second)")
    # every model in a fresh process: what one model leaves in the allocator changes the next one's speed. The
    # targets use tuned glibc malloc settings; the tiny CNN is also measured with glibc's defaults (reported)
    runs = {"resnet9": ("resnet9", "tuned"), "tiny": ("tiny", "tuned"), "tiny_default_malloc": ("tiny", "glibc")}
    for key, (name, allocator) in runs.items():
        ctx.log(f"  {key}: {name} in a fresh process, {allocator} glibc malloc settings")
        data = run_child("engine_model", {"name": name, "profile": p.name, "threads": list(ctx.threads)},
                         timeout=1200, env_changes=allocator_env(allocator))
        for line in data.pop("log"):
            ctx.log(line)
        res.data[key] = {**data, "allocator": allocator}
    r9, tiny = res.data["resnet9"]["ratios"], res.data["tiny"]["ratios"]
    cfg = f"N = {p.n_samples}, {p.n_sparsities} sparsities"
    def ratio_targets(label: str, model: str, key: str, threshold: float) -> list[Target]:
        d = res.data[model]
        r, c = d["ratios"][key], d["ratios"][f"{key}_cpu"]
        out = [Target(f"{label} ({cfg}), wall clock", r["median"], threshold, unit="x",
                      note=f"median of the ratios paired within {r['n']} repeats, {_spread(r)}; best rate / best "
                      f"raw {r['of_best']:.2f}")]
        if d["threads"] == 1:  # CPU time is a clean measure of work only for a single-threaded process
            out.append(Target(f"{label} ({cfg}), CPU time", c["median"], threshold, unit="x",
                              note=f"passes per CPU second of the process; median of paired ratios, {_spread(c)}; "
                              "not disturbed by other processes holding the cores"))
        return out

    res.targets += [
        *ratio_targets("ResNet-9 R-Fid / raw forward", "resnet9", "ours_rfid_vs_raw", 0.9),
        *ratio_targets("ResNet-9 F-Fid / raw forward", "resnet9", "ours_ffid_vs_raw", 0.9),
        *ratio_targets("tiny CNN R-Fid / raw forward", "tiny", "ours_rfid_vs_raw", 0.7),
        *ratio_targets("tiny CNN F-Fid / raw forward", "tiny", "ours_ffid_vs_raw", 0.7),
        Target("tiny CNN raw throughput (best of the run)", res.data["tiny"]["best_raw"], 20000, op=">",
               unit="inputs/s", note=f"median {res.data['tiny']['raw_median']:.0f}; the tiny model must run "
               "> 20k inputs/s for the masking overhead to show"),
    ]
    dm = res.data["tiny_default_malloc"]
    for key, label in (("rfid", "R-Fid"), ("ffid", "F-Fid")):
        r = dm["ratios"][f"ours_{key}_vs_raw"]
        res.targets.append(Target(f"tiny CNN {label} / raw forward, glibc default malloc", r["median"], unit="x",
                                  note=f"median of paired ratios, {_spread(r)}; raw best "
                                  f"{dm['best_raw']:.0f} inputs/s, median {dm['raw_median']:.0f}"))
    for key, label in (("fid", "Fidelity"), ("rfid", "R-Fid"), ("ffid", "F-Fid")):
        ours, off = r9[f"ours_{key}_vs_raw"]["median"], r9[f"official_{key}_vs_raw"]["median"]
        vs = r9[f"ours_{key}_vs_official"]
        res.targets.append(Target(f"ResNet-9 {label}: ours / official way", vs["median"], 1.0, op=">", unit="x",
                                  note=f"median of paired ratios, {_spread(vs)}; ours {ours:.2f}x raw, official "
                                  f"way {off:.2f}x raw (medians)"))
    for key, label in (("fid", "Fidelity"), ("ffid", "F-Fid")):
        ours, off = tiny[f"ours_{key}_vs_raw"]["median"], tiny[f"official_{key}_vs_raw"]["median"]
        vs = tiny[f"ours_{key}_vs_official"]
        res.targets.append(Target(f"tiny CNN {label}: ours / official way", vs["median"], 1.0, op=">", unit="x",
                                  note=f"median of paired ratios, {_spread(vs)}; ours {ours:.2f}x raw, official "
                                  f"way {off:.2f}x raw (medians)"))
    res.targets.append(Target("ResNet-9 raw throughput (best of the run)", res.data["resnet9"]["best_raw"],
                              unit="inputs/s", note=f"{res.data['resnet9']['threads']} thread(s), batch "
                              f"{res.data['resnet9']['batch_size']}"))
    cl = res.data["resnet9"]["channels_last"]
    res.notes.append(f"channels_last on ResNet-9: {cl['channels_last']:.0f} vs {cl['contiguous']:.0f} inputs/s "
                     f"({cl['speedup']:.2f}x); the engine feeds the model whatever layout it gets.")
    res.notes.append("torch.compile was not used: on this CPU it needs a C++ toolchain and tens of seconds of "
                     "compilation per shape, and it changes the numbers bit-wise.")
    if torch.cuda.is_available():  # pragma: no cover - no GPU on the benchmark machines
        res.notes.append("A GPU is present but the benchmark runs on the CPU.")
    else:
        res.notes.append("No GPU on this machine: the official way's small batches starving a GPU is not "
                         "measured here.")
    res.notes.append("F-Fid runs on the same weights as R-Fid (fine-tuning changes the weights, not the cost).")
    td = res.data["tiny"]
    over, model_us = td["engine_overhead_us_per_row"], 1e6 / td["best_raw"]
    res.notes.append(
        "Allocator: every model runs in its own fresh process. With glibc's default malloc settings a tiny CNN's "
        "multi-MB activations are handed back to the kernel after each forward pass and page-fault on reuse "
        "(measured here: about 5,000 page faults per batch of 512, for the raw forward and the engine alike), "
        "and whether that happens depends on what ran before in the process: raw throughput then swings by 2x "
        "between runs and the ratio measures luck. The target lines therefore run with "
        f"{' '.join(f'{k}={v}' for k, v in TUNED_MALLOC.items())} (no page faults); the lines marked 'glibc "
        "default malloc' show the same measurement without them. Users of small models on Linux get the same "
        "speed-up by setting these two variables (or preloading jemalloc/tcmalloc); see the README.")
    res.notes.append(
        f"Where the tiny CNN's time goes: without any model (a 'model' returning ten pixels) the engine costs "
        f"{over:.1f} us per masked copy on {td['threads']} thread(s) (batch {td['engine_batch_size']}): 1,024 "
        "32-bit draws from the input's own PCG64 stream (512 64-bit outputs), comparing them with the threshold "
        "row of their run of copies, and writing the 12 kB masked copy. The tiny CNN's forward pass costs "
        f"{model_us:.1f} us per input at its best. Run one after the other the ratio could not exceed "
        f"{model_us / (model_us + over):.2f}; when masking costs more than a fifth of the forward pass, the "
        "engine builds the next masked batch in a background thread while the model runs the current one (same "
        "order, same numbers).")
    res.figures.append(_plot(res.data, ctx))
    return res


def _plot(data: dict[str, Any], ctx: Context) -> tuple[str, str]:
    import matplotlib.pyplot as plt

    from ffidelity.utils import atomic

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, name in zip(axes, ("resnet9", "tiny"), strict=True):
        ratios = data[name]["ratios"]
        labels, ours, official = ["Fid", "R-Fid", "F-Fid"], [], []
        for key in ("fid", "rfid", "ffid"):
            ours.append(ratios[f"ours_{key}_vs_raw"]["median"])
            official.append(ratios[f"official_{key}_vs_raw"]["median"])
        xs = np.arange(3)
        ax.bar(xs - 0.2, ours, 0.4, label="ours")
        ax.bar(xs + 0.2, official, 0.4, label="official way")
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xticks(xs, labels)
        ax.set_ylabel("throughput / raw forward")
        ax.set_title(f"{name} (raw {data[name]['best_raw']:.0f} inputs/s)")
        ax.set_ylim(0, 1.3)
        ax.legend(loc="upper right", ncols=2)
    fig.tight_layout()
    file = "engine_throughput.png"
    with atomic.atomic_path(ctx.out / file) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return file, ("Masked forward passes per second relative to the raw batched forward measured around them (1.0), median "
                  "over the repeats.")
