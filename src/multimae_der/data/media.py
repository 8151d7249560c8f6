"""Decoding clips with PyAV: a few evenly spread (or strided) video frames, and the mono audio track.

Video frames are chosen by time and converted one at a time while decoding, so a long clip never sits in
memory; a clip cut out of a long recording (IEMOCAP dialogs) starts with a seek. Audio channels are averaged
(never interleaved) and then resampled with ``av.AudioResampler(format="flt", layout="mono", rate=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

__all__ = [
    "MediaError",
    "VideoSample",
    "center_square",
    "even_times",
    "read_audio",
    "read_video",
    "stride_times",
]

#: seek only when the clip starts this many seconds into the file (decoding a little is cheaper than seeking).
_SEEK_MARGIN = 1.0


class MediaError(ValueError):
    """A file that cannot be used: unreadable, truncated, without the needed stream, or empty."""


@dataclass
class VideoSample:
    """Frames taken from a clip.

    Attributes:
        frames: uint8 (T, S, S, 3) RGB, cropped and resized.
        times: (T,) seconds from the clip start of the decoded frame used for each sample.
        boxes: (T, 4) crop boxes ``(left, top, right, bottom)`` in source pixels (to map masks the same way).
        frame_size: source ``(height, width)``.
        fps: the stream's average frame rate (0 if unknown).
        duration: clip length in seconds.
    """

    frames: np.ndarray
    times: np.ndarray
    boxes: np.ndarray
    frame_size: tuple[int, int]
    fps: float
    duration: float


def _open(path: str | Path) -> av.container.InputContainer:
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: file not found")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: empty file (0 bytes)")
    try:
        return av.open(str(p))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"{p}: cannot be opened as media ({type(exc).__name__}: {exc})") from None


def center_square(height: int, width: int) -> tuple[int, int, int, int]:
    """The largest centred square ``(left, top, right, bottom)`` of a ``height`` x ``width`` frame."""
    side = min(height, width)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def even_times(duration: float, num: int) -> np.ndarray:
    """``num`` instants spread evenly inside ``(0, duration)``: t_k = k * duration / (num + 1), k = 1..num.

    This is the spacing of the paper's figure (16 frames at k/17 of the clip); it avoids the often black first
    and last frames.
    """
    return np.arange(1, num + 1, dtype=np.float64) * duration / (num + 1)


def stride_times(fps: float, num: int, stride: int) -> np.ndarray:
    """The official code's sampling: frames 0, stride, 2*stride, ... from the start (middle of each frame)."""
    if fps <= 0:
        raise MediaError("stride sampling needs a known frame rate")
    return (np.arange(num, dtype=np.float64) * stride + 0.5) / fps


def _stream_duration(stream: av.stream.Stream, container: av.container.InputContainer | None) -> float | None:
    """The stream's declared duration, else the container's (pass ``None`` when the container's duration, the
    longest stream's, may belong to another stream)."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container is not None and container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    return None


def _origin(stream: av.stream.Stream) -> float:
    if stream.start_time is not None and stream.time_base is not None:
        return float(stream.start_time * stream.time_base)
    return 0.0


def read_video(path: str | Path, num_frames: int, size: int, *, sampling: str = "even", stride: int = 3,
               start: float | None = None, end: float | None = None,
               crop: Callable[[np.ndarray], tuple[int, int, int, int]] | None = None) -> VideoSample:
    """Decodes ``num_frames`` frames of a clip, crops each to a square and resizes it to ``size``.

    Args:
        path: a video file.
        num_frames: frames to return.
        size: output side in pixels.
        sampling: ``"even"`` (spread over the clip) or ``"stride"`` (every ``stride``-th frame from the start;
            the last frame repeats when the clip is too short).
        stride: the stride for ``"stride"`` sampling.
        start, end: seconds into the file; the clip is that span (default: the whole file).
        crop: ``rgb (H, W, 3) -> (left, top, right, bottom)``; default the centred square.

    Raises:
        MediaError: no video stream, nothing decodable, or a broken file.
    """
    from PIL import Image

    container = _open(path)
    try:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        fps = float(vs.average_rate) if vs.average_rate else 0.0
        origin = _origin(vs)
        clip_start = float(start or 0.0)
        if end is not None:
            duration = float(end) - clip_start
        else:
            # Matroska declares no stream durations; its container duration is the longest stream's (often the
            # audio): then the video's own length comes from its packets' time stamps
            total = _stream_duration(vs, container if len(container.streams) == 1 else None)
            if total is None:
                total = _count_duration(path)
            duration = total - clip_start
        if not duration > 0:
            raise MediaError(f"{path}: clip span [{clip_start}, {end}] is empty")
        if sampling == "even":
            targets = even_times(duration, num_frames)
        elif sampling == "stride":
            targets = np.minimum(stride_times(fps, num_frames, stride), duration - 1e-6)
        else:
            raise ValueError(f"unknown frame sampling {sampling!r}; use 'even' or 'stride'")
        if clip_start > _SEEK_MARGIN:
            container.seek(int((origin + clip_start - _SEEK_MARGIN) / vs.time_base), stream=vs, backward=True)
        frames = np.zeros((num_frames, size, size, 3), np.uint8)
        times = np.zeros(num_frames)
        boxes = np.zeros((num_frames, 4), np.int64)
        frame_size = (0, 0)
        eps = 1e-6
        j = 0
        prev = None  # (time, serial number, av frame)
        converted: tuple[int, np.ndarray, tuple[int, int, int, int]] | None = None

        def take(item: tuple[float, int, av.VideoFrame], k: int) -> None:
            nonlocal converted, frame_size
            if converted is None or converted[0] != item[1]:
                rgb = item[2].to_ndarray(format="rgb24")
                frame_size = (rgb.shape[0], rgb.shape[1])
                box = crop(rgb) if crop is not None else center_square(*frame_size)
                img = Image.fromarray(rgb).crop(box).resize((size, size), Image.BILINEAR)
                converted = (item[1], np.asarray(img), box)
            frames[k], boxes[k], times[k] = converted[1], converted[2], item[0]

        count = 0
        try:
            for frame in container.decode(vs):
                t = (frame.time if frame.time is not None else count / max(fps, 1.0)) - origin - clip_start
                count += 1
                while j < num_frames and t > targets[j] + eps:
                    take(prev if prev is not None else (t, count, frame), j)
                    j += 1
                if j >= num_frames:
                    break
                prev = (t, count, frame)
        except av.error.FFmpegError as exc:
            if prev is None:
                raise MediaError(f"{path}: video cannot be decoded ({exc})") from None
        if prev is None and j == 0:
            raise MediaError(f"{path}: no video frame could be decoded")
        while j < num_frames:
            take(prev, j)  # type: ignore[arg-type]
            j += 1
        return VideoSample(frames, times, boxes, frame_size, fps, float(duration))
    finally:
        container.close()


def _count_duration(path: str | Path) -> float:
    """Duration from the packets' time stamps when the header has none (demuxing only, no decoding)."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        last, step = 0.0, 0.0
        for packet in c.demux(vs):
            if packet.pts is not None:
                t = float(packet.pts * vs.time_base)
                last = max(last, t)
            if packet.duration:
                step = float(packet.duration * vs.time_base)
        return last - _origin(vs) + step


