"""prepare -> cache -> ClipDataset on SynthAV in all three layouts; windows, cache reuse, skipping, errors."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from multimae_der.data import prepare as prep
from multimae_der.data.audio_images import window_bounds
from multimae_der.data.datasets import ClipDataset, fold_split
from multimae_der.data.labels import default_label_set
from multimae_der.data.media import MediaError, even_times, read_audio
from multimae_der.data.prepare import PrepareConfig, prepare_dataset, preprocess_clip
from multimae_der.data.sources import SkippedClipWarning, scan_dataset
from multimae_der.data.synthav import synthesize

CFG = PrepareConfig(num_frames=6, num_windows=5, image_size=48)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    for fmt in ("ravdess", "cremad", "iemocap"):
        synthesize(root / fmt, fmt, actors=4, clips_per_actor=2, duration=1.0, size=64, seed=3)
    return root


def _no_skip_warnings(record) -> None:
    assert not [w for w in record if issubclass(w.category, SkippedClipWarning)]


@pytest.mark.parametrize("fmt", ["ravdess", "cremad", "iemocap"])
def test_round_trip_and_cache_reuse(fmt, synth_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        summary = prepare_dataset(fmt, synth_root / fmt, cache, CFG, progress=False)
    _no_skip_warnings(record)
    assert (summary.clips, summary.decoded, summary.cached, summary.skipped) == (8, 8, 0, [])
    assert (cache / f"config-{CFG.hash()}.json").is_file()
    ds = ClipDataset(cache)
    assert len(ds) == 8 and ds.dataset == fmt and ds.config == CFG
    labels = default_label_set(fmt)
    for i in range(len(ds)):
        item = ds[i]
        assert item["video"].shape == (6, 3, 48, 48) and item["video"].dtype == torch.uint8
        assert item["audio"].shape == (5, 3, 48, 48) and item["audio"].dtype == torch.uint8
        assert item["gt_video"].shape == (6, 48, 48) and item["gt_video"].dtype == torch.bool
        assert item["gt_audio"].shape == (5, 48, 48) and item["gt_audio"].dtype == torch.bool
        assert 0.005 < item["gt_video"].float().mean() < 0.2 and item["gt_audio"].any()
        assert item["video"].float().std() > 10 and item["audio"].float().std() > 5
        # the label is the one the generator drew (its ground-truth file records the emotion)
        entry = ds.entries[i]
        gt_file = Path(entry["audio_path"] or entry["path"]).with_suffix(".npz")
        if not gt_file.is_file():
            gt_file = Path(entry["path"]).with_suffix(".npz")
        with np.load(gt_file) as z:
            assert labels.index(str(z["emotion"])) == item["label"]
        assert isinstance(item["actor"], str) and Path(item["path"]).is_file()
    # a rerun decodes nothing
    monkeypatch.setattr(prep, "preprocess_source", lambda *a, **k: pytest.fail("decoded on a rerun"))
    again = prepare_dataset(fmt, synth_root / fmt, cache, CFG, progress=False)
    assert (again.clips, again.decoded, again.cached) == (8, 0, 8)
    # batches collate
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["video"].shape == (4, 6, 3, 48, 48) and batch["label"].shape == (4,)


def test_folds_of_a_prepared_set(synth_root, tmp_path):
    prepare_dataset("iemocap", synth_root / "iemocap", tmp_path, CFG, progress=False)
    ds = ClipDataset(tmp_path)
    train, test = fold_split(ds, 0)
    assert {ds.actors[i] for i in test} == {"Ses01F", "Ses01M"}
    assert {ds.actors[i] for i in train} == {"Ses02F", "Ses02M"}
    with pytest.raises(ValueError, match="fold 5 does not exist"):
        fold_split(ds, 5)


def test_ravdess7_merges_calm(synth_root, tmp_path):
    prepare_dataset("ravdess", synth_root / "ravdess", tmp_path, CFG, progress=False)
    d8, d7 = ClipDataset(tmp_path), ClipDataset(tmp_path, label_set="ravdess7")
    assert d8.num_classes == 8 and d7.num_classes == 7 and len(d7) == len(d8)
    for i in range(len(d8)):
        assert d7.class_names[d7.labels[i]] == ("neutral" if d8.entries[i]["emotion"] == "calm"
                                                else d8.entries[i]["emotion"])


def test_window_bounds_follow_the_paper():
    for length, n in [(32000, 16), (16001, 8), (1000, 3), (18, 16)]:
        b = window_bounds(length, n)
        seg = length / (n + 1)
        assert b.shape == (n, 2)
        assert np.all(np.abs(b[:, 0] - np.arange(n) * seg) <= 1.0)
        assert np.all(np.abs(b[:, 1] - (np.arange(n) + 2) * seg) <= 1.0)
        assert np.all(np.abs((b[1:, 0] - b[:-1, 0]) - seg) <= 1.0), "consecutive windows overlap by 50 %"
        assert np.all(b[:, 1] <= length) and len(set(b[:, 1] - b[:, 0])) == 1
    with pytest.raises(ValueError, match="too few"):
        window_bounds(5, 16)


def _write_video(path: Path, seconds: float = 1.0, with_audio: bool = True, fps: int = 25) -> None:
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width = vs.height = 32
        vs.pix_fmt = "yuv420p"
        astream = None
        if with_audio:
            astream = c.add_stream("aac", rate=16000)
            astream.layout = "mono"
        for i in range(int(seconds * fps)):
            img = np.full((32, 32, 3), (i * 7) % 256, np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if astream is not None:
            y = (0.1 * np.sin(2 * np.pi * 300 * np.arange(int(seconds * 16000)) / 16000)).astype(np.float32)
            fr = av.AudioFrame.from_ndarray(y[None], format="flt", layout="mono")
            fr.sample_rate, fr.pts = 16000, 0
            for p in astream.encode(fr):
                c.mux(p)
            for p in astream.encode(None):
                c.mux(p)


def test_audio_windows_are_aligned_in_time(tmp_path):
    """A tone only in segment 3 of N + 1 = 6 lights up exactly windows 2 and 3, which cover that segment."""
    video = tmp_path / "clip.mp4"
    _write_video(video, 1.2, with_audio=False)
    sr, n = 16000, 5
    length = int(1.2 * sr)
    seg = length / (n + 1)
    y = np.zeros(length, np.float32)
    s0, s1 = int(np.ceil(3 * seg)) + 200, int(4 * seg) - 200
    y[s0:s1] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(s1 - s0) / sr)
    wav = tmp_path / "clip.wav"
    sf.write(str(wav), y, sr, subtype="FLOAT")
    cfg = PrepareConfig(num_frames=4, num_windows=n, image_size=32, colormap="gray")
    out = preprocess_clip(video, cfg, audio_path=wav)
    expected = np.stack([np.arange(n) * seg, (np.arange(n) + 2) * seg], 1) / sr
    assert np.allclose(out["window_bounds"], expected, atol=1.5 / sr)
    brightness = out["audio"].reshape(n, -1).mean(1)
    assert set(np.argsort(brightness)[-2:]) == {2, 3}
    assert brightness[[2, 3]].min() > 4 * brightness[[0, 1, 4]].max()
    # frames are taken at k * D / (T + 1): the frame shown at that instant
    times = even_times(out["video_duration"], 4)
    assert np.all(out["frame_times"] <= times + 1e-6) and np.all(out["frame_times"] > times - 1 / 25)
    assert out["video_duration"] == pytest.approx(1.2, abs=0.05) and out["audio_duration"] == pytest.approx(1.2)
    mfcc = preprocess_clip(video, PrepareConfig(num_frames=4, num_windows=n, image_size=32, audio_feature="mfcc"),
                           audio_path=wav)
    assert mfcc["audio"].shape == (n, 3, 32, 32) and not np.array_equal(mfcc["audio"], out["audio"])


def test_stereo_is_averaged_not_interleaved(tmp_path):
    path = tmp_path / "stereo.wav"
    t = np.arange(8000) / 8000
    left = 0.5 * np.sin(2 * np.pi * 200 * t)
    sf.write(str(path), np.stack([left, -left], 1).astype(np.float32), 8000, subtype="FLOAT")
    assert np.abs(read_audio(path, 8000)).max() < 1e-6  # opposite channels cancel
    sf.write(str(path), np.stack([left, np.zeros_like(left)], 1).astype(np.float32), 8000, subtype="FLOAT")
    mono = read_audio(path, 8000)
    assert len(mono) == 8000 and np.allclose(mono, left / 2, atol=1e-6)
    up = read_audio(path, 16000)
    assert len(up) == 16000 and np.allclose(up[200:-200:2], left[100:-100] / 2, atol=0.02)


def test_bad_files_are_skipped_with_one_warning_each(synth_root, tmp_path):
    root = tmp_path / "ravdess"
    shutil.copytree(synth_root / "ravdess", root)
    good = sorted(root.rglob("*.mp4"))[0]
    truncated = root / "Actor_01" / "01-01-08-02-02-02-01.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    empty = root / "Actor_01" / "01-01-08-02-02-01-01.mp4"
    empty.write_bytes(b"")
    silent = root / "Actor_02" / "01-01-08-02-01-01-02.mp4"
    _write_video(silent, with_audio=False)
    misnamed = root / "Actor_02" / "my holiday.mp4"
    shutil.copy(good, misnamed)
    (root / "Actor_02" / "02-01-03-01-01-01-02.mp4").write_bytes(good.read_bytes())  # video-only modality
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        summary = prepare_dataset("ravdess", root, tmp_path / "cache", CFG, progress=False)
    messages = [str(w.message) for w in record if issubclass(w.category, SkippedClipWarning)]
    assert len(messages) == 4
    for bad in (truncated, empty, silent, misnamed):
        hits = [m for m in messages if str(bad) in m]
        assert len(hits) == 1 and "\n" not in hits[0]
    assert any("no audio track" in m for m in messages if str(silent) in m)
    assert any("empty file" in m for m in messages if str(empty) in m)
    assert summary.clips == 8 and len(summary.skipped) == 4
    assert summary.left_out == {"not audio-video (modality 02/03)": 1}
    assert len(ClipDataset(tmp_path / "cache")) == 8


def test_folder_without_usable_clips_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=f"no usable ravdess clip found in {tmp_path}"):
        scan_dataset("ravdess", tmp_path)
    (tmp_path / "Actor_01").mkdir()
    (tmp_path / "Actor_01" / "01-01-01-01-01-01-01.mp4").write_bytes(b"not a video at all")
    with pytest.warns(SkippedClipWarning), pytest.raises(ValueError, match=f"no usable ravdess clip in {tmp_path}"):
        prepare_dataset("ravdess", tmp_path, tmp_path / "cache", CFG, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_dataset("ravdess", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="VideoFlash"):
        scan_dataset("cremad", tmp_path)
    with pytest.raises(MediaError, match="empty file"):
        (tmp_path / "zero.mp4").write_bytes(b"")
        preprocess_clip(tmp_path / "zero.mp4", CFG)


def test_corrupt_cache_entry_is_rebuilt(synth_root, tmp_path):
    prepare_dataset("cremad", synth_root / "cremad", tmp_path, CFG, progress=False)
    ds = ClipDataset(tmp_path)
    reference = ds[3]
    file = tmp_path / ds.entries[3]["file"]
    file.write_bytes(b"garbage")
    with pytest.warns(SkippedClipWarning, match="rebuilding"):
        rebuilt = ds[3]
    assert torch.equal(rebuilt["video"], reference["video"]) and torch.equal(rebuilt["audio"], reference["audio"])
    file.write_bytes(file.read_bytes()[:100])
    with pytest.warns(SkippedClipWarning, match="rebuilding corrupt cache file"):
        summary = prepare_dataset("cremad", synth_root / "cremad", tmp_path, CFG, progress=False)
    assert (summary.rebuilt, summary.decoded, summary.cached) == (1, 1, 7)
    # a changed source file gets a new key (decoded again); a new config too
    other = PrepareConfig(num_frames=6, num_windows=5, image_size=32)
    assert other.hash() != CFG.hash()
    prepare_dataset("cremad", synth_root / "cremad", tmp_path, other, progress=False)
    with pytest.raises(ValueError, match="several configs"):
        ClipDataset(tmp_path)
    assert ClipDataset(tmp_path, config=other)[0]["video"].shape == (6, 3, 32, 32)


def test_iemocap_other_labels_are_left_out(synth_root, tmp_path):
    root = tmp_path / "iemocap"
    shutil.copytree(synth_root / "iemocap", root)
    txt = next((root / "Session1" / "dialog" / "EmoEvaluation").glob("*.txt"))
    dialog = txt.stem
    txt.write_text(txt.read_text() + f"[6.0000 - 6.5000]\t{dialog}_F009\tfru\t[2.0000, 2.0000, 2.0000]\n"
                   f"[7.0000 - 7.5000]\t{dialog}_F010\tneu\t[2.0000, 2.0000, 2.0000]\n")
    with pytest.warns(SkippedClipWarning, match="F010.wav: sentence audio missing"):
        scan = scan_dataset("iemocap", root)
    assert len(scan.sources) == 8 and sum(scan.left_out.values()) == 1


def test_config_validation_and_face_crop():
    with pytest.raises(ValueError, match="audio_feature"):
        PrepareConfig(audio_feature="wav2vec")
    with pytest.raises(ValueError, match="colormap"):
        PrepareConfig(colormap="nope")
    with pytest.raises(ValueError, match="frame_sampling"):
        PrepareConfig(frame_sampling="random")
    assert PrepareConfig.from_dict(CFG.to_dict()) == CFG
    try:
        import cv2  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="needs OpenCV"):
            prepare_dataset("ravdess", "/nonexistent", "/tmp/unused", PrepareConfig(crop="face"))


def test_stride_sampling(tmp_path):
    video = tmp_path / "clip.mp4"
    _write_video(video, 1.0)
    out = preprocess_clip(video, PrepareConfig(num_frames=5, num_windows=4, image_size=32, frame_sampling="stride",
                                               frame_stride=3))
    assert np.allclose(out["frame_times"], np.arange(5) * 3 / 25)
    grey = out["video"][:, 0, 16, 16].astype(int)
    assert np.all(np.abs(grey - (np.arange(5) * 3 * 7)) <= 4)  # frame i has grey level 7 i


@pytest.mark.slow
def test_worker_processes(synth_root, tmp_path):
    summary = prepare_dataset("cremad", synth_root / "cremad", tmp_path, CFG, workers=2, progress=False)
    assert (summary.clips, summary.decoded) == (8, 8)
    serial = prepare_dataset("cremad", synth_root / "cremad", tmp_path / "serial", CFG, progress=False)
    a, b = ClipDataset(tmp_path), ClipDataset(tmp_path / "serial")
    assert all(torch.equal(a[i]["audio"], b[i]["audio"]) for i in range(len(a)))
    assert serial.decoded == 8
