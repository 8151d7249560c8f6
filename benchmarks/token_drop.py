"""Token dropping: the engine's masked forwards against the raw model given the same number of tokens.

At sparsity ``s`` the engine runs, per input, a MoRF copy keeping ``D - k`` tokens and a LeRF copy keeping
``k = s * D`` tokens (alpha 1: the whole explanation or its whole complement is dropped). The reference is
Hugging Face's own masked forward (``bool_masked_pos``) on batches whose every clip keeps that many tokens, at
its best batch size: the time one clip's evaluation (its unmasked forward and the two copies) would take at raw
speed is ``1 / raw(D) + 1 / raw(D - k) + 1 / raw(k)``. The ratio of that time to the engine's is the engine's
share of the raw throughput (1 = raw speed; above 1 the engine is
faster, because it embeds each clip once for all its copies instead of once per copy).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks.common import BenchResult, Context, Target, register

SPARSITIES = (0.1, 0.3, 0.5, 0.7, 0.9)


def _best_time(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@register("token_drop")
def token_drop(ctx: Context) -> BenchResult:
    """Masked-forward throughput with token dropping at each sparsity, against the raw model on as many tokens."""
    from ffidelity import RFidelity, VideoUnits
    from ffidelity.units.token_drop import TokenDrop
    from ffidelity.utils.allocator import auto_tune_allocator
    from multimae_der.explain.attributions import EmotionLogits
    from multimae_der.model.videomae import build_classifier, make_config

    auto_tune_allocator()  # the engine's own allocator state, for the raw reference too
    p = ctx.profile
    res = BenchResult("token_drop", "Token dropping: engine vs raw model given (1 - s) of the tokens")
    torch.manual_seed(0)
    model = EmotionLogits(build_classifier(make_config("tiny", num_labels=8, num_hidden_layers=4))).eval()  # 128 tokens
    n = 16 if p.name == "full" else 4
    x = torch.randn(n, 16, 3, 64, 64)
    a = torch.randn(n, 128)
    y = torch.zeros(n, dtype=torch.long)
    d = 128
    units = TokenDrop(VideoUnits(2, 16))
    repeats = max(1, p.repeats)
    raw_rate: dict[int, float] = {}
    raw_batches = (16, 32, 64) if p.name == "full" else (16,)

    def raw(kept: int) -> float:
        if kept not in raw_rate:
            best = 0.0
            for b in raw_batches:
                xb = x[:1].expand(b, *x.shape[1:]).contiguous()
                mask = torch.zeros(b, d, dtype=torch.bool)
                mask[:, kept:] = True  # the same number of tokens dropped in every clip
                with torch.inference_mode():
                    t = _best_time(lambda xb=xb, mask=mask: model.model(pixel_values=xb, bool_masked_pos=mask), repeats)
                best = max(best, b / t)
            raw_rate[kept] = best
        return raw_rate[kept]

    rows = []
    for s in SPARSITIES:
        k = int(s * d + 0.5)
        metric = RFidelity(alpha_plus=1.0, alpha_minus=1.0, n_samples=1, sparsities=[s], mode="prob", units=units,
                           batch_size=32, progress=False)
        t_engine = _best_time(lambda metric=metric: metric.evaluate(model, x, y, a), repeats)
        # every evaluate also runs the unmasked clips once: at raw speed that is 1 / raw(D) per clip
        ideal = 1.0 / raw(d) + 1.0 / raw(d - k) + 1.0 / raw(k)
        per_clip = t_engine / n
        rows.append({"sparsity": s, "kept_morf": d - k, "kept_lerf": k, "engine_clips_per_s": 1.0 / per_clip,
                     "raw_clips_per_s": 1.0 / ideal, "ratio": ideal / per_clip})
        ctx.log(f"  s={s}: engine {1 / per_clip:.0f} clips/s, raw {1 / ideal:.0f} clips/s, ratio {ideal / per_clip:.2f}")
    res.data = {"rows": rows, "raw_tokens_per_s": {str(k): v for k, v in raw_rate.items()},
                "model": "tiny VideoMAE (4 layers, hidden 192, 64x64, 16 frames: 128 tokens)", "inputs": n}
    res.notes.append("Engine: RFidelity(alpha 1) with TokenDrop(VideoUnits(2, 16)), batch 32, one sparsity per run, "
                     "minus the unmasked forward it also runs. Raw: HF VideoMAE with bool_masked_pos, best of batch "
                     f"sizes {raw_batches}.")
    for r in rows:
        res.targets.append(Target(f"token dropping at sparsity {r['sparsity']}: engine / raw with as many tokens",
                                  r["ratio"], 0.9, unit="x",
                                  note=f"MoRF keeps {r['kept_morf']}, LeRF {r['kept_lerf']} of {d} tokens"))
    return res
