"""What the web app does with one upload, as plain functions testable without a browser.

* :func:`check_upload` refuses what the server should not decode (too large, too long, not a video, no audio
  track) with a :class:`UploadError` (a :class:`~multimae_der.data.media.MediaError`) whose text is shown in the page;
* :func:`analyze` preprocesses the clip exactly as the run's data was, predicts (all class probabilities) and
  explains it with one explainer, and renders one overlay picture per time step (video frame | audio picture).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multimae_der.data.media import MediaError
from multimae_der.explain.attributions import ClipExplanation, explain_items, resolve_explainer
from multimae_der.model.fusion import MODALITIES
from multimae_der.model.predict import Prediction, predict_clip
from multimae_der.model.run import Run, load_run

#: explainers offered for the emotion model (all work on the fused VideoMAE input; ``vit_gradcam`` is the
#: ViT Grad-CAM, ``random`` the reference an explainer should beat).
SERVE_EXPLAINERS: tuple[str, ...] = ("saliency", "integrated_gradients", "sg_sq", "smoothgrad", "occlusion",
                                     "vit_gradcam", "random")
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".flv")
#: FFmpeg demuxers that open pictures and text files as one-stream "videos".
_NOT_VIDEO_FORMATS = ("tty", "image2", "gif", "apng", "webp_pipe")


class UploadError(MediaError):
    """A clip the app refuses before decoding it: missing, empty, too large, too long, not a video, or silent."""


@dataclass(frozen=True)
class Limits:
    """What one upload may cost the server.

    Attributes:
        max_mb: largest accepted file, in MB (10^6 bytes).
        max_seconds: longest accepted clip, in seconds.
    """

    max_mb: float = 50.0
    max_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.max_mb > 0 or not self.max_seconds > 0:
            raise ValueError(f"limits must be positive, got {self.max_mb} MB and {self.max_seconds} s")


@dataclass(frozen=True)
class ClipInfo:
    """What :func:`check_upload` learnt from the container header: size, duration (``None`` if unknown)."""

    path: Path
    size_mb: float
    duration: float | None


def _container_duration(container: Any) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    spans = [float(s.duration * s.time_base) for s in container.streams
             if s.duration is not None and s.time_base is not None and s.duration > 0]
    return max(spans) if spans else None


def check_upload(path: str | os.PathLike[str] | None, limits: Limits = Limits()) -> ClipInfo:
    """Checks an uploaded file before any decoding: present, within the size limit, a video with an audio
    track, within the duration limit (from the header; clips without one are checked after decoding).

    Raises:
        UploadError: with a message meant for the page.
    """
    import av

    if path is None or not str(path).strip():
        raise UploadError("No clip given: upload a video or pick an example clip.")
    p = Path(path)
    name = p.name
    if not p.is_file():
        raise UploadError(f"{name}: file not found.")
    size = p.stat().st_size
    if size == 0:
        raise UploadError(f"{name} is empty (0 bytes).")
    size_mb = size / 1e6
    if size_mb > limits.max_mb:
        raise UploadError(f"{name} is {size_mb:.1f} MB; this server accepts clips up to {limits.max_mb:g} MB.")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        raise UploadError(f"{name} is not a video file (it cannot be opened as audio/video media).") from None
    try:
        fmt = container.format.name or ""
        if not container.streams.video or any(f in fmt.split(",") for f in _NOT_VIDEO_FORMATS) or \
                fmt.endswith("_pipe"):
            kind = "an audio file" if container.streams.audio and not container.streams.video else "not a video"
            raise UploadError(f"{name} is {kind}: it holds no video stream. The model needs a video with sound.")
        if not container.streams.audio:
            raise UploadError(f"{name} has no audio track: the model needs the voice as well as the face.")
        duration = _container_duration(container)
    finally:
        container.close()
    _check_duration(name, duration, limits)
    return ClipInfo(p, size_mb, duration)


def _check_duration(name: str, duration: float | None, limits: Limits) -> None:
    if duration is not None and duration > limits.max_seconds:
        raise UploadError(f"{name} lasts {duration:.1f} s; this server accepts clips up to {limits.max_seconds:g} s "
                          "(trim it first).")


def user_message(exc: BaseException) -> str:
    """The text the page shows for an error: the message of the errors users cause (bad files, unknown names),
    a short generic line for anything else (the traceback goes to the server log, never to the page)."""
    if isinstance(exc, (MediaError, FileNotFoundError, ValueError)):
        text = str(exc.args[0] if exc.args else exc)
        return text if isinstance(exc, UploadError) else f"This clip cannot be used: {text}"
    return f"The analysis failed ({type(exc).__name__}); see the server log for details."


# -- the prediction and its explanation --------------------------------------------------------------------------
@dataclass
class Analysis:
    """Everything the page shows for one clip.

    Attributes:
        path: the clip.
        prediction: emotion, label and every class probability.
        explanation: the chosen explainer's attributions mapped back to the video frames and audio windows.
        steps: one RGB uint8 picture per time step: the k-th used video frame and the k-th used audio picture,
            attribution overlaid with one colour scale for both (so brightness compares across modalities).
        captions: what each step shows (source indices and times).
        seconds: time taken.
    """

    path: Path
    prediction: Prediction
    explanation: ClipExplanation
    steps: list[np.ndarray]
    captions: list[str]
    seconds: float

    @property
    def share(self) -> dict[str, float]:
        """Fraction of the attribution mass on each modality (both 0 when the explanation is all zeros)."""
        return {m: float(self.explanation.share.get(m, 0.0)) for m in MODALITIES}


def _picture(item: dict[str, Any], modality: str, index: int) -> np.ndarray:
    src = item[modality][index]
    arr = src.numpy() if isinstance(src, torch.Tensor) else np.asarray(src)
    return np.ascontiguousarray(arr.transpose(1, 2, 0)).astype(np.float32) / 255.0


def overlay_steps(item: dict[str, Any], expl: ClipExplanation, *, frame_times: Sequence[float] | None = None,
                  window_bounds: Sequence[Sequence[float]] | None = None, size: int = 224
                  ) -> tuple[list[np.ndarray], list[str]]:
    """Step k = the k-th source frame and the k-th audio window the fusion used, side by side (each scaled to
    ``size`` pixels), with the attribution overlaid; returns the pictures and their captions."""
    from PIL import Image

    from multimae_der.explain.plots import color_scale, overlay

    vmax = color_scale(expl)
    used = {m: list(expl.used.get(m, [])) for m in MODALITIES}
    n = max((len(v) for v in used.values()), default=0)
    gap = np.full((size, max(2, size // 32), 3), 255, np.uint8)
    steps, captions = [], []
    for k in range(n):
        panels, words = [], []
        for m in MODALITIES:
            if not used[m]:
                continue
            if k >= len(used[m]):
                panels.append(np.zeros((size, size, 3), np.uint8))
                continue
            i = used[m][k]
            pic = overlay(_picture(item, m, i), expl.sources[m][i].numpy(), vmax)
            panels.append(np.asarray(Image.fromarray(pic).resize((size, size), Image.NEAREST)))
            if m == "video":
                when = f" at {float(frame_times[i]):.2f} s" if frame_times is not None else ""
                words.append(f"video frame {i}{when}")
            else:
                span = (f" ({float(window_bounds[i][0]):.2f}-{float(window_bounds[i][1]):.2f} s)"
                        if window_bounds is not None else "")
                words.append(f"audio window {i}{span}")
        row: list[np.ndarray] = []
        for p in panels:
            row += [gap, p] if row else [p]
        steps.append(np.concatenate(row, axis=1))
        captions.append(f"step {k + 1}/{n}: " + " | ".join(words))
    return steps, captions


def load_clip(run: Run, path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Preprocesses a video file exactly as the run's data was; returns the contract item (uint8 ``video``,
    ``audio``, SynthAV ground truth when it sits beside the file) and the raw result (times, durations)."""
    from multimae_der.data.prepare import preprocess_clip

    data = preprocess_clip(path, run.preprocessing)
    item: dict[str, Any] = {k: torch.as_tensor(v) for k, v in data.items()
                            if k in ("video", "audio", "gt_video", "gt_audio")}
    item["path"] = str(path)
    return item, data


def analyze(run: Run | str | os.PathLike[str], path: str | os.PathLike[str] | None, explainer: str = "saliency",
            limits: Limits = Limits(), *, size: int = 224) -> Analysis:
    """Checks, predicts and explains one clip.

    Args:
        run: a loaded run or a run folder.
        path: the video file.
        explainer: a name of :data:`SERVE_EXPLAINERS` (or any registered explainer / alias).
        limits: size and duration limits.
        size: side of each overlay panel in pixels.

    Raises:
        UploadError / MediaError: the file cannot be used (message meant for the user).
        ValueError: unknown explainer.
    """
    t0 = time.perf_counter()
    run = run if isinstance(run, Run) else load_run(run)
    name = resolve_explainer(explainer)
    info = check_upload(path, limits)
    item, data = load_clip(run, info.path)
    if info.duration is None:
        _check_duration(info.path.name, float(data.get("video_duration", 0.0)), limits)
    prediction = predict_clip(run, item)
    expl = explain_items(run, [item], [name])[0][name]
    steps, captions = overlay_steps(item, expl, frame_times=data.get("frame_times"),
                                    window_bounds=data.get("window_bounds"), size=size)
    return Analysis(info.path, prediction, expl, steps, captions, time.perf_counter() - t0)
