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

This module plans the data set and writes its files; the drawing and the voice are rendered in
:mod:`multimae_der.data.synthav_render`.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from ffidelity.utils.atomic import atomic_open, atomic_path, write_text
from multimae_der.data.synthav_render import (
    CLASS_DESIGNS,
    FORMATS,
    Actor,
    ClipSpec,
    SynthClip,
    make_actor,
    render_clip,
)

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
    from multimae_der.data.naming import CREMAD_EMOTIONS, CREMAD_SENTENCES

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
    from multimae_der.data.prepare import _init_worker, _single_thread

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
    from ffidelity.utils.atomic import write_json

    write_json(out / "synthav.json", meta)
    return {"clips": done, "format": fmt, "classes": len(CLASS_DESIGNS[fmt]), "out": str(out)}
