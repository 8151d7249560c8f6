"""SynthAV rendering: actors, clip specs and one clip's frames, voice and ground-truth masks, drawn in memory.

The design (class pairs of visual and audio groups, nuisances, ground truth) is described in
:mod:`multimae_der.data.synthav`, which writes the rendered clips as data set files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CLASS_DESIGNS", "FORMATS", "Actor", "ClipSpec", "SynthClip", "cue_span", "make_actor", "render_clip"]

FORMATS = ("ravdess", "cremad", "iemocap")

#: format -> list of (emotion name, visual group, audio group) in the data set's label order.
CLASS_DESIGNS: dict[str, list[tuple[str, int, int]]] = {
    "ravdess": [(name, c // 2, (c % 2) + 2 * (c // 4)) for c, name in enumerate(
        ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"))],
    "cremad": [("angry", 2, 2), ("disgust", 1, 2), ("fearful", 1, 1), ("happy", 2, 0), ("neutral", 0, 0),
               ("sad", 0, 1)],
    "iemocap": [("neutral", 0, 0), ("happy", 2, 0), ("angry", 2, 2), ("sad", 0, 2)],
}

_NEUTRAL_FORMANTS = np.array([500.0, 1500.0, 2500.0])
_GROUP_FORMANTS = np.array([[500.0, 1500.0, 2500.0], [850.0, 1250.0, 2600.0], [300.0, 2350.0, 3100.0],
                            [350.0, 800.0, 2300.0]])
_FORMANT_WIDTH = np.array([110.0, 140.0, 180.0])
_FORMANT_GAIN = np.array([1.0, 0.75, 0.45])
_GT_HOP = 0.01  # seconds per ground-truth row
_GT_DF = 31.25  # Hz per ground-truth column


@dataclass(frozen=True)
class Actor:
    """An actor's identity: face geometry (fractions of the frame), colours and voice."""

    index: int
    face_rx: float
    face_ry: float
    center_x: float
    center_y: float
    skin: tuple[float, float, float]
    background: tuple[float, float, float]
    pitch: float
    formant_scale: float
    rate: float


def make_actor(seed: int, index: int) -> Actor:
    """Draws actor ``index``'s identity; the same ``(seed, index)`` always gives the same actor."""
    rng = np.random.default_rng([seed, 7919, index])
    skin_base = np.array([0.93, 0.76, 0.62]) * rng.uniform(0.55, 1.05)
    return Actor(
        index=index,
        face_rx=float(rng.uniform(0.29, 0.34)),
        face_ry=float(rng.uniform(0.37, 0.42)),
        center_x=float(0.5 + rng.uniform(-0.04, 0.04)),
        center_y=float(0.5 + rng.uniform(-0.03, 0.03)),
        skin=tuple(float(v) for v in np.clip(skin_base + rng.uniform(-0.05, 0.05, 3), 0.2, 1.0)),
        background=tuple(float(v) for v in rng.uniform(0.1, 0.6, 3)),
        pitch=float(rng.uniform(100.0, 230.0)),
        formant_scale=float(rng.uniform(0.92, 1.08)),
        rate=float(rng.uniform(3.0, 4.5)),
    )


@dataclass(frozen=True)
class ClipSpec:
    """Everything one clip depends on. ``seed`` drives all nuisances, independently of the groups."""

    actor: Actor
    visual_group: int
    audio_group: int
    intensity: float
    seed: int
    duration: float = 2.0
    fps: int = 25
    size: int = 112
    sample_rate: int = 16000
    cue_share: float = 1.0  # share of the clip (one span, the same for video and audio) that shows the class cue


def cue_span(spec: ClipSpec) -> tuple[float, float]:
    """``(start, end)`` in seconds of the span that carries the class cue; the whole clip when ``cue_share`` is 1.

    Outside it the face keeps the rest expression (visual group 0) and the voice the rest contour and vowel
    (audio group 0), so those frames and audio windows hold no class information and no ground truth.
    """
    if spec.cue_share >= 1.0:
        return 0.0, spec.duration
    length = spec.cue_share * spec.duration
    start = float(np.random.default_rng([spec.seed, 3]).uniform(0.0, spec.duration - length))
    return start, start + length


@dataclass
class SynthClip:
    """A rendered clip and its ground truth."""

    frames: np.ndarray  # uint8 (F, S, S, 3)
    audio: np.ndarray  # float32 (L,)
    video_mask: np.ndarray  # bool (F, S, S): mouth and brow pixels
    audio_mask: np.ndarray  # bool (T_g, F_g): voiced harmonic cells
    audio_freqs: np.ndarray  # (F_g,) Hz
    audio_hop: float


