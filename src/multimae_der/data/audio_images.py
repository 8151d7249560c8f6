"""Audio "frames": the clip's sound cut into overlapping windows, each drawn as a 3 x S x S uint8 picture.

Windows follow the paper: the clip is cut into N + 1 equal segments and window i covers segments i and i + 1
(50 % overlap), giving N windows. Each window becomes a picture of

* ``logmel`` (default): power spectrogram (``librosa.stft``, 25 ms Hann window, 10 ms hop) through a cached
  ``librosa.filters.mel`` matrix (128 bins) and ``power_to_db``; dB relative to the clip's loudest cell and
  clipped to ``db_range`` (or min-max per window when ``db_range`` is None) -> 0..255; low frequencies at the
  bottom, time left to right;
* ``mfcc`` (the paper's picture): pre-emphasis 0.97, 25 ms Hamming frames, NFFT 512, 10 ms hop, 40 mel filters,
  13 coefficients liftered with 22, min-max per window; coefficient 0 on top.

The grey picture is resized to S x S (PIL bilinear) and coloured with a matplotlib colormap (``viridis``) or
replicated to three channels (``gray``). All windows of a clip go through one batched STFT.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["AudioImages", "audio_images", "colormap_lut", "tf_mask_to_images", "window_bounds"]


def window_bounds(num_samples: int, num_windows: int) -> np.ndarray:
    """Sample ranges ``[start, stop)`` of the paper's windows, shape (N, 2).

    With segment length ``seg = L / (N + 1)``, window i should span ``[i seg, (i + 2) seg)``. Every window gets
    the same length ``round(2 seg)`` (so all windows batch through one STFT) and starts at ``round(i seg)``
    (pulled back to end inside the clip), so both ends lie within one sample of the exact boundaries.
    """
    if num_windows < 1:
        raise ValueError(f"num_windows must be >= 1, got {num_windows}")
    if num_samples < num_windows + 1:
        raise ValueError(f"{num_samples} audio samples are too few for {num_windows} windows")
    seg = num_samples / (num_windows + 1)
    length = round(2 * seg)
    starts = np.minimum(np.round(np.arange(num_windows) * seg).astype(np.int64), num_samples - length)
    return np.stack([starts, starts + length], axis=1)


@functools.lru_cache(maxsize=16)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float32)


@functools.lru_cache(maxsize=8)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 colours of a matplotlib colormap, or grey levels for ``"gray"``."""
    if name == "gray":
        return np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r} (any matplotlib colormap name, or 'gray')") from None
    return np.round(cmap(np.arange(256))[:, :3] * 255).astype(np.uint8)


@dataclass
class AudioImages:
    """Window pictures of one clip and the geometry needed to map time-frequency masks onto them.

    Attributes:
        images: uint8 (N, 3, S, S).
        bounds: (N, 2) sample ranges of the windows.
        frame_times: (N, F) seconds (from the clip start) of each STFT column of each window.
        row_bands: (R, 2) Hz band ``[low, high)`` of each picture row before resizing, top row first
            (``None`` for MFCC rows, which are not frequencies).
    """

    images: np.ndarray
    bounds: np.ndarray
    frame_times: np.ndarray
    row_bands: np.ndarray | None


