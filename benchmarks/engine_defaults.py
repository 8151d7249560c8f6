"""The engine with its default settings in an ordinary process, against each model's best raw throughput.

What a user gets without tuning: ``Fidelity()``, ``RFidelity()``, ``FFidelity()`` with ``batch_size="auto"``,
in a fresh Python process with glibc's default allocator settings and torch's default thread count. The
reference is the model's best raw batched forward throughput over batch sizes 16-512 under ``inference_mode``.
Five models: the issue's plain conv net (64/128/128 channels on 32x32x3), ResNet-9, the tiny strided CNN, a small
ViT (Hugging Face, random weights) and the tiny VideoMAE of the emotion model (64x64, 16 frames, tubes filled).

Each ratio is the median of paired repeats (raw measured around every engine run, in the same process) with its
spread, so one lucky or unlucky run cannot decide MET. The calibration cost is what the timed chunks cost beyond
running the same copies at the chosen size, relative to a 19-sparsity, N = 50 evaluation of 100 inputs.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from benchmarks.common import BenchResult, Context, Target, allocator_env, register, run_child
from benchmarks.engine_throughput import raw_rate

MODELS = ("plain_cnn", "resnet9", "tiny_cnn", "small_vit", "tiny_videomae")


class ZeroLogits(nn.Module):
    """No model at all: zero logits for 10 classes, so an evaluation times the engine alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 10)
RAW_BATCHES = (16, 32, 64, 128, 256, 512)


