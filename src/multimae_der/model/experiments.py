"""Experiments on SynthAV whose answer is known: does fusion work?

:func:`fusion_study` writes a SynthAV set in RAVDESS format, prepares it at the model's image size, holds out
the last actors, trains one tiny VideoMAE per fusion strategy and scores it on the held-out actors. SynthAV is
built so that video alone can reach at best 50 % (each visual group holds two classes), audio alone at best 50 %,
and both together 100 %: a working fusion strategy scores far above 50 %, the unimodal baselines near 50 %.

Everything is cached under ``out``: the media files (``synthav/``), the prepared clips (``cache/``) and one run
folder per strategy (``runs/<strategy>/``, with its ``metrics.json`` and ``timing.json``), so a rerun only does
what is missing. The table goes to ``results.csv``, ``results.md`` and ``results.json`` (with the settings).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from torch.utils.data import Subset

from ffidelity.utils import atomic
from multimae_der.model.fusion import display_name

__all__ = ["FusionStudy", "fusion_study", "held_out_split"]


@dataclass
class FusionStudy:
    """Settings of :func:`fusion_study` (defaults: the measured CPU recipe and the issue's target set-up).

    Attributes:
        actors, test_actors: SynthAV actors; the last ``test_actors`` (by id) are held out.
        clips_per_actor: clips per actor (RAVDESS names allow at most 64 with balanced classes).
        duration, fps, synth_size: SynthAV clip format (frames are drawn at ``synth_size`` pixels).
        image_size: model input = prepared frame and audio picture size (tiny model: 64).
        num_frames, num_windows: video frames and audio windows per prepared clip.
        epochs, batch_size, lr, weight_decay, warmup: training (AdamW, warm-up then cosine).
        layers: encoder layers of the tiny model (default: the tiny config's, 2).
        seed: SynthAV, initialisation and shuffling seed.
        cue_share: share of each SynthAV clip that shows the class cue (see ``synthesize``).
        workers: processes for writing and preparing the clips.
    """

    actors: int = 8
    test_actors: int = 2
    clips_per_actor: int = 64
    duration: float = 2.0
    fps: int = 25
    synth_size: int = 64
    image_size: int = 64
    num_frames: int = 16
    num_windows: int = 16
    epochs: int = 12
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    layers: int | None = None
    seed: int = 0
    workers: int = 1
    cue_share: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields

    def __post_init__(self) -> None:
        if not 1 <= self.test_actors < self.actors:
            raise ValueError(f"test_actors must be between 1 and actors - 1, got {self.test_actors} of {self.actors}")


def held_out_split(actors: Sequence[str], test_actors: int) -> tuple[list[int], list[int]]:
    """``(train, test)`` clip indices: the last ``test_actors`` distinct actors (by number) are the test side."""
    from multimae_der.data.folds import _actor_sort_key

    unique = sorted(set(actors), key=_actor_sort_key)
    if not 1 <= test_actors < len(unique):
        raise ValueError(f"cannot hold out {test_actors} of {len(unique)} actors")
    test = set(unique[-test_actors:])
    return [i for i, a in enumerate(actors) if a not in test], [i for i, a in enumerate(actors) if a in test]


def _synth(root: Path, study: FusionStudy, progress: bool) -> float:
    """Writes the SynthAV set unless ``root`` already holds one with the same settings; returns seconds."""
    from ffidelity.utils.progress import progress_bar
    from multimae_der.data.synthav import synthesize

    wanted = {"format": "ravdess", "actors": study.actors, "clips_per_actor": study.clips_per_actor,
              "seed": study.seed, "duration": study.duration, "fps": study.fps, "size": study.synth_size,
              "cue_share": study.cue_share}
    meta = root / "synthav.json"
    if meta.is_file():
        have = json.loads(meta.read_text(encoding="utf-8"))
        if all(have.get(k, 1.0 if k == "cue_share" else None) == v for k, v in wanted.items()):
            return 0.0
        raise ValueError(f"{root} already holds a SynthAV set made with other settings; use another output folder")
    t0 = time.perf_counter()
    with progress_bar(study.actors * study.clips_per_actor, "writing SynthAV", enabled=progress) as advance:
        synthesize(root, "ravdess", actors=study.actors, clips_per_actor=study.clips_per_actor, seed=study.seed,
                   duration=study.duration, fps=study.fps, size=study.synth_size, workers=study.workers,
                   progress=advance, cue_share=study.cue_share)
    return time.perf_counter() - t0


def _markdown(table: pd.DataFrame) -> str:
    lines = ["| strategy | WAR (%) | UAR (%) | train time (s) | steps |", "|---|---|---|---|---|"]
    for r in table.itertuples():
        name = display_name(r.strategy)
        lines.append(f"| {name} | {r.war * 100:.1f} | {r.uar * 100:.1f} | {r.train_seconds:.0f} | {r.steps} |")
    return "\n".join(lines) + "\n"


def fusion_study(out: str | os.PathLike[str], strategies: Sequence[str] = ("fslf", "video", "audio"),
                 study: FusionStudy | None = None, *, progress: bool = True, **settings: Any) -> pd.DataFrame:
    """Trains and scores one tiny VideoMAE per fusion strategy on SynthAV (RAVDESS format, held-out actors).

    Args:
        out: working folder (media, cache, runs and the result tables; reruns reuse finished work).
        strategies: fusion strategies, e.g. ``("fslf", "video", "audio")`` or all eight.
        study: the settings (default :class:`FusionStudy`); ``settings`` override single fields, e.g.
            ``fusion_study(out, epochs=4, clips_per_actor=16)``.
        progress: progress bars.

    Returns:
        One row per strategy: ``strategy``, ``war``, ``uar`` (held-out actors), ``train_seconds``, ``steps``,
        ``epochs``, ``n_train``, ``n_test``, ``run`` (the run folder, for ``evaluate``/``predict``/explanations).
    """
    from multimae_der.data.datasets import build_dataset
    from multimae_der.data.prepare import PrepareConfig
    from multimae_der.model.evaluate import evaluate
    from multimae_der.model.fusion import FUSIONS
    from multimae_der.model.run import METRICS_FILE
    from multimae_der.model.train import TrainConfig, train

    study = dataclasses.replace(study or FusionStudy(), **settings)
    strategies = [s.lower() for s in strategies]
    for s in strategies:
        FUSIONS.get(s)
    out = Path(out)
    root, cache = out / "synthav", out / "cache"
    synth_seconds = _synth(root, study, progress)
    prep = PrepareConfig(num_frames=study.num_frames, num_windows=study.num_windows, image_size=study.image_size)
    t0 = time.perf_counter()
    data = build_dataset("ravdess", root, cache=cache, config=prep, workers=study.workers, progress=progress,
                         in_memory=True)
    prepare_seconds = time.perf_counter() - t0
    tr, te = held_out_split(data.actors, study.test_actors)
    train_set, test_set = Subset(data, tr), Subset(data, te)
    overrides = {"num_hidden_layers": study.layers} if study.layers else {}
    base = TrainConfig(model="tiny", image_size=study.image_size, model_overrides=overrides, epochs=study.epochs,
                       batch_size=study.batch_size, lr=study.lr, weight_decay=study.weight_decay,
                       warmup=study.warmup, seed=study.seed, **study.extra)
    info = {"dataset": "ravdess", "root": str(root.resolve()), "cache": str(cache.resolve()),
            "label_set": data.label_set.name, "fold": None, "held_out_actors": sorted({data.actors[i] for i in te})}
    rows = []
    for strategy in strategies:
        run = out / "runs" / strategy
        timing_file = run / "timing.json"
        if not (run / METRICS_FILE).is_file() or not timing_file.is_file():
            t0 = time.perf_counter()
            train(train_set, run, dataclasses.replace(base, fusion=strategy), preprocessing=prep, data_info=info,
                  progress=progress)
            seconds = time.perf_counter() - t0
            evaluate(run, test_set, batch_size=64, progress=progress)
            steps = study.epochs * -(-len(tr) // study.batch_size)
            atomic.write_json(timing_file, {"train_seconds": seconds, "steps": steps})
        metrics = json.loads((run / METRICS_FILE).read_text(encoding="utf-8"))
        timing = json.loads(timing_file.read_text(encoding="utf-8"))
        rows.append({"strategy": strategy, "war": metrics["war"], "uar": metrics["uar"],
                     "train_seconds": timing["train_seconds"], "steps": timing["steps"], "epochs": study.epochs,
                     "n_train": len(tr), "n_test": len(te), "run": str(run)})
    table = pd.DataFrame(rows)
    atomic.write_text(out / "results.csv", table.to_csv(index=False, float_format="%.4f"))
    atomic.write_text(out / "results.md", _markdown(table))
    atomic.write_json(out / "results.json", {
        "settings": dataclasses.asdict(study), "strategies": strategies, "rows": rows,
        "synth_seconds": synth_seconds, "prepare_seconds": prepare_seconds,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu_count": os.cpu_count()})
    return table
