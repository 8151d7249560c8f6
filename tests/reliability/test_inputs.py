"""The bad-input corpus: odd media, odd audio formats, broken data sets, bad parameters, foreign checkpoints and
planted pickles. Each gives a usable result, a one-line skip warning, or one clear error (exit code 1 on the
CLI, no traceback, no partial output). Cases already covered elsewhere (truncated and zero-byte mp4, video
without audio, stereo, NaN attributions, ...) are not repeated here.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from _mm_fakes import PlantedClips
from torch import nn
from typer.testing import CliRunner

from ffidelity.cli import app as ffidelity_app
from ffidelity.data.timeseries import boiler, pam
from ffidelity.metrics.engine import FFidelity, Fidelity, RFidelity
from ffidelity.models.training import CorruptFileWarning, fit_classifier, resume_checkpoint
from multimae_der.cli import app as mm_app
from multimae_der.cli import model as cli_model
from multimae_der.data.media import MediaError, read_audio
from multimae_der.data.prepare import PrepareConfig, preprocess_clip
from multimae_der.data.sources import SkippedClipWarning, scan_dataset

CFG = PrepareConfig(num_frames=4, num_windows=4, image_size=16)
RED, GREEN = (220, 20, 20), (20, 220, 20)


# -- media made on the fly ---------------------------------------------------------------------------------------
def write_media(path: Path, *, frames: int = 10, width: int = 32, height: int = 32, audio_s: float = 1.0,
                video: bool = True, audio: bool = True, codec: str = "libx264", pix_fmt: str = "yuv420p",
                paint=None) -> Path:
    """A tiny clip: ``frames`` frames at 25 fps (``paint(i) -> (H, W, 3)``, default grey ramps) and a 16 kHz
    440 Hz tone of ``audio_s`` seconds."""
    with av.open(str(path), "w") as c:
        if video:
            vs = c.add_stream(codec, rate=25)
            vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
        if audio:
            a_s = c.add_stream("aac", rate=16000, layout="mono")
        if video:
            for i in range(frames):
                img = paint(i) if paint else np.full((height, width, 3), 40 + 15 * i, np.uint8)
                for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in vs.encode():
                c.mux(p)
        if audio:
            n = int(audio_s * 16000)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, 0
            for p in a_s.encode(frame):
                c.mux(p)
            for p in a_s.encode():
                c.mux(p)
    return path


def _bordered(height: int, width: int):
    """Red everywhere except the centred square, which is green: a correct crop sees only green."""
    side = min(height, width)
    left, top = (width - side) // 2, (height - side) // 2

    def paint(i: int) -> np.ndarray:
        img = np.empty((height, width, 3), np.uint8)
        img[:] = RED
        img[top:top + side, left:left + side] = GREEN
        return img

    return paint


def test_one_frame_video_repeats_its_only_frame(tmp_path):
    clip = write_media(tmp_path / "one.mp4", frames=1, paint=lambda i: np.full((32, 32, 3), 150, np.uint8))
    out = preprocess_clip(clip, CFG)
    assert out["video"].shape == (4, 3, 16, 16)
    assert np.abs(out["video"].astype(int) - 150).max() <= 3  # every sample is the one frame
    assert out["audio"].shape == (4, 3, 16, 16) and out["audio_duration"] == pytest.approx(1.0)


@pytest.mark.parametrize(("name", "width", "height", "codec", "pix_fmt"), [
    ("odd.mkv", 17, 13, "ffv1", "yuv444p"),  # odd sizes: H.264 4:2:0 cannot hold them, FFV1 can
    ("portrait.mp4", 32, 48, "libx264", "yuv444p"),
])
def test_odd_and_portrait_frames_take_the_centred_square(tmp_path, name, width, height, codec, pix_fmt):
    clip = write_media(tmp_path / name, width=width, height=height, codec=codec, pix_fmt=pix_fmt,
                       paint=_bordered(height, width))
    out = preprocess_clip(clip, CFG)
    rgb = out["video"].transpose(0, 2, 3, 1).reshape(-1, 3).astype(int)
    inner = out["video"][:, :, 3:-3, 3:-3].transpose(0, 2, 3, 1).reshape(-1, 3).astype(int)
    assert (inner[:, 1] > 150).all() and (inner[:, 0] < 90).all()  # only the green centre was kept
    assert rgb[:, 1].mean() > 150
    # 10 frames at 25 fps, whatever the container says about its (longer) audio track
    assert out["video_duration"] == pytest.approx(0.4, abs=0.05)


def test_audio_only_file_and_too_short_audio(tmp_path):
    audio_only = write_media(tmp_path / "audio_only.mp4", video=False)
    with pytest.raises(MediaError, match=r"audio_only\.mp4: no video stream"):
        preprocess_clip(audio_only, CFG)
    short = write_media(tmp_path / "short.mp4", audio_s=0.001)
    with pytest.raises(MediaError, match=r"short\.mp4: audio too short \(\d+ samples\) for 4 windows"):
        preprocess_clip(short, CFG)


# -- audio formats ------------------------------------------------------------------------------------------------
def _tone(rate: float, seconds: float = 0.5, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)


@pytest.mark.parametrize(("subtype", "tol"), [("PCM_U8", 1 / 64), ("PCM_16", 1e-4), ("PCM_24", 1e-6),
                                              ("FLOAT", 1e-6), ("DOUBLE", 1e-6)])
def test_wav_sample_formats_decode_to_the_same_signal(tmp_path, subtype, tol):
    path = tmp_path / f"{subtype}.wav"
    tone = _tone(16000)
    sf.write(str(path), tone, 16000, subtype=subtype)
    mono = read_audio(path, 16000)
    assert mono.dtype == np.float32 and len(mono) == len(tone)
    assert np.abs(mono - tone).max() < tol


def test_five_one_channels_are_averaged(tmp_path):
    tone = _tone(16000)
    six = np.zeros((len(tone), 6))
    six[:, 0], six[:, 4] = tone, 0.5 * tone  # front-left and a surround channel; the others silent
    sf.write(str(tmp_path / "surround.wav"), six, 16000, subtype="FLOAT")
    assert np.allclose(read_audio(tmp_path / "surround.wav", 16000), 1.5 * tone / 6, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 96000])
def test_sample_rates_are_resampled_keeping_the_pitch(tmp_path, rate):
    sf.write(str(tmp_path / "tone.wav"), _tone(rate), rate, subtype="PCM_16")
    mono = read_audio(tmp_path / "tone.wav", 16000)
    assert len(mono) == 8000  # 0.5 s at 16 kHz
    spectrum = np.abs(np.fft.rfft(mono))
    assert np.fft.rfftfreq(len(mono), 1 / 16000)[spectrum.argmax()] == pytest.approx(440, abs=2)
    assert 0.4 < np.abs(mono[500:-500]).max() < 0.6


# -- broken data sets through the CLI ------------------------------------------------------------------------------
def _lines(output: str) -> list[str]:
    return [ln for ln in output.strip().splitlines() if ln.strip()]


def test_prepare_skips_each_bad_file_with_one_line_and_writes_nothing_for_it(tmp_path):
    root, cache = tmp_path / "ravdess", tmp_path / "cache"
    actor = root / "Actor_01"
    actor.mkdir(parents=True)
    good = [write_media(actor / f"01-01-0{e}-01-01-01-01.mp4") for e in (3, 4)]
    bad = {
        actor / "01-01-05-01-01-01-01.mp4": "cannot be opened as media",  # a text file named .mp4
        actor / "01-01-06-01-01-01-01.mp4": "no video stream",  # audio without video
        actor / "01-01-07-01-01-01-01.mp4": "cannot be read",  # unreadable: a link to nothing
        actor / "01-01-03-02-01-01-01.mp4": "audio too short",
        actor / "01-01-09-01-01-01-01.mp4": "emotion",  # a wrong RAVDESS name (emotion 09)
    }
    names = list(bad)
    names[0].write_text("this is not a video\n")
    write_media(names[1], video=False)
    os.symlink(tmp_path / "nowhere.mp4", names[2])
    write_media(names[3], audio_s=0.001)
    shutil.copy(good[0], names[4])
    if os.geteuid() != 0:  # root reads any file, so a permission-less file is unreadable only for others
        locked = actor / "01-01-08-01-01-01-01.mp4"
        shutil.copy(good[0], locked)
        locked.chmod(0)
        bad[locked] = "Permission denied"
    args = ["prepare", "--dataset", "ravdess", "--root", str(root), "--cache", str(cache), "--frames", "4",
            "--windows", "4", "--image-size", "16"]
    r = CliRunner().invoke(mm_app, args)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    warns = [ln for ln in _lines(r.output) if ln.startswith("warning:")]
    assert len(warns) == len(bad), r.output
    for path, reason in bad.items():
        hits = [w for w in warns if path.name in w]
        assert len(hits) == 1 and reason in hits[0], (path.name, warns)
    assert "2 clips ready" in r.output and f"{len(bad)} skipped" in r.output
    cached = sorted(p.name.split("-")[2] for p in (cache / "clips").glob("*.npz"))
    assert cached == ["03", "04"]  # nothing was written for a skipped clip

    # only bad files: exit 1, one error line, no index
    for g in good:
        g.unlink()
    shutil.rmtree(cache)
    r = CliRunner().invoke(mm_app, args)
    assert r.exit_code == 1 and _lines(r.output)[-1].startswith("error: no usable ravdess clip"), r.output
    assert "Traceback" not in r.output and not list(cache.glob("index-*.json"))


def test_wrong_cremad_names_and_missing_wav_are_skipped(tmp_path):
    video, audio = tmp_path / "VideoFlash", tmp_path / "AudioWAV"
    video.mkdir()
    audio.mkdir()
    for stem in ("1001_DFA_ANG_XX", "1001_DFA_HAP_XX", "1001_dfa_ANG_XX", "1001_DFA_XYZ_XX", "1001_DFA_ANG_HII"):
        (video / f"{stem}.flv").write_bytes(b"flv")
        (audio / f"{stem}.wav").write_bytes(b"wav")
    (audio / "1001_DFA_HAP_XX.wav").unlink()
    with pytest.warns(SkippedClipWarning) as record:
        scan = scan_dataset("cremad", tmp_path)
    messages = [str(w.message) for w in record]
    assert [s.clip_id for s in scan.sources] == ["1001_DFA_ANG_XX"]
    assert len(messages) == 4 and all("\n" not in m for m in messages)
    assert any("1001_DFA_HAP_XX.flv" in m and "no audio" in m for m in messages)
    for stem in ("1001_dfa_ANG_XX", "1001_DFA_XYZ_XX", "1001_DFA_ANG_HII"):
        assert sum(stem in m for m in messages) == 1


def test_missing_iemocap_label_file_is_a_warning_then_a_clear_error(tmp_path):
    divx = tmp_path / "Session1" / "dialog" / "avi" / "DivX"
    divx.mkdir(parents=True)
    (divx / "Ses01F_impro01.avi").write_bytes(b"avi")
    with (pytest.warns(SkippedClipWarning, match=r"Ses01F_impro01\.avi: label file .*Ses01F_impro01\.txt is missing"),
          pytest.raises(ValueError, match="no usable iemocap clip")):
        scan_dataset("iemocap", tmp_path)
    r = CliRunner().invoke(mm_app, ["folds", "--dataset", "iemocap", "--root", str(tmp_path)])
    assert r.exit_code == 1 and "label file" in r.output and _lines(r.output)[-1].startswith("error:")


# -- bad parameters and bad models (what tests/ffidelity/metrics/test_engine.py does not already cover) ---------------------------
@pytest.mark.parametrize(("build", "match"), [
    (lambda: Fidelity(sparsities=[1.5]), "strictly between 0 and 1"),
    (lambda: Fidelity(sparsities=[-0.2]), "strictly between 0 and 1"),
    (lambda: Fidelity(sparsities=[float("nan")]), "strictly between 0 and 1"),
    (lambda: FFidelity(alpha_plus=-0.1), "alpha_plus"),
    (lambda: FFidelity(alpha_minus=1.5), "alpha_minus"),
    (lambda: FFidelity(n_samples=0), "n_samples"),
    (lambda: FFidelity(n_samples=2.5), "n_samples"),
    (lambda: FFidelity(beta=float("nan")), "beta"),
])
def test_more_bad_parameters(build, match):
    with pytest.raises(ValueError, match=match):
        build()


class NaNWhenMasked(nn.Module):
    """Fine on clean inputs, NaN logits as soon as a unit is removed (set to 0)."""

    def forward(self, x):
        s = x.flatten(1).sum(1)
        out = torch.stack([s, -s], 1)
        return torch.where((x.flatten(1) == 0).any(1, keepdim=True), torch.full_like(out, float("nan")), out)


@pytest.mark.parametrize("metric", [Fidelity(progress=False), RFidelity(n_samples=2, progress=False)])
def test_nan_logits_on_masked_inputs_and_inf_attributions(metric):
    x, attr = torch.ones(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    with pytest.raises(ValueError, match="NaN or inf logits on masked inputs"):
        metric.evaluate(NaNWhenMasked(), x, None, attr)
    attr[2, 0, 1, 1] = float("-inf")
    with pytest.raises(ValueError, match=r"NaN or inf values \(inputs \[2\]\)"):
        metric.evaluate(NaNWhenMasked(), x, None, attr)


@pytest.mark.parametrize(("args", "message"), [
    (["--alpha", "1.5"], "alpha_plus must lie in [0, 1]"),
    (["--n-samples", "0"], "n_samples must be a positive integer"),
    (["--seeds", "0"], "seeds must be >= 1"),
    (["--n-test", "0"], "n_test must be >= 1"),
    (["--mode", "loss"], "mode"),
    (["--epochs", "0"], "epochs must be >= 1"),
])
def test_benchmark_bad_values_exit_1_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    r = CliRunner().invoke(ffidelity_app, ["benchmark", "--out", str(out), "--quick", *args])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, r.output
    assert _lines(r.output)[-1].startswith("error:") and not out.exists()


# -- foreign checkpoints, damaged checkpoints, planted pickles ----------------------------------------------------
class CreatesFile:
    """Unpickling this object creates ``path``: a stand-in for any code a planted pickle would run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