class PlainCNN(nn.Module):
    """The issue's plain conv net: 3 conv layers (64/128/128) on 32x32x3, 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build(name: str) -> tuple[nn.Module, tuple[int, ...], Any]:
    """``(model, input shape, units)`` of one benchmark model, seeded."""
    from ffidelity import ImageUnits
    from ffidelity.evaluate.model import LogitsOnly
    from ffidelity.models.image import ResNet9, SmallCNN

    torch.manual_seed(0)
    if name == "plain_cnn":
        return PlainCNN(), (3, 32, 32), ImageUnits()
    if name == "resnet9":
        return ResNet9(3, 10, 64), (3, 32, 32), ImageUnits()
    if name == "tiny_cnn":
        return SmallCNN(3, 10, 16), (3, 32, 32), ImageUnits()
    if name == "small_vit":
        from transformers import ViTConfig, ViTForImageClassification

        cfg = ViTConfig(image_size=32, patch_size=4, num_channels=3, hidden_size=192, num_hidden_layers=6,
                        num_attention_heads=3, intermediate_size=768, num_labels=10)
        return LogitsOnly(ViTForImageClassification(cfg)), (3, 32, 32), ImageUnits(patch=4)
    if name == "tiny_videomae":
        from ffidelity import VideoUnits
        from multimae_der.model.videomae import build_classifier, make_config

        cfg = make_config("tiny", num_labels=8, image_size=64)
        return LogitsOnly(build_classifier(cfg)), (16, 3, 64, 64), VideoUnits(tubelet=2, patch=16)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def measure(name: str, profile: str) -> dict[str, Any]:
    """One model, in the calling (fresh, ordinary) process: raw best, then paired repeats of the three metrics.

    The engine tunes glibc's allocator at its first evaluation (:func:`~ffidelity.utils.allocator.auto_tune_allocator`),
    so the raw reference is measured in that same state, from the start: a raw sweep in the untuned state finds a
    page-faulting model (measured: the tiny CNN at 51-109k inputs/s against 200k tuned) and flatters the engine.
    The first evaluation of a fresh process is measured on its own by :func:`first_evaluation`.
    """
    from ffidelity import FFidelity, Fidelity, RFidelity, TokenFill
    from ffidelity.utils.allocator import auto_tune_allocator

    auto_tune_allocator()
    full = profile == "full"
    model, shape, units = build(name)
    model.eval()
    video = name == "tiny_videomae"
    raw_batches = tuple(b for b in RAW_BATCHES if not video or b <= (128 if full else 32))
    min_time = (1.0 if full else 0.3) * (3 if video else 1)
    gen = torch.Generator().manual_seed(0)
    pool = torch.randn(max(raw_batches), *shape, generator=gen)
    rates = {b: raw_rate(model, pool, b, min_time) for b in raw_batches}
    best = max(rates, key=rates.__getitem__)
    # evaluations of a realistic size (a few seconds each), so that per-call costs and the calibration weigh as
    # they do in use: about this many masked copies per R-/F-Fid evaluation
    copies = {"plain_cnn": 10_000, "resnet9": 4_000, "tiny_cnn": 100_000, "small_vit": 2_000,
              "tiny_videomae": 1_200}[name] if full else 400
    n_samples = (10 if video else 50) if full else (2 if video else 10)
    n_inputs = max(1, round(copies / (19 * 2 * n_samples)))
    sparsities = None if full else (0.1, 0.3, 0.5, 0.7, 0.9)
    x = torch.randn(n_inputs, *shape, generator=gen)
    attr = torch.randn(x.shape, generator=gen)
    metrics = {"fid": Fidelity(sparsities=sparsities, units=units, progress=False),
               "rfid": RFidelity(n_samples=n_samples, sparsities=sparsities, units=units, progress=False),
               "ffid": FFidelity(beta=0.1, n_samples=n_samples, sparsities=sparsities, units=units, progress=False)}
    if video:  # tokens filled in token space (TokenFill): the emotion bridge's default for token units
        metrics["rfid_tokenfill"] = RFidelity(n_samples=n_samples, sparsities=sparsities, units=TokenFill(units),
                                              progress=False)
    repeats = 3 if full else 2
    reps: list[dict[str, float]] = []
    chosen: dict[str, int] = {}
    calibration: dict[str, Any] = {}
    for _ in range(repeats):
        row: dict[str, float] = {}
        before = raw_rate(model, pool, best, min_time)
        for key, metric in metrics.items():
            rep = n_samples if key == "fid" else 1  # plain Fidelity has 1 copy per sparsity: as many copies
            n_fid = n_inputs * rep
            xs = x.repeat(rep, *([1] * (x.ndim - 1)))
            attrs = attr.repeat(rep, *([1] * (x.ndim - 1)))
            copies = n_fid * len(metric.sparsity_grid()) * 2 * (1 if key == "fid" else n_samples)
            t0 = time.perf_counter()
            metric.evaluate(model, xs, None, attrs)
            row[key] = (copies + n_fid) / (time.perf_counter() - t0)  # masked copies + the unmasked pass
            chosen[key] = int(metric.batch_size_)
            calibration[key] = list(metric.calibration_)
        after = raw_rate(model, pool, best, min_time)
        row["raw"] = (before + after) / 2
        reps.append(row)
    # the calibration's cost: the timed chunks' seconds beyond the same copies at the chosen size's speed
    ffid = metrics["ffid"]
    chunks = calibration["ffid"]
    per_copy = min(s / c for c, s in chunks if c == chosen["ffid"]) if any(c == chosen["ffid"] for c, _ in
                                                                          chunks) else min(s / c for c, s in chunks)
    extra = sum(s - c * per_copy for c, s in chunks)
    reference = 100 * 19 * 2 * 50 * per_copy  # a 19-sparsity, N = 50 evaluation of 100 inputs
    # what the engine costs per masked copy without a model (masks, copies, bookkeeping): with the model's forward
    # it bounds the reachable ratio, f / (f + m / threads) when both overlap perfectly on every core
    rfid = metrics["rfid"]
    zero = ZeroLogits()
    rfid.evaluate(zero, x, None, attr)  # warm-up: buffers, first-call costs
    t0 = time.perf_counter()
    rfid.evaluate(zero, x, None, attr)
    n_copies = n_inputs * len(rfid.sparsity_grid()) * 2 * n_samples
    overhead = (time.perf_counter() - t0) / n_copies
    return {"model": name, "params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
            "raw_rates": {str(k): v for k, v in rates.items()}, "raw_best_batch": best, "repeats": reps,
            "chosen_batch": chosen, "calibration_chunks": chunks, "calibration_extra_s": extra,
            "calibration_cost": extra / reference, "n_inputs": n_inputs, "n_samples": n_samples,
            "sparsities": ffid.sparsity_grid().tolist(), "tuned_allocator": auto_tune_allocator(),
            "overhead_s_per_copy": overhead, "overhead_batch": int(rfid.batch_size_)}


#: models whose first evaluation in a fresh process is timed with and without the engine's allocator tuning, and
#: the masked copies of that evaluation (R-Fidelity, N = 50, 19 sparsities)
FIRST_COPIES = {"plain_cnn": 3_800, "resnet9": 1_900, "small_vit": 1_900, "tiny_cnn": 38_000}


def first_evaluation(name: str, profile: str) -> dict[str, Any]:
    """The first R-Fidelity evaluation of a fresh process, as a user's script meets it: masked copies per second
    and page faults per copy. ``FFIDELITY_DEFAULT_MALLOC=1`` in the environment turns the allocator tuning off."""
    import resource

    from ffidelity import RFidelity
    from ffidelity.utils.allocator import auto_tune_allocator

    model, shape, units = build(name)
    model.eval()
    gen = torch.Generator().manual_seed(0)
    copies = FIRST_COPIES[name] if profile == "full" else 1_900  # one input
    n_inputs = max(1, copies // (19 * 2 * 50))
    x = torch.randn(n_inputs, *shape, generator=gen)
    attr = torch.randn(x.shape, generator=gen)
    metric = RFidelity(n_samples=50, units=units, progress=False)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    metric.evaluate(model, x, None, attr)
    seconds = time.perf_counter() - t0
    n = n_inputs * 19 * 2 * 50
    return {"rate": n / seconds, "faults_per_copy": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / n,
            "batch_size": int(metric.batch_size_), "tuned": auto_tune_allocator(), "copies": n}


def _first_evaluations(ctx: Context, res: BenchResult) -> None:
    """Is the engine's allocator tuning worth it? Fresh processes, first evaluation, on and off alternately."""
    pairs = 3 if ctx.profile.name == "full" else 1
    for name in FIRST_COPIES if ctx.profile.name != "smoke" else ("tiny_cnn",):
        runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
        for _ in range(pairs):
            for arm, env in (("on", allocator_env("default")), ("off", allocator_env("glibc"))):
                runs[arm].append(run_child("engine_first", {"name": name, "profile": ctx.profile.name},
                                           timeout=900, env_changes=env))
        res.data[f"{name}_first"] = runs
        ratios = [on["rate"] / off["rate"] for on, off in zip(runs["on"], runs["off"], strict=True)]
        med = statistics.median(ratios)
        ctx.log(f"  {name} first evaluation, tuned / glibc defaults: {med:.2f}x")
        res.targets.append(Target(
            f"{name} first R-Fidelity evaluation in a fresh process: allocator tuning on / off", med, unit="x",
            note=f"median of {pairs} paired fresh processes, range {min(ratios):.2f}-{max(ratios):.2f}; "
            f"{statistics.median(r['rate'] for r in runs['on']):.0f} vs "
            f"{statistics.median(r['rate'] for r in runs['off']):.0f} copies/s; page faults per copy "
            f"{statistics.median(r['faults_per_copy'] for r in runs['on']):.1f} vs "
            f"{statistics.median(r['faults_per_copy'] for r in runs['off']):.1f}; applied: "
            f"{all(r['tuned'] for r in runs['on'])} / {any(r['tuned'] for r in runs['off'])}"))