def read_audio(path: str | Path, sample_rate: int, *, start: float | None = None,
               end: float | None = None) -> np.ndarray:
    """The clip's audio as mono float32 at ``sample_rate``: channels averaged, then resampled.

    Args:
        path: any file with an audio stream (mp4, wav, flv, avi, ...).
        sample_rate: output rate in Hz.
        start, end: seconds into the file (default: the whole stream, trimmed to its declared duration so AAC
            padding is not counted).

    Raises:
        MediaError: no audio stream, or nothing decodable.
    """
    container = _open(path)
    try:
        if not container.streams.audio:
            raise MediaError(f"{path}: no audio track")
        stream = container.streams.audio[0]
        origin = _origin(stream)
        clip_start = float(start or 0.0)
        if clip_start > _SEEK_MARGIN:
            container.seek(int((origin + clip_start - _SEEK_MARGIN) / stream.time_base), stream=stream,
                           backward=True)
        to_float = av.AudioResampler(format="fltp")  # same layout and rate, planar float: one row per channel
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        in_rate = 0
        try:
            for frame in container.decode(stream):
                if first_time is None:
                    first_time = (frame.time - origin) if frame.time is not None else 0.0
                in_rate = frame.sample_rate
                for out in to_float.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))
        except av.error.FFmpegError as exc:
            if not chunks:
                raise MediaError(f"{path}: audio cannot be decoded ({exc})") from None
        for out in to_float.resample(None):
            chunks.append(out.to_ndarray().mean(axis=0))
        if not chunks or in_rate <= 0:
            raise MediaError(f"{path}: the audio track holds no samples")
        mono = np.concatenate(chunks).astype(np.float32)
        total = _stream_duration(stream, container) if end is None and not start else None
        first = round((clip_start - (first_time or 0.0)) * in_rate)
        if first < 0:
            mono = np.concatenate([np.zeros(-first, np.float32), mono])
            first = 0
        if end is not None:
            stop = first + round((float(end) - clip_start) * in_rate)
        elif total is not None:
            stop = first + round(total * in_rate)
        else:
            stop = len(mono)
        mono = mono[first:stop]
        if mono.size == 0:
            raise MediaError(f"{path}: the requested audio span is empty")
    finally:
        container.close()
    if in_rate == sample_rate:
        return mono
    return _resample(mono, in_rate, sample_rate)


def _resample(mono: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=out_rate)
    frame = av.AudioFrame.from_ndarray(mono[None, :], format="flt", layout="mono")
    frame.sample_rate = in_rate
    frame.pts = 0
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    y = np.concatenate(out) if out else np.zeros(0, np.float32)
    expected = round(len(mono) * out_rate / in_rate)
    if len(y) < expected:
        y = np.concatenate([y, np.zeros(expected - len(y), np.float32)])
    return y[:expected].astype(np.float32)