FAST = ["--model", "tiny", "--image-size", "32", "--layers", "1", "--batch-size", "8", "--epochs", "1",
        "--no-progress", "--dataset", "ravdess"]


@pytest.fixture
def fake_data(monkeypatch):
    data = PlantedClips(16)
    monkeypatch.setattr(cli_model, "build_dataset", lambda *a, **k: data)
    return data


def _train(root: Path, out: Path, *extra: str):
    return CliRunner().invoke(mm_app, ["train", "--root", str(root), "--out", str(out), *FAST, *extra])


def test_train_cli_refuses_planted_and_foreign_checkpoints_and_rebuilds_damaged_ones(tmp_path, fake_data):
    from multimae_der.model.convert import save_original_checkpoint
    from multimae_der.model.videomae import build_classifier, make_config

    run = tmp_path / "run"
    r = _train(tmp_path, run)
    assert r.exit_code == 0, r.output
    weights = (run / "model.safetensors").read_bytes()

    # a planted pickle in last.ckpt: one error line, nothing runs, nothing is overwritten
    marker = tmp_path / "pwned.txt"
    torch.save({"state_dict": {}, "payload": CreatesFile(marker)}, run / "checkpoints" / "last.ckpt")
    assert not marker.exists()
    r = _train(tmp_path, run)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert _lines(r.output)[-1].startswith("error:") and "objects other than tensors" in r.output
    assert not marker.exists() and (run / "model.safetensors").read_bytes() == weights

    # a damaged last.ckpt: set aside with a warning, training starts over and ends with the same weights
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
    with pytest.warns(CorruptFileWarning, match="last.ckpt is damaged"):
        r = _train(tmp_path, run)
    assert r.exit_code == 0, r.output
    assert (run / "checkpoints" / "last.ckpt.corrupt").is_file()
    assert (run / "model.safetensors").read_bytes() == weights

    # initial weights of another configuration: one error line, and no run folder is left behind
    other = tmp_path / "other.pth"
    save_original_checkpoint(build_classifier(make_config("tiny", num_labels=3, image_size=32, num_hidden_layers=2,
                                                          num_frames=4)), other)
    r = _train(tmp_path, tmp_path / "ft", "--init-from", str(other))
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert _lines(r.output)[-1].startswith("error:") and "other.pth" in r.output
    assert not (tmp_path / "ft").exists()

    # a run whose weights were replaced by another model's, or damaged: predict says so in one line
    for content in (other.read_bytes()[:200], b""):
        (run / "model.safetensors").write_bytes(content)
        video = write_media(tmp_path / "a.mp4")
        r = CliRunner().invoke(mm_app, ["predict", str(video), "--run", str(run)])
        assert r.exit_code == 1 and "model.safetensors" in r.output and "Traceback" not in r.output, r.output