def _syllables(rng: np.random.Generator, duration: float, rate: float) -> list[tuple[float, float]]:
    out = []
    t = rng.uniform(0.04, 0.12)
    while True:
        length = rng.uniform(0.55, 0.75) / rate
        if t + length > duration - 0.03:
            break
        out.append((t, length))
        t += length + rng.uniform(0.25, 0.5) / rate
    return out or [(0.05 * duration, 0.9 * duration)]


def _envelope(times: np.ndarray, syllables: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Raised-cosine syllable envelope and the phase (0..1) inside the current syllable."""
    env = np.zeros_like(times)
    phase = np.zeros_like(times)
    for start, length in syllables:
        inside = (times >= start) & (times < start + length)
        u = (times[inside] - start) / length
        env[inside] = 0.5 - 0.5 * np.cos(2 * np.pi * u)
        phase[inside] = u
    return env, phase


def _contour(group: int, strength: float, phase: np.ndarray, times: np.ndarray) -> np.ndarray:
    if group == 0:
        return 1.0 + 0.03 * np.sin(2 * np.pi * 1.3 * times)
    if group == 1:
        return 1.0 + 0.6 * strength * phase
    if group == 2:
        return 1.0 + 0.6 * strength * (1.0 - phase)
    if group == 3:
        return 1.0 + 0.2 * strength * np.sin(2 * np.pi * 9.0 * times)
    raise ValueError(f"audio group must be 0-3, got {group}")


def _synth_audio(spec: ClipSpec, rng: np.random.Generator, syllables: list[tuple[float, float]]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sr = spec.sample_rate
    n = round(spec.duration * sr)
    hop = 80
    tc = np.arange(0, n + hop, hop) / sr  # control-rate times
    t = np.arange(n) / sr
    loudness = rng.uniform(0.35, 0.8)
    snr_db = rng.uniform(14.0, 26.0)
    jitter = rng.uniform(0.97, 1.03)
    noise = rng.standard_normal(n).astype(np.float32)
    env_c, phase_c = _envelope(tc, syllables)
    f0_c = spec.actor.pitch * jitter * _contour(spec.audio_group, spec.intensity, phase_c, tc)
    formants = (_NEUTRAL_FORMANTS + spec.intensity * (_GROUP_FORMANTS[spec.audio_group] - _NEUTRAL_FORMANTS)
                ) * spec.actor.formant_scale
    formants_c = np.repeat(formants[:, None], len(tc), axis=1)  # (3, C)
    start, end = cue_span(spec)
    cue_c = (tc >= start) & (tc < end)
    if not cue_c.all():  # outside the cue span: the rest contour (group 0) and the neutral vowel
        f0_c = np.where(cue_c, f0_c, spec.actor.pitch * jitter * _contour(0, spec.intensity, phase_c, tc))
        formants_c[:, ~cue_c] = (_NEUTRAL_FORMANTS * spec.actor.formant_scale)[:, None]
    k_max = int(0.45 * sr / f0_c.min())
    k = np.arange(1, k_max + 1)[:, None]
    fk = k * f0_c[None, :]  # (K, C)
    shape = (_FORMANT_GAIN[:, None, None] * np.exp(-0.5 * ((fk[None] - formants_c[:, None, :])
                                                           / _FORMANT_WIDTH[:, None, None]) ** 2)).sum(0)
    amp_c = (k ** -0.5) * (shape + 0.03) * (fk < 0.45 * sr)  # (K, C)
    f0 = np.interp(t, tc, f0_c)
    env = np.interp(t, tc, env_c)
    phi = 2 * np.pi * np.cumsum(f0) / sr
    amp = np.stack([np.interp(t, tc, a) for a in amp_c])  # (K, n)
    voice = (amp * np.sin(k * phi[None, :])).sum(0) * env
    voice *= loudness / max(np.abs(voice).max(), 1e-6)
    rms = np.sqrt(np.mean(voice[env > 0.1] ** 2)) if np.any(env > 0.1) else loudness
    audio = voice + noise * rms * 10 ** (-snr_db / 20)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    # ground truth: cells of audible harmonics (within 30 dB of the strongest one) while voiced
    tg = np.arange(int(np.ceil(spec.duration / _GT_HOP))) * _GT_HOP
    freqs = np.arange(0.0, sr / 2 + _GT_DF / 2, _GT_DF)
    mask = np.zeros((len(tg), len(freqs)), bool)
    env_g = np.interp(tg, tc, env_c)
    f0_g = np.interp(tg, tc, f0_c)
    amp_g = np.stack([np.interp(tg, tc, a) for a in amp_c], axis=1)  # (T_g, K)
    strong = (amp_g >= 0.03 * amp_g.max(axis=1, keepdims=True)) & (env_g[:, None] > 0.25)
    strong &= ((tg >= start) & (tg < end))[:, None]  # only the cue span carries the class
    rows, ks = np.nonzero(strong)
    cols = np.round((ks + 1) * f0_g[rows] / _GT_DF).astype(int)
    for d in (-1, 0, 1):
        mask[rows, np.clip(cols + d, 0, len(freqs) - 1)] = True
    return audio, mask, freqs


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return np.clip((1.0 - d) * min(rx, ry) + 0.5, 0.0, 1.0)


def _segment(xx: np.ndarray, yy: np.ndarray, x0: float, y0: float, x1: float, y1: float, half: float
             ) -> np.ndarray:
    dx, dy = x1 - x0, y1 - y0
    u = np.clip(((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    dist = np.hypot(xx - (x0 + u * dx), yy - (y0 + u * dy))
    return np.clip(half - dist + 0.5, 0.0, 1.0)


def _mouth(xx: np.ndarray, yy: np.ndarray, cx: float, my: float, hw: float, bend: float, opening: float,
           thick: float) -> np.ndarray:
    r = np.clip((xx - cx) / hw, -1.0, 1.0)
    centre = my - bend * r ** 2
    half = thick / 2 + opening / 2 * np.sqrt(np.maximum(0.0, 1.0 - r ** 2))
    across = np.clip(half - np.abs(yy - centre) + 0.5, 0.0, 1.0)
    along = np.clip(hw - np.abs(xx - cx) + 0.5, 0.0, 1.0)
    return across * along


def _box(s: int, cx: float, cy: float, hx: float, hy: float) -> tuple[slice, slice]:
    """Integer slices covering ``[cx - hx, cx + hx] x [cy - hy, cy + hy]`` plus a 2-pixel margin."""
    x0, x1 = max(0, int(cx - hx) - 2), min(s, int(cx + hx) + 3)
    y0, y1 = max(0, int(cy - hy) - 2), min(s, int(cy + hy) + 3)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _blend(img: np.ndarray, alpha: np.ndarray, box: tuple[slice, slice], colour: np.ndarray | float) -> None:
    """``img[box] = img[box] * (1 - alpha) + colour * alpha`` in place."""
    region = img[box]
    a = alpha[..., None]
    region *= 1.0 - a
    region += a * colour


def _draw_frames(spec: ClipSpec, rng: np.random.Generator, env_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = spec.size
    a = spec.actor
    n = len(env_v)
    times = np.arange(n) / spec.fps
    # nuisances (drawn in a fixed order, whatever the groups)
    motion_amp = rng.uniform(0.01, 0.035, 2) * s
    motion_freq = rng.uniform(0.3, 1.2, 2)
    motion_phase = rng.uniform(0, 2 * np.pi, 2)
    light = rng.uniform(0.8, 1.15)
    light_drift = rng.uniform(0.0, 0.08)
    light_freq = rng.uniform(0.2, 0.8)
    gradient = rng.uniform(-0.12, 0.12)
    pixel_noise = rng.uniform(1.5, 5.0)
    gaze = rng.uniform(-0.3, 0.3, 2)
    blink_at = rng.uniform(0.0, spec.duration, 2)
    noise = rng.standard_normal((n, s, s, 3), dtype=np.float32)
    noise *= pixel_noise
    vg, st = spec.visual_group, spec.intensity
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    rx, ry = a.face_rx * s, a.face_ry * s
    bg = np.array(a.background, np.float32) * 255
    skin = np.array(a.skin, np.float32) * 255
    lips = np.array([110.0, 25.0, 35.0], np.float32)
    brow_col = np.array([45.0, 30.0, 25.0], np.float32)
    frames = np.empty((n, s, s, 3), np.uint8)
    masks = np.zeros((n, s, s), bool)
    shade = (1.0 + gradient * (xx - s / 2) / s).astype(np.float32)
    base_angle, base_lift = {0: (0.0, 0.0), 1: (0.0, 0.14), 2: (0.5, -0.03), 3: (-0.5, 0.08)}[vg]
    cue_start, cue_end = cue_span(spec)
    for f in range(n):
        t = times[f]
        onset = st * (0.75 + 0.25 * min(1.0, t / (0.3 * spec.duration)))  # the expression builds up
        cue = cue_start <= t < cue_end or spec.cue_share >= 1.0
        g = vg if cue else 0  # outside the cue span: the rest expression
        cx = a.center_x * s + motion_amp[0] * np.sin(2 * np.pi * motion_freq[0] * t + motion_phase[0])
        cy = a.center_y * s + motion_amp[1] * np.sin(2 * np.pi * motion_freq[1] * t + motion_phase[1])
        img = np.empty((s, s, 3), np.float32)
        img[:] = bg
        box = _box(s, cx, cy, rx, ry)
        _blend(img, _ellipse(xx[box], yy[box], cx, cy, rx, ry), box, skin)
        # eyes: white, pupil, blinking
        blink = min(1.0, min(abs(t - b) for b in blink_at) / 0.08)
        eye_open = 0.1 * ry * max(blink, 0.12)
        for side in (-1, 1):
            ex, ey = cx + side * 0.38 * rx, cy - 0.18 * ry
            box = _box(s, ex, ey, 0.17 * rx, eye_open)
            _blend(img, _ellipse(xx[box], yy[box], ex, ey, 0.17 * rx, eye_open), box, 245.0)
            px, py = ex + gaze[0] * 0.08 * rx, ey + gaze[1] * 0.03 * ry
            pr = min(0.07 * rx, eye_open)
            box = _box(s, px, py, 0.07 * rx, pr)
            _blend(img, _ellipse(xx[box], yy[box], px, py, 0.07 * rx, pr), box, 20.0)
        # brows: angle > 0 lowers the inner ends (frown), < 0 raises them (worry)
        angle, lift = (base_angle * onset, base_lift * onset) if cue else (0.0, 0.0)
        for side in (-1, 1):
            bx, by = cx + side * 0.38 * rx, cy - (0.42 + lift) * ry
            half_len = 0.22 * rx
            dy = np.sin(angle) * half_len
            inner_x, outer_x = bx - side * half_len * np.cos(angle), bx + side * half_len * np.cos(angle)
            box = _box(s, bx, by, half_len + 0.05 * ry, abs(dy) + 0.05 * ry)
            brow = _segment(xx[box], yy[box], inner_x, by + dy, outer_x, by - dy, 0.045 * ry)
            _blend(img, brow, box, brow_col)
            if cue:
                masks[f][box] |= brow > 0
        # mouth: width, corner bend and opening by group; speech opens it with the syllables
        talk = 0.12 * ry * env_v[f]
        hw, bend, opening = {0: (0.42 * rx, 0.0, talk),
                             1: ((0.42 + 0.2 * onset) * rx, 0.24 * ry * onset, talk),
                             2: ((0.42 - 0.15 * onset) * rx, 0.0, talk + 0.34 * ry * onset),
                             3: (0.42 * rx, -0.2 * ry * onset, talk)}[g]
        my = cy + 0.5 * ry
        box = _box(s, cx, my - bend / 2, hw, abs(bend) / 2 + opening / 2 + 0.05 * ry)
        mouth = _mouth(xx[box], yy[box], cx, my, hw, bend, opening, 0.07 * ry)
        _blend(img, mouth, box, lips)
        if cue:
            masks[f][box] |= mouth > 0
        gain = shade * np.float32(light * (1 + light_drift * np.sin(2 * np.pi * light_freq * t)))
        img *= gain[..., None]
        img += noise[f]
        np.clip(img, 0, 255, out=img)
        frames[f] = img
    return frames, masks


def render_clip(spec: ClipSpec) -> SynthClip:
    """Renders one clip in memory (frames, audio, ground truth). Same spec, same numbers."""
    rng = np.random.default_rng([spec.seed, 104729])
    syllables = _syllables(rng, spec.duration, spec.actor.rate * rng.uniform(0.9, 1.1))
    audio, audio_mask, freqs = _synth_audio(spec, np.random.default_rng([spec.seed, 1]), syllables)
    n_frames = round(spec.duration * spec.fps)
    env_v, _ = _envelope(np.arange(n_frames) / spec.fps, syllables)
    frames, video_mask = _draw_frames(spec, np.random.default_rng([spec.seed, 2]), env_v)
    return SynthClip(frames, audio, video_mask, audio_mask, freqs, _GT_HOP)
