"""Integrated Gradients and SG-SQ: time per input, and peak memory bounded by the internal batch size.

``explain`` always passes ``internal_batch_size`` to Captum, so the interpolated inputs held at once are at most
that many: more integration steps (or more noise samples) cost time, not memory. Each configuration runs in a
fresh process; the working memory is the peak RSS above the process just before the call.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import BenchResult, Context, Target, register, run_child


@register("explainers")
def explainers(ctx: Context) -> BenchResult:
    """IG at S and 4S steps and SG-SQ at M and 2M noise samples, one internal batch size; then a 4x larger one."""
    p = ctx.profile
    res = BenchResult("explainers", "IntegratedGradients and SG-SQ: time per input and bounded memory")
    ibs = 64
    common = {"n_inputs": p.explain_inputs, "width": p.explain_width, "threads": ctx.best_threads}
    steps, nt = p.explain_steps, p.explain_nt
    plans = {
        "integrated_gradients": {"ig": (ibs, steps, 1), "ig_4x_steps": (ibs, 4 * steps, 1),
                                 "ig_4x_internal_batch": (4 * ibs, 4 * steps, 1)},
        "sg_sq": {"sg_sq": (ibs, steps, nt), "sg_sq_2x_noise": (ibs, steps, 2 * nt)},
    }
    runs: dict[str, Any] = {}
    for method, plan in plans.items():  # one fresh process per method, the peak reset before each run
        configs = [{"internal_batch_size": b, "n_steps": s, "nt_samples": n} for b, s, n in plan.values()]
        answer = run_child("explain_memory", {"method": method, "configs": configs, **common})
        for key, r in zip(plan, answer["runs"], strict=True):
            runs[key] = r
            ctx.log(f"  {key}: {r['seconds_per_input']:.2f} s/input, working {r['working_mb']:.0f} MB, "
                    f"peak {r['peak_rss_mb']:.0f} MB")
    res.data = {"runs": runs, "model": f"ResNet9(3, 10, width={p.explain_width}) on 3x32x32",
                "internal_batch_size": ibs}
    res.notes.append(f"ResNet-9 width {p.explain_width} on {p.explain_inputs} 32x32 inputs, "
                     f"{ctx.best_threads} thread(s), explain(batch_size=64); one fresh process per method, the peak "
                     "RSS reset (Linux clear_refs) before each configuration, so each peak is that run's own.")
    ig, sg = runs["ig"], runs["sg_sq"]
    res.targets += [
        Target(f"IG time per input ({p.explain_steps} steps)", ig["seconds_per_input"], unit="s",
               note=f"{ig['gradient_evaluations'] / ig['seconds']:.0f} gradient evaluations/s"),
        Target(f"SG-SQ time per input ({p.explain_nt} noise x {p.explain_steps} steps)", sg["seconds_per_input"],
               unit="s", note=f"{sg['gradient_evaluations'] / sg['seconds']:.0f} gradient evaluations/s"),
        Target("IG peak RSS at 4x steps / at 1x (same internal batch)",
               runs["ig_4x_steps"]["peak_rss_mb"] / ig["peak_rss_mb"], 1.15, op="<=", unit="x",
               note=f"working {ig['working_mb']:.0f} -> {runs['ig_4x_steps']['working_mb']:.0f} MB"),
        Target("SG-SQ peak RSS at 2x noise samples / at 1x (same internal batch)",
               runs["sg_sq_2x_noise"]["peak_rss_mb"] / sg["peak_rss_mb"], 1.15, op="<=", unit="x",
               note=f"working {sg['working_mb']:.0f} -> {runs['sg_sq_2x_noise']['working_mb']:.0f} MB"),
        Target(f"IG working memory, internal batch {4 * ibs} vs {ibs}",
               runs["ig_4x_internal_batch"]["working_mb"] / max(runs["ig_4x_steps"]["working_mb"], 1.0),
               unit="x", note="the internal batch size is the knob that sets memory"),
    ]
    return res