def test_resume_checkpoint_helper(tmp_path):
    assert resume_checkpoint(tmp_path / "none.ckpt") is None
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, good)
    assert resume_checkpoint(good) == good


def test_fit_classifier_cache_planted_damaged_and_foreign(tmp_path):
    x, y = torch.randn(32, 4), torch.arange(32) % 2
    out = tmp_path / "fit"
    model = fit_classifier(nn.Linear(4, 2), (x, y), epochs=1, batch_size=8, out_dir=out, progress=False)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    (out / "model.safetensors").write_bytes(b"\x10\x00\x00\x00 not safetensors")  # damaged: retrained, warned
    with pytest.warns(CorruptFileWarning, match="model.safetensors is damaged"):
        again = fit_classifier(nn.Linear(4, 2), (x, y), epochs=1, batch_size=8, out_dir=out, progress=False)
    assert all(torch.equal(state[k], v) for k, v in again.state_dict().items())  # resumed from last.ckpt

    with pytest.raises(ValueError, match="does not fit the model"):  # another model's weights
        fit_classifier(nn.Linear(4, 3), (x, y), epochs=1, out_dir=out, progress=False)

    (out / "model.safetensors").unlink()
    marker = tmp_path / "pwned.txt"
    torch.save({"state_dict": {}, "payload": CreatesFile(marker)}, out / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match=r"last\.ckpt holds objects other than tensors"):
        fit_classifier(nn.Linear(4, 2), (x, y), epochs=1, out_dir=out, progress=False)
    assert not marker.exists()


