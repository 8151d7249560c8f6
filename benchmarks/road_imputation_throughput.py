"""Throughput of ROAD's noisy linear imputation: 32x32x3 batches of 256 images, 50 % of pixels removed.

Run: PYTHONPATH=src python benchmarks/road_imputation_throughput.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import time

import torch

from ffidelity.metrics.road import NoisyLinearImputer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--removed", type=float, default=0.5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=gen)
    keep = (torch.rand(args.batch, 1, 32, 32, generator=gen) >= args.removed).expand_as(x)
    configs = {
        "cg float64 (default)": NoisyLinearImputer(),
        "cg float32": NoisyLinearImputer(dtype=torch.float32),
        "direct (scipy spsolve)": NoisyLinearImputer(solver="direct"),
    }
    print(f"batch {args.batch} x 3 x 32 x 32, {args.removed:.0%} removed, {args.threads} torch thread(s)")
    for name, imputer in configs.items():
        imputer(x[:8], keep[:8])  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            imputer(x, keep)
            best = min(best, time.perf_counter() - t0)
        print(f"  {name:24s} {args.batch / best:8.0f} images/s  ({best * 1000:.0f} ms per batch)")


if __name__ == "__main__":
    main()
