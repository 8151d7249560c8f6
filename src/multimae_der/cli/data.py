"""``multimae-der synth | prepare | folds``: make SynthAV files, preprocess a data set, show its folds."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ffidelity.cli._common import console, err_console, friendly_errors

# The ONE --cache option of every command that reads prepared clips (prepare, train, evaluate, cv, pretrain,
# explain, faithfulness): all default to the same folder, so `prepare` fills the cache the others read.

#: worker processes for writing and preparing clips: one per core, at most 8
DEFAULT_WORKERS = max(1, min(8, os.cpu_count() or 1))

CacheOpt = Annotated[Path | None, typer.Option(help="Cache of prepared clips (default: ROOT/.multimae-cache, or "
                                                    "~/.cache/multimae-der/... when ROOT is read-only; commands "
                                                    "that read a run use the run's).")]


@contextmanager
def _one_line_warnings() -> Iterator[list[str]]:
    """Shows each skipped-clip warning as one yellow line (no source location)."""
    from multimae_der.data.sources import SkippedClipWarning

    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedClipWarning)
        try:
            yield lines
        finally:
            for w in caught:
                if issubclass(w.category, SkippedClipWarning):
                    err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
                    lines.append(str(w.message))
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly_errors
    def synth(
        out: Path = typer.Option(..., help="Output folder."),
        format: str = typer.Option("ravdess", "--format", help="ravdess | cremad | iemocap layout and naming."),
        actors: int = typer.Option(24, help="Number of actors (held-out actors are recognised only after training "
                                            "on many: 20 training actors reach >= 0.9 WAR, 4 reach ~0.7)."),
        clips_per_actor: int = typer.Option(24, help="Clips per actor (3 per class for RAVDESS's 8 classes)."),
        seed: int = typer.Option(0, help="Random seed (same seed, same files)."),
        duration: float = typer.Option(2.0, help="Clip length in seconds."),
        fps: int = typer.Option(25, help="Frames per second."),
        size: int = typer.Option(112, help="Frame side in pixels (multiple of 16)."),
        workers: int = typer.Option(DEFAULT_WORKERS, help="Worker processes (default: the cores, at most 8)."),
        cue_share: float = typer.Option(1.0, help="Share of each clip (one span) whose face and voice show the "
                                                  "class; 1 = everywhere, 0.25 = a quarter of the clip."),
    ) -> None:
        """Write a SynthAV set (synthetic faces + voices with known ground truth) as real media files."""
        from ffidelity.utils.progress import progress_bar
        from multimae_der.data.synthav import synthesize

        t0 = time.perf_counter()
        with progress_bar(actors * clips_per_actor, f"synthesizing {format}") as advance:
            result = synthesize(out, format, actors=actors, clips_per_actor=clips_per_actor, seed=seed,
                                duration=duration, fps=fps, size=size, workers=workers, progress=advance,
                                cue_share=cue_share)
        console.print(f"wrote {result['clips']} {format} clips ({result['classes']} classes) to {out} "
                      f"in {time.perf_counter() - t0:.1f} s")

    @app.command()
    @friendly_errors
    def prepare(
        dataset: str = typer.Option(..., help="ravdess | cremad | iemocap."),
        root: Path = typer.Option(..., help="The data set's folder."),
        cache: CacheOpt = None,
        workers: int = typer.Option(DEFAULT_WORKERS, help="Worker processes (default: the cores, at most 8)."),
        frames: int = typer.Option(16, help="Video frames per clip."),
        windows: int = typer.Option(16, help="Audio windows per clip."),
        image_size: int = typer.Option(112, help="Frame / audio picture side (224 for the paper)."),
        sample_rate: int = typer.Option(16000, help="Audio sample rate in Hz."),
        audio_feature: str = typer.Option("logmel", help="logmel | mfcc (the paper's picture)."),
        frame_sampling: str = typer.Option("even", help="even | stride (the official code's)."),
        frame_stride: int = typer.Option(3, help="Stride for --frame-sampling stride."),
        crop: str = typer.Option("center", help="center | face (needs OpenCV)."),
        colormap: str = typer.Option("viridis", help="Colormap of audio pictures, or gray."),
    ) -> None:
        """Decode and preprocess every clip of a data set into the cache (reruns decode only what is missing)."""
        from multimae_der.data.datasets import default_cache
        from multimae_der.data.prepare import PrepareConfig, prepare_dataset

        cache = cache if cache is not None else default_cache(root)
        config = PrepareConfig(num_frames=frames, num_windows=windows, image_size=image_size,
                               sample_rate=sample_rate, audio_feature=audio_feature, frame_sampling=frame_sampling,
                               frame_stride=frame_stride, crop=crop, colormap=colormap)
        with _one_line_warnings():
            summary = prepare_dataset(dataset, root, cache, config, workers=workers)
        rate = summary.decoded / summary.seconds if summary.seconds > 0 else 0.0
        left_out = sum(summary.left_out.values())
        console.print(f"{summary.clips} clips ready in {cache} (config {summary.config_hash}): "
                      f"{summary.decoded} decoded, {summary.cached} cached, {summary.rebuilt} rebuilt, "
                      f"{len(summary.skipped)} skipped, {left_out} left out; {summary.seconds:.1f} s "
                      f"({rate:.1f} clips/s)")
        for reason, count in sorted(summary.left_out.items()):
            console.print(f"  left out: {count} x {reason}")

    @app.command()
    @friendly_errors
    def folds(
        dataset: str = typer.Option(..., help="ravdess | cremad | iemocap."),
        root: Path = typer.Option(..., help="The data set's folder."),
        num_folds: Optional[int] = typer.Option(None, help="Override the number of folds (not IEMOCAP)."),  # noqa: UP045
        seed: int = typer.Option(0, help="Seed of the CREMA-D speaker shuffle."),
    ) -> None:
        """Print the subject-independent folds (test speakers and clip counts), numbered as --fold takes them."""
        from multimae_der.data.folds import fold_indices, subject_folds
        from multimae_der.data.sources import scan_dataset

        with _one_line_warnings():
            scan = scan_dataset(dataset, root)
        actors = [s.actor for s in scan.sources]
        table = Table(title=f"{dataset} folds ({len(actors)} clips, {len(set(actors))} speakers)")
        for column in ("fold", "name", "test speakers", "train clips", "test clips"):
            table.add_column(column)
        for fold in subject_folds(dataset, actors, num_folds=num_folds, seed=seed):
            train, test = fold_indices(actors, fold)
            table.add_row(str(fold.index + 1), fold.name, " ".join(fold.test_actors), str(len(train)), str(len(test)))
        console.print(table)
