"""Against Quantus: PixelFlipping vs our plain Fidelity on the same ResNet-9 and inputs, at the same number of
forward passes, beside the raw forward limit, in one child process.

Quantus comes with the ``dev`` extra (``make install``; alone: ``pip install -e '.[quantus]'``). A side folder
that leaves the venv untouched also works::

    pip install --no-deps --target benchmarks/results/raw/quantus_site quantus==0.6.0 opencv-python-headless \\
        scikit-image cachetools imageio tifffile lazy_loader networkx

Without either, the comparison is reported NOT MET with the reason, never skipped.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
from typing import Any

import torch

from benchmarks.common import REPO, BenchResult, Context, Target, register, run_child

#: where a side installation of Quantus is looked for (git-ignored, outside the venv)
SITE = REPO / "benchmarks" / "results" / "raw" / "quantus_site"


def resnet9_and_data(n_inputs: int, width: int, threads: int, site: str | None = None
                     ) -> tuple[Any, torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """In a comparison's child process: Quantus (from ``site`` when given), a seeded ResNet-9 on ``threads``
    threads, ``n_inputs`` random 3x32x32 inputs, one-channel random attributions and the model's predictions."""
    if site:
        sys.path.insert(0, site)
    import warnings

    import quantus

    from ffidelity.models.image import ResNet9
    from ffidelity.utils.allocator import auto_tune_allocator

    # our engine tunes the allocator at its first evaluation: from the start, Quantus, the raw forward and ours
    # all run in that state (otherwise Quantus's first repeat would run page-faulting and ours not)
    auto_tune_allocator()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ResNet9(3, 10, width).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_inputs, 3, 32, 32, generator=gen)
    attr = torch.randn(n_inputs, 1, 32, 32, generator=gen)
    with torch.inference_mode():
        y = model(x).argmax(-1)
    return quantus, model, x, attr, y


def available() -> bool:
    """Whether Quantus can be imported, from the environment or from :data:`SITE`."""
    return importlib.util.find_spec("quantus") is not None or (SITE / "quantus").is_dir()


@register("quantus")
def quantus_cmp(ctx: Context) -> BenchResult:
    """Quantus PixelFlipping vs ours at an equal count of forward passes (NOT MET when Quantus is missing)."""
    p = ctx.profile
    res = BenchResult("quantus", "Against Quantus PixelFlipping")
    site = SITE
    if not available():
        res.targets.append(Target("ours / Quantus PixelFlipping (forward passes per second)", None, 1.0, op=">",
                                  unit="x", note="Quantus is not installed: make install, or pip install -e "
                                                 "'.[quantus]' (see benchmarks/quantus_cmp.py)"))
        res.notes.append("NOT MEASURED: Quantus is not installed (it comes with the dev extra).")
        return res
    n = 16 if p.name == "full" else 4
    out = run_child("quantus_pixelflipping", {"n_inputs": n, "features_in_step": 64 if p.name == "full" else 256,
                                              "width": p.resnet_width, "threads": ctx.best_threads,
                                              "site": str(site) if site.is_dir() else None,
                                              "repeats": max(1, p.repeats)}, timeout=900)
    rows = out["repeats"]
    ours_vs_q = statistics.median(r["ours"] / r["quantus"] for r in rows)
    q_raw = statistics.median(r["quantus"] / r["raw"] for r in rows)
    o_raw = statistics.median(r["ours"] / r["raw"] for r in rows)
    res.data = out
    ctx.log(f"  quantus {q_raw:.2f}x raw, ours {o_raw:.2f}x raw, ours / quantus {ours_vs_q:.2f}")
    res.targets.append(Target(f"ours / Quantus {out['quantus_version']} PixelFlipping (ResNet-9 width "
                              f"{p.resnet_width}, {n} inputs)", ours_vs_q, 1.0, op=">", unit="x",
                              note=f"Quantus {q_raw:.2f}x raw, ours {o_raw:.2f}x raw; "
                              f"{out['passes_per_input']} forward passes per input each"))
    where = str(site.relative_to(REPO)) if site.is_dir() else "the environment"
    res.notes.append(f"Quantus ran from {where}; batch size = {n} inputs for both; forward passes counted by a hook "
                     f"on the model: {out['passes_per_input']:g} per input for PixelFlipping (it spreads one "
                     f"attribution map over the 3 channels), {out['ours_passes_per_input']:g} for plain Fidelity "
                     "(one per sparsity and side, plus the unmasked pass).")
    return res