def test_timex_files_with_planted_pickles_never_run(tmp_path):
    from timex_files import write_boiler, write_pam

    marker = tmp_path / "pwned.txt"
    write_pam(tmp_path / "pam" / "PAMAP2data")
    evil = np.empty(3, dtype=object)
    evil[0], evil[1], evil[2] = np.arange(3), CreatesFile(marker), np.arange(2)
    np.save(tmp_path / "pam" / "PAMAP2data" / "splits" / "PAMAP2_split_1.npy", evil, allow_pickle=True)
    with pytest.raises(ValueError, match=r"PAMAP2_split_1\.npy: not an array of index arrays"):
        pam(tmp_path / "pam")
    np.save(tmp_path / "pam" / "PAMAP2data" / "processed_data" / "PTdict_list.npy", evil, allow_pickle=True)
    with pytest.raises(ValueError, match=r"PTdict_list\.npy: holds Python objects"):
        pam(tmp_path / "pam")
    for name in ("xfull.pt", "split=1.pt"):
        write_boiler(tmp_path / "boiler")
        torch.save([torch.arange(3), CreatesFile(marker)], tmp_path / "boiler" / name)
        with pytest.raises(ValueError, match=rf"{name}: not a plain torch-saved tensor file"):
            boiler(tmp_path / "boiler")
    assert not marker.exists()