def _resize(gray: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(gray)
    return np.asarray(img.resize((size, size), Image.NEAREST if nearest else Image.BILINEAR))


def audio_images(signal: np.ndarray, sample_rate: int, *, num_windows: int = 16, size: int = 112,
                 feature: str = "logmel", n_mels: int = 128, win_ms: float = 25.0, hop_ms: float = 10.0,
                 db_range: float | None = 80.0, colormap: str = "viridis") -> AudioImages:
    """Cuts ``signal`` (mono float) into the paper's windows and draws each as a picture (see module doc)."""
    import librosa

    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim != 1:
        raise ValueError(f"audio must be mono 1-D, got shape {signal.shape}")
    bounds = window_bounds(len(signal), num_windows)
    win = round(win_ms * sample_rate / 1000)
    hop = max(1, round(hop_ms * sample_rate / 1000))
    n_fft = 1 << max(0, (win - 1).bit_length())
    length = int(bounds[0, 1] - bounds[0, 0])
    padded = max(length, n_fft)
    windows = np.zeros((num_windows, padded), np.float32)
    idx = bounds[:, :1] + np.arange(length)[None, :]
    windows[:, :length] = signal[idx]
    lut = colormap_lut(colormap)
    if feature == "logmel":
        spec = np.abs(librosa.stft(windows, n_fft=n_fft, hop_length=hop, win_length=win, window="hann",
                                   center=True)) ** 2  # (N, 1 + n_fft/2, F)
        mel = np.matmul(_mel_basis(sample_rate, n_fft, n_mels), spec)  # (N, n_mels, F)
        if db_range is None:
            db = librosa.power_to_db(mel, ref=1.0, top_db=None)
            lo = db.min(axis=(1, 2), keepdims=True)
            hi = db.max(axis=(1, 2), keepdims=True)
            scaled = (db - lo) / np.maximum(hi - lo, 1e-6)
        else:
            db = librosa.power_to_db(mel, ref=float(mel.max()) if mel.max() > 0 else 1.0, top_db=None)
            scaled = np.clip(db + db_range, 0.0, db_range) / db_range
        gray = np.round(scaled[:, ::-1, :] * 255).astype(np.uint8)  # low frequencies at the bottom
        n_frames = gray.shape[2]
        frame_offsets = np.arange(n_frames) * hop
        edges = librosa.mel_frequencies(n_mels=n_mels + 2, fmin=0.0, fmax=sample_rate / 2)
        mids = (edges[:-1] + edges[1:]) / 2  # n_mels + 1 boundaries between filter centres
        row_bands = np.stack([mids[:-1], mids[1:]], axis=1)[::-1].copy()
    elif feature == "mfcc":
        n_fft = max(n_fft, 512)
        padded_m = max(padded, n_fft)
        if padded_m > padded:
            windows = np.pad(windows, ((0, 0), (0, padded_m - padded)))
        emph = librosa.effects.preemphasis(windows, coef=0.97)
        spec = np.abs(librosa.stft(emph, n_fft=n_fft, hop_length=hop, win_length=win, window="hamming",
                                   center=False)) ** 2 / n_fft
        mel = np.matmul(_mel_basis(sample_rate, n_fft, 40), spec)
        log_mel = np.log(np.maximum(mel, np.finfo(np.float32).eps))
        mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=13, dct_type=2, norm="ortho", lifter=22)  # (N, 13, F)
        lo = mfcc.min(axis=(1, 2), keepdims=True)
        hi = mfcc.max(axis=(1, 2), keepdims=True)
        gray = np.round((mfcc - lo) / np.maximum(hi - lo, 1e-6) * 255).astype(np.uint8)
        n_frames = gray.shape[2]
        frame_offsets = np.arange(n_frames) * hop + win // 2
        row_bands = None
    else:
        raise ValueError(f"unknown audio feature {feature!r}; use 'logmel' or 'mfcc'")
    images = np.empty((num_windows, 3, size, size), np.uint8)
    for i in range(num_windows):
        images[i] = lut[_resize(gray[i], size)].transpose(2, 0, 1)
    frame_times = (bounds[:, :1] + frame_offsets[None, :]) / sample_rate
    return AudioImages(images, bounds, frame_times, row_bands)


def tf_mask_to_images(mask: np.ndarray, mask_hop: float, mask_freqs: np.ndarray, geometry: AudioImages,
                      size: int) -> np.ndarray:
    """Maps a time-frequency ground-truth mask onto the window pictures, shape (N, S, S) bool.

    Args:
        mask: bool (T_g, F_g): cell (t, f) carries the cue at time ``t * mask_hop`` and frequency
            ``mask_freqs[f]``.
        mask_hop: seconds per mask row.
        mask_freqs: (F_g,) increasing Hz of the mask columns.
        geometry: the :class:`AudioImages` of the clip.
        size: picture side S.

    For MFCC pictures (rows are not frequencies) a column is marked entirely when any frequency is marked.
    """
    mask = np.asarray(mask, dtype=bool)
    mask_freqs = np.asarray(mask_freqs, dtype=np.float64)
    t_idx = np.clip(np.round(geometry.frame_times / mask_hop).astype(np.int64), 0, mask.shape[0] - 1)  # (N, F)
    n = geometry.frame_times.shape[0]
    out = np.zeros((n, size, size), bool)
    if geometry.row_bands is None:
        cols = mask.any(axis=1)[t_idx]  # (N, F)
        for i in range(n):
            grid = np.repeat(cols[i][None, :], 13, axis=0).astype(np.uint8) * 255
            out[i] = _resize(grid, size, nearest=True) > 127
        return out
    bands = geometry.row_bands
    # membership (R, F_g): a row covers the mask columns inside its band, and at least the nearest one
    member = (mask_freqs[None, :] >= bands[:, :1]) & (mask_freqs[None, :] < bands[:, 1:])
    centre = bands.mean(axis=1)
    nearest = np.abs(mask_freqs[None, :] - centre[:, None]).argmin(axis=1)
    member[np.arange(len(bands)), nearest] = True
    member = member.astype(np.float32)
    for i in range(n):
        cells = mask[t_idx[i]].astype(np.float32)  # (F, F_g)
        grid = ((member @ cells.T) > 0).astype(np.uint8) * 255  # (R, F)
        out[i] = _resize(grid, size, nearest=True) > 127
    return out
