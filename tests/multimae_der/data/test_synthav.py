"""SynthAV: determinism, ground truth alignment, file layouts and the 50 % / 50 % / 100 % fusion design."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from multimae_der.data import synthav
from multimae_der.data.labels import default_label_set
from multimae_der.data.naming import parse_iemocap_evaluation, parse_ravdess_name
from multimae_der.data.prepare import PrepareConfig, preprocess_clip
from multimae_der.data.synthav import synthesize
from multimae_der.data.synthav_render import CLASS_DESIGNS, ClipSpec, make_actor, render_clip


def _spec(vg: int, ag: int, seed: int = 11, actor: int = 2, **kw) -> ClipSpec:
    return ClipSpec(make_actor(0, actor), vg, ag, 1.0, seed, **{"duration": 1.0, "size": 64, **kw})


def test_same_seed_same_clip_and_seed_matters():
    a, b = render_clip(_spec(1, 2)), render_clip(_spec(1, 2))
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    c = render_clip(_spec(1, 2, seed=12))
    assert not np.array_equal(a.frames, c.frames) and not np.array_equal(a.audio, c.audio)
    assert make_actor(0, 3) == make_actor(0, 3) != make_actor(1, 3)


@pytest.mark.parametrize("fmt", list(CLASS_DESIGNS))
def test_design_needs_both_modalities(fmt):
    """With balanced classes the best video-only and audio-only accuracies are 50 %; the pair identifies the class."""
    design = CLASS_DESIGNS[fmt]
    assert [name for name, _, _ in design] == list(default_label_set(fmt).classes)
    pairs = [(v, a) for _, v, a in design]
    assert len(set(pairs)) == len(pairs), "(visual group, audio group) identifies the class: 100 % with both"
    for axis in (0, 1):
        groups = [p[axis] for p in pairs]
        # Bayes accuracy from one modality = sum over groups of the largest class share in the group
        best = sum(1 for _ in set(groups)) / len(pairs)
        assert best == 0.5 and all(groups.count(g) == 2 for g in set(groups))


def test_each_modality_depends_only_on_its_group():
    """Frames are a function of (visual group, nuisances) only, audio of (audio group, nuisances): no leak."""
    base = render_clip(_spec(2, 1))
    other_audio = render_clip(_spec(2, 3))
    other_video = render_clip(_spec(0, 1))
    assert np.array_equal(base.frames, other_audio.frames) and not np.array_equal(base.audio, other_audio.audio)
    assert np.array_equal(base.audio, other_video.audio) and not np.array_equal(base.frames, other_video.frames)
    weak = render_clip(replace(_spec(0, 0), intensity=0.6))
    strong = render_clip(_spec(0, 0))
    assert np.array_equal(weak.frames, strong.frames) and np.array_equal(weak.audio, strong.audio), \
        "rest groups do not change with intensity (RAVDESS neutral has only one intensity)"


def test_pixels_differ_between_emotions_only_inside_ground_truth():
    clips = {vg: render_clip(_spec(vg, 0)) for vg in range(4)}
    for a in range(4):
        for b in range(a + 1, 4):
            diff = np.any(clips[a].frames != clips[b].frames, axis=-1)
            inside = clips[a].video_mask | clips[b].video_mask
            assert diff.any() and not (diff & ~inside).any()
            assert diff.sum() > 0.3 * (clips[a].video_mask ^ clips[b].video_mask).sum()


def test_ground_truth_survives_encoding_and_prepare(tmp_path):
    """After H.264 and prepare, two emotions differ inside the mapped gt; outside only codec noise remains."""
    s = 64
    cfg = PrepareConfig(num_frames=6, num_windows=5, image_size=48, colormap="gray")
    out = {}
    for vg, ag in [(1, 0), (3, 2)]:
        spec = _spec(vg, ag, size=s)
        clip = render_clip(spec)
        path = tmp_path / f"v{vg}.mp4"
        synthav._encode_video(path, clip.frames, spec.fps, "libx264", clip.audio, spec.sample_rate)
        synthav._write_gt(path.with_suffix(".npz"), clip, spec, "x")
        out[vg] = preprocess_clip(path, cfg)
    a, b = out[1], out[3]
    gt = a["gt_video"] | b["gt_video"]
    diff = np.abs(a["video"].astype(int) - b["video"].astype(int)).mean(1)
    assert diff[gt].mean() > 8 * diff[~gt].mean()
    # audio: the harmonic cells are the loud part of the log-mel picture
    for item in (a, b):
        img = item["audio"][:, 0].astype(float)
        assert img[item["gt_audio"]].mean() > img[~item["gt_audio"]].mean() + 40


def _features(fmt_design, actors, clips):
    """Per clip: blurred mean frame (video) and mean log-mel spectrum (audio), plus both groups and the class."""
    import librosa

    xv, xa, yv, ya, yc = [], [], [], [], []
    for actor in actors:
        for j in range(clips):
            cls = (actor * clips + j) % len(fmt_design)
            _, vg, ag = fmt_design[cls]
            spec = ClipSpec(make_actor(5, actor), vg, ag, 0.8 + 0.2 * (j % 2), 1000 * actor + j, duration=0.6,
                            fps=10, size=32)
            clip = render_clip(spec)
            grey = clip.frames.mean(axis=(0, 3)).reshape(16, 2, 16, 2).mean(axis=(1, 3))
            mel = librosa.feature.melspectrogram(y=clip.audio, sr=16000, n_fft=512, hop_length=160, n_mels=40)
            xv.append(grey.ravel() / 255)
            xa.append(np.log(mel + 1e-6).mean(axis=1))
            yv.append(vg)
            ya.append(ag)
            yc.append(cls)
    return np.array(xv), np.array(xa), np.array(yv), np.array(ya), np.array(yc)


def test_tiny_classifiers_show_the_50_50_100_design():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    design = CLASS_DESIGNS["ravdess"]
    train = _features(design, range(0, 6), 16)
    test = _features(design, range(6, 8), 16)

    def accuracy(x_tr, y_tr, x_te, y_te):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
        return (model.fit(x_tr, y_tr).predict(x_te) == y_te).mean()

    xv, xa, yv, ya, yc = train
    tv, ta, tyv, tya, tyc = test
    assert accuracy(xv, yv, tv, tyv) >= 0.85, "video separates the visual groups"
    assert accuracy(xa, ya, ta, tya) >= 0.85, "audio separates the audio groups"
    assert accuracy(xv, yc, tv, tyc) <= 0.66, "video alone cannot tell the classes within a group"
    assert accuracy(xa, yc, ta, tyc) <= 0.66, "audio alone cannot either"
    assert accuracy(np.hstack([xv, xa]), yc, np.hstack([tv, ta]), tyc) >= 0.85, "both together can"


def test_written_layouts(tmp_path):
    summary = synthesize(tmp_path / "r", "ravdess", actors=2, clips_per_actor=3, duration=0.6, size=32, seed=1)
    assert summary["clips"] == 6
    files = sorted((tmp_path / "r").rglob("*.mp4"))
    assert len(files) == 6 and {f.parent.name for f in files} == {"Actor_01", "Actor_02"}
    for f in files:
        name = parse_ravdess_name(f.name)
        assert name.is_audio_video and f.parent.name == f"Actor_{name.actor:02d}"
        assert f.with_suffix(".npz").is_file()
    synthesize(tmp_path / "c", "cremad", actors=2, clips_per_actor=2, duration=0.6, size=32, seed=1)
    wavs = sorted((tmp_path / "c" / "AudioWAV").glob("*.wav"))
    assert len(wavs) == 4 and all(sf.info(str(w)).samplerate == 16000 for w in wavs)
    assert (tmp_path / "c" / "VideoDemographics.csv").read_text().startswith("ActorID")
    synthesize(tmp_path / "i", "iemocap", actors=3, clips_per_actor=2, duration=0.6, size=32, seed=1)
    lines = []
    for txt in sorted((tmp_path / "i").rglob("EmoEvaluation/*.txt")):
        parsed, problems = parse_iemocap_evaluation(txt.read_text())
        assert not problems
        lines += parsed
    assert len(lines) == 6 and {ln.utterance.speaker for ln in lines} == {"Ses01F", "Ses01M", "Ses02F"}
    # same seed, same files
    synthesize(tmp_path / "c2", "cremad", actors=2, clips_per_actor=2, duration=0.6, size=32, seed=1)
    for w in wavs:
        assert (tmp_path / "c2" / "AudioWAV" / w.name).read_bytes() == w.read_bytes()
    with pytest.raises(ValueError, match="at most 10 actors"):
        synthesize(tmp_path / "x", "iemocap", actors=11)
    with pytest.raises(ValueError, match="too many"):
        synthesize(tmp_path / "x", "ravdess", actors=1, clips_per_actor=200)
    with pytest.raises(ValueError, match="unknown format"):
        synthesize(tmp_path / "x", "afew")
    assert not Path(tmp_path / "x").exists() or not any(Path(tmp_path / "x").rglob("*.mp4"))
