"""SynthAV: a synthetic audio-visual emotion set whose answer is known, written as real RAVDESS / CREMA-D /
IEMOCAP files so the real loaders read it unchanged.

Each actor has an identity (face shape, skin tone, position, background, voice pitch, formant scale, speaking
rate). Each clip shows a drawn cartoon face whose mouth, brows and eyes move, and a synthesized voice (harmonic
source shaped by formant resonances) whose syllables, pitch contour and energy vary. Nuisances vary per clip:
head motion, lighting, pixel noise, blinks, speaking rate, loudness and background noise.

Fusion is required by design. Every class is a pair (visual group, audio group) and the pairs are arranged so
that each visual group holds as many classes as each audio group (two, for all formats): a perfect video-only
model reaches 50 %, a perfect audio-only model 50 %, and only both together reach 100 %.

* visual groups (mouth + brows): 0 rest (flat mouth, level brows), 1 smile + raised brows, 2 wide open mouth +
  V-shaped (frowning) brows, 3 down-turned mouth + raised inner brows;
* audio groups (per-syllable pitch contour + vowel formants): 0 flat contour, neutral vowel; 1 rising contour,
  open vowel; 2 falling contour, front vowel; 3 fast vibrato, back vowel.

Class designs (class order is each data set's label order):

* RAVDESS (8): class c -> visual c // 2, audio (c % 2) + 2 (c // 4);
* CREMA-D (6): a cycle over three visual and three audio groups (neutral (0,0), sad (0,1), fearful (1,1),
  disgust (1,2), angry (2,2), happy (2,0));
* IEMOCAP (4): neutral (0,0), sad (0,2), happy (2,0), angry (2,2).

Intensity (RAVDESS normal/strong, CREMA-D LO/MD/HI/XX) scales the departure from the rest shapes, so the rest
groups look and sound the same at every intensity and intensity never leaks the class.

Ground truth: beside each clip, ``<stem>.npz`` holds the per-frame pixels of the mouth and brows
(``video_mask`` (F, H, W) at ``video_times``) and the time-frequency cells of the voiced harmonics
(``audio_mask`` (T_g, F_g) on a ``audio_hop`` x ``audio_freqs`` grid). ``prepare`` maps them onto its frames and
window pictures.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from ffidelity.atomic import atomic_open, atomic_path, write_text

__all__ = [
    "CLASS_DESIGNS",
    "FORMATS",
    "Actor",
    "ClipSpec",
    "SynthClip",
    "make_actor",
    "render_clip",
    "synthesize",
]

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


# --------------------------------------------------------------------------------------------- writing files

def _encode_video(path: Path, frames: np.ndarray, fps: int, codec: str, audio: np.ndarray | None = None,
                  sample_rate: int = 16000) -> None:
    with atomic_path(path) as tmp, av.open(str(tmp), "w") as container:
        vs = container.add_stream(codec, rate=fps)
        vs.width, vs.height = frames.shape[2], frames.shape[1]
        vs.pix_fmt = "yuv420p"
        if codec == "libx264":
            vs.options = {"preset": "ultrafast", "crf": "16"}
        else:
            vs.bit_rate = 1_500_000
        stream_a = None
        if audio is not None:
            stream_a = container.add_stream("aac", rate=sample_rate)
            stream_a.layout = "mono"
        for img in frames:
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in vs.encode():
            container.mux(packet)
        if stream_a is not None:
            frame = av.AudioFrame.from_ndarray(audio[None, :].astype(np.float32), format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = 0
            for packet in stream_a.encode(frame):
                container.mux(packet)
            for packet in stream_a.encode(None):
                container.mux(packet)


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio, sample_rate, subtype="PCM_16", format="WAV")


def _write_gt(path: Path, clip: SynthClip, spec: ClipSpec, emotion: str) -> None:
    with atomic_open(path, "wb") as fh:
        np.savez_compressed(fh, video_mask=clip.video_mask,
                            video_times=np.arange(len(clip.frames)) / spec.fps,
                            audio_mask=clip.audio_mask, audio_freqs=clip.audio_freqs,
                            audio_hop=np.float64(clip.audio_hop), visual_group=np.int64(spec.visual_group),
                            audio_group=np.int64(spec.audio_group), intensity=np.float64(spec.intensity),
                            emotion=np.str_(emotion))


@dataclass(frozen=True)
class _Job:
    kind: str  # "clip" or "dialog"
    specs: tuple[ClipSpec, ...]
    emotions: tuple[str, ...]
    paths: tuple[str, ...]  # clip: (video, audio or "", gt); dialog: (avi, txt, then per utterance wav, gt)
    labels: tuple[str, ...] = ()  # dialog: IEMOCAP label codes
    names: tuple[str, ...] = ()  # dialog: utterance names


def _run_job(job: _Job) -> int:
    if job.kind == "clip":
        spec = job.specs[0]
        clip = render_clip(spec)
        video, audio, gt = (Path(p) for p in job.paths)
        if video.suffix == ".mp4":
            _encode_video(video, clip.frames, spec.fps, "libx264", clip.audio, spec.sample_rate)
        else:
            _encode_video(video, clip.frames, spec.fps, "flv")
            _write_wav(audio, clip.audio, spec.sample_rate)
        _write_gt(gt, clip, spec, job.emotions[0])
        return 1
    # IEMOCAP dialog: utterances one after another with pauses; the camera shows the speaking actor
    avi, txt = Path(job.paths[0]), Path(job.paths[1])
    pieces, lines = [], ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    fps = job.specs[0].fps
    gap = np.zeros((int(0.4 * fps), job.specs[0].size, job.specs[0].size, 3), np.uint8) + 90
    t = 0.0
    for i, spec in enumerate(job.specs):
        clip = render_clip(spec)
        pieces += [gap, clip.frames]
        t += len(gap) / fps
        start, end = t, t + len(clip.frames) / fps
        t = end
        lines += [f"[{start:.4f} - {end:.4f}]\t{job.names[i]}\t{job.labels[i]}\t[2.5000, 3.0000, 2.5000]",
                  f"C-E1:\t{job.emotions[i].capitalize()};\t()", ""]
        _write_wav(Path(job.paths[2 + 2 * i]), clip.audio, spec.sample_rate)
        _write_gt(Path(job.paths[3 + 2 * i]), clip, spec, job.emotions[i])
    pieces.append(gap)
    _encode_video(avi, np.concatenate(pieces), fps, "mpeg4")
    write_text(txt, "\n".join(lines) + "\n")
    return len(job.specs)


def _ravdess_combos(emotion: int) -> list[tuple[int, int, int, int]]:
    """(vocal channel, intensity, statement, repetition) combinations with valid names, speech first."""
    out = []
    for vc in (1, 2):
        if vc == 2 and emotion > 6:
            continue
        for ii in (1, 2):
            if emotion == 1 and ii == 2:
                continue
            for ss in (1, 2):
                for rr in (1, 2):
                    out.append((vc, ii, ss, rr))
    out.sort(key=lambda c: (c[0], c[2], c[3], c[1]))  # alternate intensities early
    return out


def _plan(out: Path, fmt: str, actors: int, clips_per_actor: int, seed: int, duration: float, fps: int,
          size: int, sample_rate: int, cue_share: float = 1.0) -> list[_Job]:
    from multimae_der.naming import CREMAD_EMOTIONS, CREMAD_SENTENCES

    design = CLASS_DESIGNS[fmt]
    n_cls = len(design)
    jobs: list[_Job] = []

    def spec_for(actor: Actor, cls: int, intensity: float, clip_seed: int) -> ClipSpec:
        _, vg, ag = design[cls]
        return ClipSpec(actor, vg, ag, intensity, clip_seed, duration, fps, size, sample_rate, cue_share)

    if fmt == "iemocap" and actors > 10:
        raise ValueError(f"IEMOCAP has 5 sessions x 2 speakers: at most 10 actors, got {actors}")
    if fmt == "cremad" and actors > 91:
        raise ValueError(f"CREMA-D actor ids run 1001-1091: at most 91 actors, got {actors}")
    if fmt == "ravdess" and actors > 24:
        raise ValueError(f"RAVDESS actor ids run 01-24: at most 24 actors, got {actors}")
    cremad_codes = {v: k for k, v in CREMAD_EMOTIONS.items()}
    per_actor: dict[int, list[tuple[int, int]]] = {}
    for a in range(actors):
        per_actor[a] = [((a * clips_per_actor + j) % n_cls, j) for j in range(clips_per_actor)]
    if fmt in ("ravdess", "cremad"):
        for a in range(actors):
            actor = make_actor(seed, a)
            used: dict[int, int] = {}
            for cls, j in per_actor[a]:
                m = used.get(cls, 0)
                used[cls] = m + 1
                clip_seed = seed * 1_000_003 + a * 1000 + j
                emotion = design[cls][0]
                if fmt == "ravdess":
                    code = cls + 1
                    combos = _ravdess_combos(code)
                    if m >= len(combos):
                        raise ValueError(f"--clips-per-actor {clips_per_actor} is too many: RAVDESS names allow "
                                         f"only {len(combos)} clips of {emotion} per actor")
                    vc, ii, ss, rr = combos[m]
                    stem = f"01-{vc:02d}-{code:02d}-{ii:02d}-{ss:02d}-{rr:02d}-{a + 1:02d}"
                    folder = out / f"Actor_{a + 1:02d}"
                    video = folder / f"{stem}.mp4"
                    jobs.append(_Job("clip", (spec_for(actor, cls, 0.7 if ii == 1 else 1.0, clip_seed),),
                                     (emotion,), (str(video), "", str(folder / f"{stem}.npz"))))
                else:
                    code = cremad_codes[emotion]
                    combos = [(s, lv) for s in CREMAD_SENTENCES
                              for lv in (("XX",) if s != "IEO" or code == "NEU" else ("LO", "MD", "HI"))]
                    if m >= len(combos):
                        raise ValueError(f"--clips-per-actor {clips_per_actor} is too many: CREMA-D names allow "
                                         f"only {len(combos)} clips of {emotion} per actor")
                    sentence, level = combos[m]
                    stem = f"{1001 + a}_{sentence}_{code}_{level}"
                    intensity = {"LO": 0.6, "MD": 0.8, "HI": 1.0, "XX": 0.85}[level]
                    jobs.append(_Job("clip", (spec_for(actor, cls, intensity, clip_seed),), (emotion,),
                                     (str(out / "VideoFlash" / f"{stem}.flv"), str(out / "AudioWAV" / f"{stem}.wav"),
                                      str(out / "VideoFlash" / f"{stem}.npz"))))
        return jobs
    # IEMOCAP: actor a -> session a // 2 + 1, gender F (even) / M (odd); dialogs of up to 4 utterances
    codes = {"neutral": ["neu"], "happy": ["hap", "exc"], "angry": ["ang"], "sad": ["sad"]}
    for session in range(1, (actors + 1) // 2 + 1):
        members = [a for a in (2 * session - 2, 2 * session - 1) if a < actors]
        queue = []
        for j in range(clips_per_actor):
            for a in members:
                queue.append((a, j))
        for d in range(0, len(queue), 4):
            dialog = f"Ses{session:02d}F_impro{d // 4 + 1:02d}"
            chunk = queue[d:d + 4]
            specs, emotions, labels, names = [], [], [], []
            paths = [str(out / f"Session{session}" / "dialog" / "avi" / "DivX" / f"{dialog}.avi"),
                     str(out / f"Session{session}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt")]
            counters: dict[str, int] = {}
            for a, j in chunk:
                gender = "F" if a % 2 == 0 else "M"
                turn = counters.get(gender, 0)
                counters[gender] = turn + 1
                cls = (a * clips_per_actor + j) % n_cls
                emotion = design[cls][0]
                options = codes[emotion]
                name = f"{dialog}_{gender}{turn:03d}"
                clip_seed = seed * 1_000_003 + a * 1000 + j
                rng = np.random.default_rng([clip_seed, 5])
                specs.append(spec_for(make_actor(seed, a), cls, float(rng.uniform(0.7, 1.0)), clip_seed))
                emotions.append(emotion)
                labels.append(options[j % len(options)])
                names.append(name)
                wav_dir = out / f"Session{session}" / "sentences" / "wav" / dialog
                paths += [str(wav_dir / f"{name}.wav"), str(wav_dir / f"{name}.npz")]
            jobs.append(_Job("dialog", tuple(specs), tuple(emotions), tuple(paths), tuple(labels), tuple(names)))
    return jobs


def synthesize(out: str | Path, fmt: str = "ravdess", *, actors: int = 8, clips_per_actor: int = 8, seed: int = 0,
               duration: float = 2.0, fps: int = 25, size: int = 112, sample_rate: int = 16000, workers: int = 1,
               progress: Callable[[int], None] | None = None, cue_share: float = 1.0) -> dict[str, object]:
    """Writes a SynthAV set in ``fmt``'s layout and naming under ``out``.

    Args:
        out: output folder (created; existing files with the same names are replaced).
        fmt: ``ravdess`` (H.264 + AAC mp4), ``cremad`` (flv + 16 kHz wav) or ``iemocap`` (dialog avi +
            EmoEvaluation txt + sentence wav).
        actors, clips_per_actor: set size; classes rotate so every class gets the same share overall.
        seed: the same seed writes the same set.
        duration, fps, size, sample_rate: clip format.
        workers: processes used for rendering and encoding.
        progress: called with the number of clips finished after each job.
        cue_share: share of each clip's duration (one span at a random start, the same for video and audio)
            that shows the class cue; elsewhere face and voice keep the rest expression, and the ground truth
            is empty. 1 (default) = the cue everywhere, as real acted clips rarely are.

    Returns:
        A summary: ``clips``, ``files``, ``format``, ``classes``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if actors < 1 or clips_per_actor < 1:
        raise ValueError("--actors and --clips-per-actor must be at least 1")
    if duration < 0.5:
        raise ValueError(f"duration must be at least 0.5 s, got {duration}")
    if not 0.0 < float(cue_share) <= 1.0:
        raise ValueError(f"cue_share must lie in (0, 1], got {cue_share}")
    if size < 32 or size % 16:
        raise ValueError(f"size must be a multiple of 16 and at least 32, got {size}")
    out = Path(out)
    jobs = _plan(out, fmt, actors, clips_per_actor, seed, duration, fps, size, sample_rate, float(cue_share))
    from multimae_der.prepare import _init_worker, _single_thread

    done = 0
    if workers <= 1:
        with _single_thread():
            for job in jobs:
                n = _run_job(job)
                done += n
                if progress:
                    progress(n)
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
            for n in pool.map(_run_job, jobs, chunksize=max(1, len(jobs) // (8 * workers))):
                done += n
                if progress:
                    progress(n)
    if fmt == "cremad":
        rows = ["ActorID,Age,Sex,Race,Ethnicity"]
        rows += [f"{1001 + a},{30 + a % 20},{'Female' if a % 2 else 'Male'},Unknown,Not Hispanic"
                 for a in range(actors)]
        write_text(out / "VideoDemographics.csv", "\n".join(rows) + "\n")
    meta = {"format": fmt, "actors": actors, "clips_per_actor": clips_per_actor, "seed": seed,
            "duration": duration, "fps": fps, "size": size, "sample_rate": sample_rate, "cue_share": float(cue_share),
            "classes": [{"emotion": e, "visual_group": v, "audio_group": a} for e, v, a in CLASS_DESIGNS[fmt]],
            "actor_identities": [asdict(make_actor(seed, a)) for a in range(actors)]}
    from ffidelity.atomic import write_json

    write_json(out / "synthav.json", meta)
    return {"clips": done, "format": fmt, "classes": len(CLASS_DESIGNS[fmt]), "out": str(out)}
