"""Preprocessing clips into fixed-size uint8 frames and audio pictures, cached one file per clip.

``preprocess_clip`` turns ONE file into ``video`` (T, 3, S, S) and ``audio`` (N, 3, S, S) uint8 arrays (plus
SynthAV ground truth when a ``<stem>.npz`` lies beside the clip). ``prepare_dataset`` does it for a whole data
set with worker processes and a progress bar, and caches each clip as ``<cache>/clips/<clip>-<key>.npz`` where
the key hashes the source files' identity (path, size, modification time) and the preprocessing config; a rerun
decodes only what is missing or corrupt. ``<cache>/config-<hash>.json`` holds the config and
``<cache>/index-<hash>.json`` lists the prepared clips for :class:`multimae_der.data.datasets.ClipDataset`.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ffidelity.utils.atomic import atomic_open, write_json
from multimae_der.data.labels import default_label_set
from multimae_der.data.media import MediaError, center_square, read_audio, read_video
from multimae_der.data.sources import ClipSource, SkippedClipWarning, scan_dataset, warn_skip

__all__ = [
    "CacheCorruptError",
    "PrepareConfig",
    "PrepareSummary",
    "cache_key",
    "index_path",
    "load_entry",
    "prepare_dataset",
    "preprocess_clip",
    "preprocess_source",
    "save_entry",
]

_FEATURES = ("logmel", "mfcc")
_SAMPLINGS = ("even", "stride")
_CROPS = ("center", "face")
_REQUIRED_KEYS = ("video", "audio", "frame_times", "window_bounds")


@dataclass(frozen=True)
class PrepareConfig:
    """How clips are turned into frames and audio pictures (everything that changes the cached arrays).

    Attributes:
        num_frames: video frames T per clip.
        num_windows: audio windows N per clip (the clip is cut into N + 1 segments; window i = segments i, i+1).
        image_size: side S of every frame and audio picture (112 for CPU work, 224 for the paper's model).
        sample_rate: audio rate in Hz after resampling.
        audio_feature: ``logmel`` (default) or ``mfcc`` (the paper's picture).
        frame_sampling: ``even`` (spread over the clip, default) or ``stride`` (the official code's fixed
            stride from the first frame).
        frame_stride: the stride for ``stride`` sampling (RAVDESS 6 / CREMA-D 3 in the official code).
        crop: ``center`` (largest centred square, default) or ``face`` (OpenCV Haar cascade; needs opencv).
        n_mels: mel bins of the log-mel picture.
        win_ms, hop_ms: STFT window and hop in milliseconds.
        db_range: log-mel dB range below the clip's loudest cell mapped to 0..255; ``None`` = min-max per window.
        colormap: matplotlib colormap for audio pictures, or ``gray`` (replicated to 3 channels).
    """

    num_frames: int = 16
    num_windows: int = 16
    image_size: int = 112
    sample_rate: int = 16000
    audio_feature: str = "logmel"
    frame_sampling: str = "even"
    frame_stride: int = 3
    crop: str = "center"
    n_mels: int = 128
    win_ms: float = 25.0
    hop_ms: float = 10.0
    db_range: float | None = 80.0
    colormap: str = "viridis"

    def __post_init__(self) -> None:
        for name in ("num_frames", "num_windows", "frame_stride", "n_mels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {self.image_size}")
        if self.sample_rate < 4000:
            raise ValueError(f"sample_rate must be at least 4000 Hz, got {self.sample_rate}")
        if self.audio_feature not in _FEATURES:
            raise ValueError(f"audio_feature must be one of {', '.join(_FEATURES)}, got {self.audio_feature!r}")
        if self.frame_sampling not in _SAMPLINGS:
            raise ValueError(f"frame_sampling must be one of {', '.join(_SAMPLINGS)}, got {self.frame_sampling!r}")
        if self.crop not in _CROPS:
            raise ValueError(f"crop must be one of {', '.join(_CROPS)}, got {self.crop!r}")
        if not 0 < self.hop_ms <= self.win_ms:
            raise ValueError(f"need 0 < hop_ms <= win_ms, got hop {self.hop_ms}, window {self.win_ms}")
        if self.db_range is not None and not self.db_range > 0:
            raise ValueError(f"db_range must be positive or None, got {self.db_range}")
        from multimae_der.data.audio_images import colormap_lut

        colormap_lut(self.colormap)  # unknown names fail here, not in a worker

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrepareConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown PrepareConfig fields: {', '.join(sorted(unknown))}")
        return cls(**d)

    def hash(self) -> str:
        """12 hex digits identifying the config (changes whenever any field changes)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------- one clip

def _face_crop() -> Any:
    try:
        import cv2  # type: ignore[import-not-found]
    except ImportError:
        raise ValueError("crop='face' needs OpenCV, which is not installed (pip install opencv-python-headless); "
                         "use crop='center'") from None
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def crop(rgb: np.ndarray) -> tuple[int, int, int, int]:
        h, w = rgb.shape[:2]
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(h // 10, h // 10))
        if len(faces) == 0:
            return center_square(h, w)
        x, y, fw, fh = max(faces, key=lambda f: f[2] * f[3])
        side = min(int(1.4 * max(fw, fh)), h, w)
        cx, cy = x + fw // 2, y + fh // 2
        left = int(np.clip(cx - side // 2, 0, w - side))
        top = int(np.clip(cy - side // 2, 0, h - side))
        return left, top, left + side, top + side

    return crop


def _find_gt(path: Path, audio_path: Path | None, start: float | None) -> Path | None:
    candidates = []
    if start is None:
        candidates.append(path.with_suffix(".npz"))
    if audio_path is not None:
        candidates.append(audio_path.with_suffix(".npz"))
    return next((c for c in candidates if c.is_file()), None)


def _map_gt(gt_file: Path, video, audio_geom, config: PrepareConfig) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    from multimae_der.data.audio_images import tf_mask_to_images

    try:
        with np.load(gt_file, allow_pickle=False) as z:
            vmask, vtimes = z["video_mask"], z["video_times"]
            amask, afreqs, ahop = z["audio_mask"], z["audio_freqs"], float(z["audio_hop"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise MediaError(f"{gt_file}: unreadable ground truth ({exc})") from None
    s = config.image_size
    gt_video = np.zeros((len(video.times), s, s), bool)
    for k, t in enumerate(video.times):
        idx = int(np.abs(vtimes - t).argmin())
        img = Image.fromarray(vmask[idx].astype(np.uint8) * 255).crop(tuple(int(v) for v in video.boxes[k]))
        gt_video[k] = np.asarray(img.resize((s, s), Image.NEAREST)) > 127
    gt_audio = tf_mask_to_images(amask, ahop, afreqs, audio_geom, s)
    return gt_video, gt_audio


def preprocess_clip(path: str | os.PathLike[str], config: PrepareConfig | None = None,
                    audio_path: str | os.PathLike[str] | None = None, start: float | None = None,
                    end: float | None = None, *, gt_path: str | os.PathLike[str] | bool | None = True
                    ) -> dict[str, Any]:
    """Preprocesses ONE clip.

    Args:
        path: the video file.
        config: preprocessing settings (default ``PrepareConfig()``).
        audio_path: a separate audio file holding exactly this clip's sound (CREMA-D WAV, IEMOCAP sentence
            WAV); default the video's own audio track.
        start, end: seconds into ``path`` when the clip is part of a longer recording (the video is cut; the
            audio too when it comes from the same file).
        gt_path: SynthAV ground truth: ``True`` looks for ``<stem>.npz`` beside the clip (or beside
            ``audio_path``), a path uses that file, ``False``/``None`` ignores ground truth.

    Returns:
        ``video`` uint8 (T, 3, S, S); ``audio`` uint8 (N, 3, S, S); ``frame_times`` (T,) seconds from the clip
        start; ``window_bounds`` (N, 2) seconds; ``video_duration``, ``audio_duration`` (s); ``path``,
        ``audio_path``; and ``gt_video`` bool (T, S, S) / ``gt_audio`` bool (N, S, S) when ground truth exists.

    Raises:
        MediaError (a ValueError): unreadable, truncated or empty file, missing video or audio track.
    """
    from multimae_der.data.audio_images import audio_images

    config = config or PrepareConfig()
    path = Path(path)
    audio_file = Path(audio_path) if audio_path is not None else None
    crop = _face_crop() if config.crop == "face" else None
    video = read_video(path, config.num_frames, config.image_size, sampling=config.frame_sampling,
                       stride=config.frame_stride, start=start, end=end, crop=crop)
    if audio_file is None:
        signal = read_audio(path, config.sample_rate, start=start, end=end)
    else:
        signal = read_audio(audio_file, config.sample_rate)
    if len(signal) < 4 * (config.num_windows + 1):
        raise MediaError(f"{audio_file or path}: audio too short ({len(signal)} samples) for "
                         f"{config.num_windows} windows")
    geom = audio_images(signal, config.sample_rate, num_windows=config.num_windows, size=config.image_size,
                        feature=config.audio_feature, n_mels=config.n_mels, win_ms=config.win_ms,
                        hop_ms=config.hop_ms, db_range=config.db_range, colormap=config.colormap)
    out: dict[str, Any] = {
        "video": np.ascontiguousarray(video.frames.transpose(0, 3, 1, 2)),
        "audio": geom.images,
        "frame_times": video.times.astype(np.float64),
        "window_bounds": geom.bounds.astype(np.float64) / config.sample_rate,
        "video_duration": float(video.duration),
        "audio_duration": len(signal) / config.sample_rate,
        "path": str(path),
        "audio_path": str(audio_file) if audio_file is not None else None,
    }
    if gt_path is True:
        gt_file = _find_gt(path, audio_file, start)
    elif gt_path:
        gt_file = Path(gt_path)  # type: ignore[arg-type]
    else:
        gt_file = None
    if gt_file is not None:
        out["gt_video"], out["gt_audio"] = _map_gt(gt_file, video, geom, config)
    return out


def preprocess_source(source: ClipSource, config: PrepareConfig) -> dict[str, Any]:
    """``preprocess_clip`` for a scanned clip, with its label (default label set), actor and emotion added."""
    out = preprocess_clip(source.path, config, source.audio_path, source.start, source.end)
    label = default_label_set(source.dataset).index(source.emotion)
    out.update(label=-1 if label is None else label, actor=source.actor, emotion=source.emotion,
               clip_id=source.clip_id, dataset=source.dataset)
    return out


# --------------------------------------------------------------------------------------------- cache

class CacheCorruptError(ValueError):
    """A cache file that cannot be read back."""


def _identity(path: str | None) -> list[object] | None:
    if path is None:
        return None
    p = Path(path)
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def cache_key(source: ClipSource, config: PrepareConfig) -> str:
    """Hash of the clip's files (path, size, mtime; video, audio and ground truth), its span and the config."""
    path = Path(source.path)
    gt = _find_gt(path, Path(source.audio_path) if source.audio_path else None, source.start)
    payload = {"video": _identity(source.path), "audio": _identity(source.audio_path),
               "gt": _identity(str(gt)) if gt else None, "start": source.start, "end": source.end,
               "config": config.hash()}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def save_entry(file: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Writes one preprocessed clip atomically as a compressed ``.npz`` (no pickled objects)."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, np.ndarray):
            arrays[key] = value
        else:
            meta[key] = value
    arrays["meta"] = np.array(json.dumps(meta))
    # the same layout as np.savez_compressed, at zlib level 1: ~5x faster to write, nearly as small
    with atomic_open(file, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for key, value in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def load_entry(file: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a cache file written by :func:`save_entry`; :class:`CacheCorruptError` if it is damaged."""
    try:
        with np.load(file, allow_pickle=False) as z:
            data = {key: z[key] for key in z.files}
        meta = json.loads(str(data.pop("meta")))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise CacheCorruptError(f"cache file {file} is corrupt ({type(exc).__name__}: {exc})") from None
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise CacheCorruptError(f"cache file {file} lacks {', '.join(missing)}")
    data.update(meta)
    return data


def _entry_looks_complete(file: Path) -> bool:
    try:
        with np.load(file, allow_pickle=False) as z:
            return all(k in z.files for k in (*_REQUIRED_KEYS, "meta"))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


# ------------------------------------------------------------------------------------------- data set

@dataclass
class PrepareSummary:
    """What ``prepare_dataset`` did."""

    dataset: str
    root: str
    cache: str
    config_hash: str
    clips: int = 0  # prepared clips in the index
    decoded: int = 0  # clips decoded by this run
    cached: int = 0  # clips found in the cache
    rebuilt: int = 0  # corrupt cache files rebuilt
    skipped: list[tuple[str, str]] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    index_path: str = ""


_CATCH = (MediaError, ValueError, OSError, EOFError, RuntimeError)


def _single_thread() -> Any:
    """Limits BLAS/OpenMP pools to one thread: the matrices are tiny and pools thrash on a busy machine
    (measured 4x faster per clip); parallelism comes from worker processes instead."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _init_worker() -> None:
    global _LIMITS
    _LIMITS = _single_thread()
    _exit_with_parent(os.getppid())


def _exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Ends this worker process once its parent is gone.

    A pool worker whose parent was killed (kill -9) waits forever on the pool's queue, since it holds that
    pipe's write end open itself: measured, a killed ``prepare`` left its spawn workers behind at 600 MB each.
    A daemon thread checks the parent every ``interval`` seconds and exits the worker when it has changed.
    """
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


_LIMITS: Any = None


def _work(source_dict: dict[str, Any], config_dict: dict[str, Any], file: str) -> tuple[bool, str]:
    """Worker: preprocess one clip and write its cache file; returns ``(ok, error message)``."""
    import av

    source = ClipSource.from_dict(source_dict)
    try:
        data = preprocess_source(source, PrepareConfig.from_dict(config_dict))
    except (*_CATCH, av.error.FFmpegError) as exc:
        return False, str(exc) if isinstance(exc, MediaError) else f"cannot be decoded ({type(exc).__name__}: {exc})"
    save_entry(file, data)
    return True, ""


def _record(ok: bool, message: str, source: ClipSource, file: Path, done: list, failures: list) -> None:
    if ok:
        done.append((source, file))
    else:
        failures.append((source.path, message))


def index_path(cache: str | os.PathLike[str], config: PrepareConfig) -> Path:
    """The index file of the clips prepared with ``config`` in ``cache`` (one per preprocessing hash)."""
    return Path(cache) / f"index-{config.hash()}.json"


def prepare_dataset(dataset: str, root: str | os.PathLike[str], cache: str | os.PathLike[str],
                    config: PrepareConfig | None = None, *, workers: int = 1, progress: bool = True
                    ) -> PrepareSummary:
    """Scans ``root``, preprocesses every usable clip into ``cache`` and writes the index.

    Clips that cannot be decoded or lack audio are skipped with one :class:`SkippedClipWarning` each and listed
    in the summary; a cache file that exists but is damaged is rebuilt with a warning.

    Raises:
        ValueError: no usable clip at all (after decoding), or bad arguments.
    """
    import time

    from ffidelity.utils.progress import progress_bar
    from multimae_der.data.sources import canonical_dataset

    dataset = canonical_dataset(dataset)
    config = config or PrepareConfig()
    if config.crop == "face":
        _face_crop()  # fail before any work when OpenCV is missing
    t0 = time.perf_counter()
    cache = Path(cache)
    scan = scan_dataset(dataset, root)
    summary = PrepareSummary(dataset, str(root), str(cache), config.hash(), skipped=list(scan.skipped),
                             left_out=dict(scan.left_out))
    (cache / "clips").mkdir(parents=True, exist_ok=True)
    write_json(cache / f"config-{config.hash()}.json", config.to_dict())
    todo: list[tuple[ClipSource, Path]] = []
    ready: list[tuple[ClipSource, Path]] = []
    unreadable: list[tuple[str, str]] = []
    for source in scan.sources:
        try:
            key = cache_key(source, config)
        except OSError as exc:  # a dangling link, a file that vanished or that may not be read
            unreadable.append((source.path, f"cannot be read ({exc.strerror or exc})"))
            continue
        file = cache / "clips" / f"{source.clip_id}-{key}.npz"
        if file.exists():
            if _entry_looks_complete(file):
                ready.append((source, file))
                summary.cached += 1
                continue
            warnings.warn(f"rebuilding corrupt cache file {file}", SkippedClipWarning, stacklevel=2)
            summary.rebuilt += 1
        todo.append((source, file))
    failures: list[tuple[str, str]] = unreadable
    done: list[tuple[ClipSource, Path]] = []
    cfg = config.to_dict()
    with progress_bar(len(todo), f"preparing {dataset}", enabled=progress and bool(todo)) as advance:
        if workers <= 1 or len(todo) <= 1:
            with _single_thread():
                for source, file in todo:
                    ok, message = _work(source.to_dict(), cfg, str(file))
                    _record(ok, message, source, file, done, failures)
                    advance(1)
        else:
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
                futures = {pool.submit(_work, s.to_dict(), cfg, str(f)): (s, f) for s, f in todo}
                for future in cf.as_completed(futures):
                    source, file = futures[future]
                    ok, message = future.result()
                    _record(ok, message, source, file, done, failures)
                    advance(1)
    for path, message in sorted(failures):
        warn_skip(path, message)
    summary.skipped += failures
    summary.decoded = len(done)
    entries = sorted(ready + done, key=lambda item: (item[0].actor, item[0].clip_id))
    if not entries:
        raise ValueError(f"no usable {dataset} clip in {root}: all {len(scan.sources)} candidate clips failed "
                         f"to decode (first: {failures[0][0]}: {failures[0][1]})" if failures
                         else f"no usable {dataset} clip in {root}")
    label_set = default_label_set(dataset)
    index = {
        "dataset": dataset,
        "root": str(root),
        "config_hash": config.hash(),
        "config": config.to_dict(),
        "label_set": label_set.name,
        "entries": [{"file": str(file.relative_to(cache)), "label": label_set.index(s.emotion), **s.to_dict()}
                    for s, file in entries],
        "skipped": [{"path": p, "reason": r} for p, r in summary.skipped],
    }
    ip = index_path(cache, config)
    write_json(ip, index)
    summary.clips = len(entries)
    summary.index_path = str(ip)
    summary.seconds = time.perf_counter() - t0
    return summary