def test_benchmark_cache_entries_damaged_on_disk_are_rebuilt_with_a_warning(tmp_path):
    import ffidelity.benchmark.runner as bm
    from ffidelity.benchmark.tasks import get_task

    task = get_task("digits", quick=True)
    model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10)).eval()
    x, y = task.x_test[:4], task.y_test[:4]
    cfg = bm.BenchmarkConfig(sparsities=(0.25, 0.5), n_samples=2, progress=False)
    key = tmp_path / "curve.json"
    scores = bm._explanation_scores("saliency", model, x, y, task, tmp_path / "expl.safetensors", cfg)
    first = bm._curve(cfg, "fid", 0, model, x, y, scores, task, key, explainer="saliency", noise=0.0)
    for damage in ('{"fid_plus": [0.1', '{"seed": 0}'):
        key.write_text(damage)
        with pytest.warns(CorruptFileWarning, match="rebuilding damaged cache entry"):
            again = bm._curve(cfg, "fid", 0, model, x, y, scores, task, key, explainer="saliency", noise=0.0)
        stored = json.loads(key.read_text())
        assert again == first and stored.pop("params")["n_inputs"] == 4 and stored == first
    (tmp_path / "expl.safetensors").write_bytes(b"garbage")
    with pytest.warns(CorruptFileWarning, match="expl.safetensors"):
        rebuilt = bm._explanation_scores("saliency", model, x, y, task, tmp_path / "expl.safetensors", cfg)
    assert torch.equal(rebuilt, scores)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact entry is read back silently
        assert torch.equal(bm._explanation_scores("saliency", model, x, y, task, tmp_path / "expl.safetensors", cfg),
                           scores)
