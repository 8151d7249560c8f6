"""Emotion side: ``prepare`` throughput on 720p clips, the data-wait share of a training step, ``predict`` latency.

* prepare: SynthAV clips rendered, then laid out like RAVDESS's videos (1280x720, 30 fps H.264, 48 kHz stereo
  AAC, ~3 s) and named like them; ``prepare_dataset`` decodes them into a fresh cache. Reported in clips/s and
  in times real time (seconds of clip prepared per second), with a per-stage breakdown of one clip.
* data wait: the real ``ClipDataset`` (a prepared cache) + ``DataLoader`` + ``FusionCollate`` feeding the real
  Lightning ``train`` on the tiny VideoMAE; a callback times each step (batch start to end) and the gap before
  it (fetching, collating and the loop's own bookkeeping), the first step of each epoch left out.
* predict: a 3 s 720p clip, preprocessed at the model's size and classified, for the tiny and the base
  configuration (base randomly initialised: latency does not depend on the weights).
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BenchResult, Context, Target, register, threads, timed

RAVDESS_CLASSES = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


# -- 720p RAVDESS-like clips ------------------------------------------------------------------------------------
def make_hd_clips(root: Path, count: int, size: tuple[int, int], seconds: float, fps: int = 30,
                  sample_rate: int = 48000) -> list[Path]:
    """Writes ``count`` SynthAV clips as RAVDESS-style 720p mp4 files under ``root/Actor_01``.

    The cartoon face is rendered at 144x144 (SynthAV's drawing is per pixel) and scaled to the frame height,
    centred on the actor's background colour; the voice is rendered at 48 kHz and written as stereo AAC.
    """
    import av
    from PIL import Image

    from ffidelity.utils.atomic import atomic_path
    from multimae_der.data.synthav_render import CLASS_DESIGNS, ClipSpec, make_actor, render_clip

    width, height = size
    folder = root / "Actor_01"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    actor = make_actor(0, 0)
    bg = (np.array(actor.background) * 255).astype(np.uint8)
    for c in range(count):
        emotion = c % 8
        _, vg, ag = CLASS_DESIGNS["ravdess"][emotion]
        path = folder / f"01-01-{emotion + 1:02d}-01-{1 + (c // 8) % 2:02d}-{1 + (c // 16) % 2:02d}-01.mp4"
        paths.append(path)
        if path.exists():
            continue
        clip = render_clip(ClipSpec(actor, vg, ag, 1.0, seed=1000 + c, duration=seconds, fps=fps, size=144,
                                    sample_rate=sample_rate))
        side = min(width, height)
        canvas = np.empty((height, width, 3), np.uint8)
        canvas[:] = bg
        top, left = (height - side) // 2, (width - side) // 2
        with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as out:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
            vs.options = {"preset": "veryfast", "crf": "20"}
            aus = out.add_stream("aac", rate=sample_rate)
            aus.layout = "stereo"
            for img in clip.frames:
                canvas[top : top + side, left : left + side] = np.asarray(
                    Image.fromarray(img).resize((side, side), Image.BILINEAR))
                for packet in vs.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
            stereo = np.repeat(clip.audio[None, :], 2, axis=0).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(stereo, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = sample_rate, 0
            for packet in aus.encode(frame):
                out.mux(packet)
            for packet in aus.encode(None):
                out.mux(packet)
    return paths


def _prepare(ctx: Context, res: BenchResult) -> Path:
    from multimae_der.data.media import read_audio, read_video
    from multimae_der.data.prepare import PrepareConfig, prepare_dataset, preprocess_clip

    p = ctx.profile
    w, h = p.hd_size
    root = ctx.raw / f"hd_{w}x{h}_{p.clip_seconds:g}s"
    t0 = time.perf_counter()
    paths = make_hd_clips(root, p.hd_clips, p.hd_size, p.clip_seconds)
    made = time.perf_counter() - t0
    config = PrepareConfig()
    preprocess_clip(paths[0], config)  # imports (librosa, PIL) and first-call set-up, outside the timing
    cache = ctx.raw / "hd_cache"
    runs = []
    for _ in range(max(1, p.repeats)):
        shutil.rmtree(cache, ignore_errors=True)
        t1 = time.perf_counter()
        summary = prepare_dataset("ravdess", root, cache, config, workers=1, progress=False)
        runs.append(time.perf_counter() - t1)
        if summary.clips != len(paths):
            raise RuntimeError(f"prepare kept {summary.clips} of {len(paths)} clips: {summary.skipped}")
    sec = statistics.median(runs)
    clip = paths[0]
    stages = {
        "read_video": timed(lambda: read_video(clip, config.num_frames, config.image_size)),
        "read_audio": timed(lambda: read_audio(clip, config.sample_rate)),
        "preprocess_clip": timed(lambda: preprocess_clip(clip, config)),
    }
    stages["audio_features"] = max(0.0, stages["preprocess_clip"] - stages["read_video"] - stages["read_audio"])
    clips_per_s = len(paths) / sec
    res.data["prepare"] = {"clips": len(paths), "frame": [w, h], "seconds_per_clip_audio": p.clip_seconds,
                           "fps": 30, "audio": "48 kHz stereo AAC", "config": config.to_dict(), "seconds": runs,
                           "clips_per_s": clips_per_s, "x_real_time": clips_per_s * p.clip_seconds,
                           "stages_one_clip_s": stages, "generation_seconds": made, "workers": 1}
    ctx.log(f"  prepare: {clips_per_s:.2f} clips/s = {clips_per_s * p.clip_seconds:.1f}x real time; stages "
            + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in stages.items()))
    res.targets += [
        Target(f"prepare throughput ({w}x{h}, 48 kHz, {p.clip_seconds:g} s clips, 1 worker)", clips_per_s,
               unit="clips/s"),
        Target("prepare speed in times real time (1 worker)", clips_per_s * p.clip_seconds, 1.0, unit="x",
               note="seconds of clip prepared per second; more workers scale it with the cores"),
    ]
    return clip


# -- data wait --------------------------------------------------------------------------------------------------
def _step_timer() -> Any:
    import lightning as L

    class StepTimer(L.Callback):
        """Times each training step and the gap before it (data fetch + collate + loop bookkeeping)."""

        def __init__(self) -> None:
            self.waits: list[float] = []
            self.steps: list[float] = []
            self._end: float | None = None
            self._start = 0.0

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self._end = None  # the first gap of an epoch includes the loader's start-up: left out

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            self._start = time.perf_counter()
            if self._end is not None:
                self.waits.append(self._start - self._end)

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self._end = time.perf_counter()
            if batch_idx > 0:
                self.steps.append(self._end - self._start)

    return StepTimer()


def _data_wait(ctx: Context, res: BenchResult) -> None:
    from multimae_der.data.datasets import ClipDataset
    from multimae_der.data.prepare import PrepareConfig, prepare_dataset
    from multimae_der.data.synthav import synthesize
    from multimae_der.model.train import TrainConfig, train

    p = ctx.profile
    src = ctx.raw / f"train_src_{p.train_clips}"
    if not (src / "synthav.json").exists():
        synthesize(src, "ravdess", actors=2, clips_per_actor=p.train_clips // 2, size=64, duration=2.0)
    cache = ctx.raw / "train_cache"
    shutil.rmtree(cache, ignore_errors=True)
    prepare_dataset("ravdess", src, cache, PrepareConfig(image_size=64), workers=1, progress=False)
    data = ClipDataset(cache)
    epochs = 3 if p.name == "full" else 2
    out: dict[str, Any] = {"clips": len(data), "batch_size": p.train_batch, "epochs": epochs, "model": "tiny",
                           "fusion": "fslf", "image_size": 64, "threads": ctx.best_threads}
    for workers in (0, 1):
        run_dir = ctx.raw / f"train_run_w{workers}"
        shutil.rmtree(run_dir, ignore_errors=True)
        timer = _step_timer()
        cfg = TrainConfig(model="tiny", fusion="fslf", epochs=epochs, batch_size=p.train_batch, num_workers=workers,
                          accelerator="cpu")
        with threads(ctx.best_threads):
            train(data, run_dir, cfg, progress=False, callbacks=[timer])
        wait, step = sum(timer.waits), sum(timer.steps)
        share = wait / (wait + step) if wait + step > 0 else float("nan")
        out[f"workers_{workers}"] = {"waits": timer.waits, "steps": timer.steps, "share": share,
                                     "median_wait_ms": 1000 * statistics.median(timer.waits or [0.0]),
                                     "median_step_ms": 1000 * statistics.median(timer.steps or [0.0])}
        ctx.log(f"  data wait (num_workers={workers}): {100 * share:.1f}% of a step "
                f"(median wait {out[f'workers_{workers}']['median_wait_ms']:.0f} ms, "
                f"step {out[f'workers_{workers}']['median_step_ms']:.0f} ms)")
    res.data["data_wait"] = out
    best = min((0, 1), key=lambda w: out[f"workers_{w}"]["share"])
    b, w0 = out[f"workers_{best}"], out["workers_0"]
    res.targets.append(Target(f"data-wait share of a training step (cached, tiny model, batch {p.train_batch})",
                              100 * b["share"], 10.0, op="<", unit="%",
                              note=f"DataLoader num_workers={best}: median gap {b['median_wait_ms']:.0f} ms vs step "
                              f"{b['median_step_ms']:.0f} ms on {ctx.best_threads} thread(s); num_workers=0: "
                              f"{100 * w0['share']:.1f}% ({w0['median_wait_ms']:.0f} ms per batch); "
                              f"{len(b['steps'])} steps timed"))


# -- predict latency --------------------------------------------------------------------------------------------
def _predict(ctx: Context, res: BenchResult, clip: Path) -> None:
    import torch

    from multimae_der.data.prepare import PrepareConfig, preprocess_clip
    from multimae_der.model.predict import predict_clip
    from multimae_der.model.run import Run
    from multimae_der.model.videomae import build_classifier, make_config

    p = ctx.profile
    out: dict[str, Any] = {"clip": clip.name, "clip_seconds": p.clip_seconds}
    for name in p.predict_configs:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        model = build_classifier(make_config(name, class_names=RAVDESS_CLASSES)).eval()
        built = time.perf_counter() - t0
        size = int(model.config.image_size)
        config = {"class_names": RAVDESS_CLASSES, "model": model.config.to_dict(),
                  "fusion": {"strategy": "fslf", "num_frames": 16, "seed": 0, "options": {}},
                  "preprocessing": PrepareConfig(image_size=size).to_dict()}
        run = Run(ctx.raw, model, config)
        prep_cfg = PrepareConfig(image_size=size)
        n_rep = max(1, p.repeats) if name == "tiny" else 1  # a base forward pass takes seconds
        per_threads: dict[int, dict[str, Any]] = {}
        warm = None
        for n_threads in ctx.threads:
            times: dict[str, list[float]] = {"preprocess": [], "model": [], "total": []}
            with threads(n_threads):
                if warm is None:  # the first call pays one-off set-up (oneDNN kernels, librosa, allocations)
                    warm = timed(lambda prep_cfg=prep_cfg, run=run: predict_clip(
                        run, _as_item(preprocess_clip(clip, prep_cfg))))
                for _ in range(n_rep):
                    t1 = time.perf_counter()
                    item = _as_item(preprocess_clip(clip, prep_cfg))
                    t2 = time.perf_counter()
                    pred = predict_clip(run, item)
                    t3 = time.perf_counter()
                    times["preprocess"].append(t2 - t1)
                    times["model"].append(t3 - t2)
                    times["total"].append(t3 - t1)
            per_threads[n_threads] = {"times": times, "median": {k: statistics.median(v) for k, v in times.items()}}
        best = min(per_threads, key=lambda k: per_threads[k]["median"]["total"])
        med = per_threads[best]["median"]
        out[name] = {"params": sum(q.numel() for q in model.parameters()), "image_size": size,
                     "build_seconds": built, "first_call_seconds": warm, "threads": best,
                     "by_threads": {str(k): v for k, v in per_threads.items()}, "median": med,
                     "emotion": pred.emotion}
        ctx.log(f"  predict {name}: {med['total']:.2f} s on {best} thread(s) (preprocess {med['preprocess']:.2f} s, "
                f"model {med['model']:.2f} s); " + ", ".join(
                    f"{k} thread(s) {v['median']['total']:.2f} s" for k, v in per_threads.items()))
        res.targets.append(Target(f"predict latency, {p.clip_seconds:g} s {p.hd_size[1]}p clip, {name} config "
                                  f"({size}x{size})", med["total"], unit="s",
                                  note=f"preprocess {med['preprocess']:.2f} s + model {med['model']:.2f} s on {best} "
                                  f"thread(s); {out[name]['params'] / 1e6:.1f} M parameters; first call {warm:.2f} s"))
        del model, run
    res.data["predict"] = out
    res.notes.append("predict latency = preprocess_clip at the model's size + predict_clip, which is what "
                     "predict_file does; predict_file itself cannot be timed as is: it hands the run's preprocessing "
                     "dict to preprocess_clip (which expects a PrepareConfig) and passes its numpy arrays to a "
                     "collate that stacks tensors.")


def _as_item(prepared: dict[str, Any]) -> dict[str, Any]:
    """``preprocess_clip``'s numpy arrays as the tensors ``ClipDataset`` items (and the collate) carry."""
    import torch

    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in prepared.items()}


@register("emotion")
def emotion(ctx: Context) -> BenchResult:
    """prepare throughput on 720p clips, data-wait share of a training step, predict latency."""
    res = BenchResult("emotion", "Emotion recognition: prepare, training data wait, predict")
    clip = _prepare(ctx, res)
    _data_wait(ctx, res)
    _predict(ctx, res, clip)
    return res