@register("engine_defaults")
def engine_defaults(ctx: Context) -> BenchResult:
    """Fid, R-Fid and F-Fid with default settings vs the best raw forward, five models, ordinary processes."""
    p = ctx.profile
    res = BenchResult("engine_defaults", "The engine with default settings (batch_size auto) in an ordinary process")
    for name in MODELS if p.name != "smoke" else ("tiny_cnn",):
        data = run_child("engine_defaults", {"name": name, "profile": p.name}, timeout=1800,
                         env_changes=allocator_env("default"))
        res.data[name] = data
        best_raw = max(data["raw_rates"].values())
        for key, label in (("fid", "Fidelity"), ("rfid", "R-Fidelity"), ("ffid", "F-Fidelity")):
            # against the best raw rate of the run (batch sizes 16-512) and against the raw rate paired in time
            paired = [r[key] / r["raw"] for r in data["repeats"]]
            vs_best = [r[key] / max(best_raw, r["raw"]) for r in data["repeats"]]
            med = statistics.median(vs_best)
            ctx.log(f"  {name} {label}: {med:.2f}x best raw ({min(vs_best):.2f}-{max(vs_best):.2f}), batch "
                    f"{data['chosen_batch'][key]}")
            res.targets.append(Target(
                f"{name} {label} / best raw forward (default settings)", med, 0.9, unit="x",
                note=f"median of {len(vs_best)} repeats, range {min(vs_best):.2f}-{max(vs_best):.2f}; paired with "
                f"the raw rate measured around each run: median {statistics.median(paired):.2f}; batch chosen "
                f"{data['chosen_batch'][key]}, raw best at batch {data['raw_best_batch']} "
                f"({best_raw:.0f} inputs/s)"))
        if "rfid_tokenfill" in data["repeats"][0]:
            tf = [r["rfid_tokenfill"] / max(best_raw, r["raw"]) for r in data["repeats"]]
            fill = [r["rfid"] / r["rfid_tokenfill"] for r in data["repeats"]]
            res.targets.append(Target(
                f"{name} R-Fidelity with TokenFill (tokens filled in token space) / best raw forward",
                statistics.median(tf), 0.9, unit="x",
                note=f"median of {len(tf)} repeats, range {min(tf):.2f}-{max(tf):.2f}; the same numbers as filling "
                f"pixels (tests/ffidelity/units/test_token_fill.py) in {statistics.median(fill):.2f}x the time; "
                f"batch chosen {data['chosen_batch']['rfid_tokenfill']}"))
        forward = 1 / best_raw  # seconds per input at the best raw rate, on every thread
        bound = forward / (forward + data["overhead_s_per_copy"] / data["threads"])
        res.targets.append(Target(
            f"{name} engine without a model: seconds per masked copy (R-Fidelity), and the ratio it allows",
            data["overhead_s_per_copy"] * 1e6, unit="us",
            note=f"forward {forward * 1e6:.1f} us per input at the best raw rate; with masking and forward "
            f"overlapping perfectly on {data['threads']} threads the ratio cannot pass {bound:.2f}x"))
        res.targets.append(Target(f"{name} calibration cost (share of a 19-sparsity, N = 50, 100-input F-Fid run)",
                                  data["calibration_cost"] * 100, 3.0, op="<", unit="%",
                                  note=f"{data['calibration_extra_s'] * 1e3:.0f} ms beyond the same copies at the "
                                  "chosen size"))
    _first_evaluations(ctx, res)
    res.notes.append("Each model runs in a fresh process with torch's default thread count and no allocator variables "
                     "in the environment: what the library does by default (batch size 'auto', glibc's malloc "
                     "thresholds raised at the engine's first evaluation) is what is measured. The raw reference is "
                     "the best of batch sizes 16-512 (16-128 for the VideoMAE in the full profile) and of the raw "
                     "rates measured around each repeat, in the allocator state the engine runs in (tuned).")
    return res
