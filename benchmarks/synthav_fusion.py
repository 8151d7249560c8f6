"""Does fusion work? FSLF vs video-only vs audio-only on SynthAV (the MultiMAE-DER issue's target).

SynthAV in RAVDESS format, 8 actors (train on 6, test on the last 2), tiny VideoMAE at 64x64 (patch 16,
tubelet 2, 16 frames, width 192, 4 layers: pinned below), AdamW lr 1e-3, weight decay 0.05, batch 16, 5% warm-up then cosine.
Target: FSLF WAR >= 0.90 while video-only and audio-only stay near their 50% ceiling, the three trainings under
4 minutes in total on 2 free cores. ``--all`` trains the six strategies of the paper plus both baselines.

    PYTHONPATH=src python benchmarks/synthav_fusion.py            # -> benchmarks/results/raw/synthav_fusion
    PYTHONPATH=src python benchmarks/synthav_fusion.py --quick      # a smoke run: fewer clips and epochs

A measurement, not a test: the numbers depend on the machine's load (reported with the results).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# before torch loads OpenMP: spinning threads collapse when other jobs share the 2 cores (see multimae_der.cli)
os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help="working folder (default benchmarks/results/raw/synthav_fusion[-quick], git-ignored)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of the whole pipeline (16 clips per actor, 4 epochs, 1 s clips): "
                             "too little training to say anything about fusion")
    parser.add_argument("--all", action="store_true", help="all eight strategies (six fusions + two baselines)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--clips-per-actor", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="processes for writing/preparing clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    from multimae_der.model.experiments import FusionStudy, fusion_study
    from multimae_der.model.fusion import PAPER_ORDER

    study = FusionStudy(seed=args.seed, workers=args.workers, layers=4)  # the committed results: 4 layers
    if args.quick:
        study.clips_per_actor, study.epochs, study.duration = 16, 4, 1.0
    if args.epochs is not None:
        study.epochs = args.epochs
    if args.clips_per_actor is not None:
        study.clips_per_actor = args.clips_per_actor
    out = args.out or Path("benchmarks/results/raw") / ("synthav_fusion-quick" if args.quick else "synthav_fusion")
    strategies = list(PAPER_ORDER) if args.all else ["fslf", "video", "audio"]
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores",
          flush=True)
    t0 = time.perf_counter()
    table = fusion_study(out, strategies, study, progress=not args.no_progress)
    total = time.perf_counter() - t0
    print((out / "results.md").read_text(encoding="utf-8"))
    three = table[table["strategy"].isin(["fslf", "video", "audio"])]["train_seconds"].sum()
    print(f"training time of fslf + video + audio: {three:.0f} s (target < 240 s); whole script {total:.0f} s")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    rows = table.set_index("strategy")
    if not args.quick and {"fslf", "video", "audio"} <= set(rows.index):
        accurate = rows.loc["fslf", "war"] >= 0.9 and all(abs(rows.loc[s, "war"] - 0.5) <= 0.15
                                                          for s in ("video", "audio"))
        print(f"accuracy target (FSLF WAR >= 0.90, video/audio near 0.50): {'met' if accurate else 'NOT met'}; "
              f"time target (< 240 s on 2 free cores): {'met' if three < 240 else 'NOT met'} "
              f"({three / rows.loc[['fslf', 'video', 'audio'], 'steps'].sum():.2f} s per training step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
