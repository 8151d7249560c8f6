"""The web app's pure functions (prediction + explanation, upload checks, faithfulness table, example clips),
its CLI command and its launch settings (local only, no analytics, nothing fetched from the internet)."""

import json
import os
import shutil
import socket
import sys
import urllib.request

import pytest
import torch
from _mm_cue_fakes import CueClips
from _mm_serve_helpers import (
    NetworkGuard,
    audio_only,
    free_port,
    make_run_and_clips,
    require_gradio,
    video_without_audio,
)

from multimae_der.app.analysis import (
    SERVE_EXPLAINERS,
    Limits,
    UploadError,
    analyze,
    check_upload,
    user_message,
)
from multimae_der.app.faithfulness_view import (
    faithfulness_candidates,
    faithfulness_markdown,
    load_faithfulness,
)
from multimae_der.app.serve import find_examples, training_clips
from multimae_der.explain.faithfulness import emotion_benchmark, model_digest
from multimae_der.model.predict import predict_file
from multimae_der.model.run import Run, load_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    run_dir, clips = make_run_and_clips(root)
    return load_run(run_dir), clips


def test_analysis_matches_the_python_api(tiny):
    run, clips = tiny
    res = analyze(run, clips[0], "saliency", size=64)
    expected = predict_file(run, clips[0])
    assert res.prediction.emotion == expected.emotion and res.prediction.label == expected.label
    probs = res.prediction.probabilities
    assert list(probs) == run.class_names
    assert probs == pytest.approx(expected.probabilities, abs=1e-6)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5) and all(0 <= p <= 1 for p in probs.values())
    assert res.explanation.predicted == res.prediction.label  # the explanation is of the shown class
    share = res.share
    assert set(share) == {"video", "audio"} and all(0.0 <= v <= 1.0 for v in share.values())
    assert sum(share.values()) == pytest.approx(1.0)
    # FSLF with 16 fused frames uses 8 video frames and 8 audio windows: 8 steps, each video | gap | audio
    assert len(res.steps) == len(res.captions) == 8 == len(res.explanation.used["video"])
    for img in res.steps:
        assert img.dtype.name == "uint8" and img.shape == (64, 64 + 2 + 64, 3)
    assert res.captions[0].startswith("step 1/8: video frame ") and " s)" in res.captions[0]
    assert res.explanation.gt_overlap  # SynthAV's ground truth beside the clip was found and scored


def test_every_offered_explainer_explains_the_clip(tiny):
    run, clips = tiny
    shares = {}
    for name in SERVE_EXPLAINERS:
        res = analyze(run, clips[1], name, size=32)
        assert res.explanation.explainer == name and len(res.steps) == 8
        assert all(0.0 <= v <= 1.0 for v in res.share.values())
        shares[name] = res.share
    assert shares["vit_gradcam"]["video"] != pytest.approx(shares["saliency"]["video"])  # they differ
    with pytest.raises(ValueError, match="unknown explainer 'lime'"):
        analyze(run, clips[0], "lime")


def test_bad_uploads_get_a_clear_message(tiny, tmp_path):
    run, clips = tiny
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    image = tmp_path / "face.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 10, 10)).save(image)
    cases = {
        None: "No clip given",
        tmp_path / "gone.mp4": "gone.mp4: file not found",
        empty: "empty.mp4 is empty (0 bytes)",
        text: "notes.mp4 is not a video file",
        image: "face.png is not a video: it holds no video stream",
        audio_only(tmp_path / "voice.wav"): "voice.wav is an audio file: it holds no video stream",
        video_without_audio(tmp_path / "silent.mp4"): "silent.mp4 has no audio track",
    }
    for path, message in cases.items():
        with pytest.raises(UploadError) as err:
            check_upload(path)
        assert message in str(err.value)
        assert user_message(err.value) == str(err.value)
        with pytest.raises(UploadError, match="^" + message.split(":")[0].split(" is")[0]):
            analyze(run, path, "saliency")  # the whole step refuses it before any decoding
    size_mb = clips[0].stat().st_size / 1e6
    with pytest.raises(UploadError, match=rf"is {size_mb:.1f} MB; this server accepts clips up to 0.001 MB"):
        check_upload(clips[0], Limits(max_mb=0.001))
    with pytest.raises(UploadError, match=r"lasts 1\.0 s; this server accepts clips up to 0.5 s"):
        analyze(run, clips[0], "saliency", Limits(max_seconds=0.5))
    info = check_upload(clips[0], Limits(max_mb=1, max_seconds=1.5))
    assert info.duration == pytest.approx(1.0, abs=0.1) and info.size_mb == pytest.approx(size_mb)
    with pytest.raises(ValueError, match="limits must be positive"):
        Limits(max_mb=0)
    assert user_message(RuntimeError("CUDA internals at 0x7f")) == \
        "The analysis failed (RuntimeError); see the server log for details."


def test_faithfulness_results_of_this_model_only(tiny, tmp_path):
    run, _ = tiny
    none = load_faithfulness(run)
    assert none.folder is None and not none.rows
    assert "No F-Fidelity results were computed" in none.note
    assert f"multimae-der faithfulness --run {run.path} --out {run.path / 'faithfulness'} --quick" in none.note
    assert faithfulness_markdown(none, "saliency") == none.note  # no table, no made-up numbers

    out = tmp_path / "ffid"
    emotion_benchmark(run, CueClips(8), out, quick=True, n_test=2, n_train=4, n_samples=1, explainers=("saliency",),
                      sparsities=(0.3, 0.7), noises=(0.0, 1.0))
    saved = json.loads((out / "results.json").read_text())
    view = load_faithfulness(run, out)
    assert view.folder == out and view.explainers() == ["saliency", "random"]
    expected = {(r["explainer"], r["method"]): (r["morf_area"], r["lerf_area"]) for r in saved["baseline"]}
    got = {(r["explainer"], r["method"]): (r["morf_area"], r["lerf_area"]) for r in view.rows}
    assert got == expected and ("saliency", "ffid") in got
    table = faithfulness_markdown(view, "saliency")
    assert "| **saliency** (shown) |" in table and "F-Fidelity+ area" in table and "Fidelity- area" in table
    ffid_plus = f"{got[('saliency', 'ffid')][0]:.3g}"
    assert f"| **saliency** (shown) | {ffid_plus} |" in table  # the file's number, F-Fid+ first
    assert "**occlusion** was not among the evaluated explainers" in faithfulness_markdown(view, "occlusion")
    # the default place (RUN/faithfulness) is found; another model's results are refused
    shutil.copytree(out, run.path / "faithfulness")
    assert load_faithfulness(run).folder == run.path / "faithfulness"
    other = load_faithfulness(run, out, digest="0" * 40)
    assert other.folder is None and "holds results of another model" in other.note
    assert model_digest(run) == json.loads((out / "models/original/source.json").read_text())["sha1"]
    shutil.rmtree(run.path / "faithfulness")
    empty = load_faithfulness(run, tmp_path)
    assert empty.folder is None and "holds no results.json" in empty.note
    # the demo evaluates <out>/emotion/runs/fslf into <out>/explain/faithfulness
    demo_run = tmp_path / "demo" / "emotion" / "runs" / "fslf"
    assert tmp_path / "demo" / "explain" / "faithfulness" in faithfulness_candidates(demo_run)


def test_example_clips(tiny, tmp_path):
    run, clips = tiny
    folder = clips[0].parent.parent
    assert find_examples(run, folder) == clips
    assert find_examples(run, folder, limit=1) == clips[:1]
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        find_examples(run, tmp_path / "nope")
    with pytest.raises(ValueError, match="holds no video"):
        find_examples(run, tmp_path)
    assert find_examples(run) == []  # nothing shipped with this run, no data folder recorded
    with_data = Run(run.path, run.model, {**run.config, "data": {"root": str(folder)}})
    assert find_examples(with_data) == clips  # the data folder the run was trained on (the demo's SynthAV)
    trained_first = Run(run.path, run.model, {**run.config, "data": {"root": str(folder),
                                                                      "train_clips": [clips[0].stem]}})
    assert training_clips(trained_first) == {clips[0].stem}
    assert find_examples(trained_first) == [*clips[1:], clips[0]]  # held-out clips are offered first
    shipped = run.path / "examples"
    shipped.mkdir()
    try:
        shutil.copy(clips[1], shipped / "happy.mp4")
        assert find_examples(run) == [shipped / "happy.mp4"]
    finally:
        shutil.rmtree(shipped)


def test_cli_serve_options_and_errors(tiny, monkeypatch, tmp_path):
    require_gradio()
    from typer.testing import CliRunner

    from multimae_der.app import serve as serve_mod
    from multimae_der.cli import app

    run, _ = tiny
    seen = {}

    def fake_serve(run_dir, **kw):
        seen.update(kw, run=run_dir)
        return None, "http://127.0.0.1:1/"

    monkeypatch.setattr(serve_mod, "serve", fake_serve)
    r = CliRunner().invoke(app, ["serve", "--run", str(run.path), "--max-mb", "5"])
    assert r.exit_code == 0, r.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 7860 and seen["limits"] == Limits(5.0, 30.0)
    assert seen["run"] == run.path and seen["examples"] is None and seen["explainer"] == "saliency"
    monkeypatch.undo()
    r = CliRunner().invoke(app, ["serve", "--run", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "is not a run folder" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["serve", "--run", str(run.path), "--port", "0"])
    assert r.exit_code == 1 and "--port must be in 1..65535" in r.output
    r = CliRunner().invoke(app, ["serve", "--run", str(run.path), "--examples", str(tmp_path / "none")])
    assert r.exit_code == 1 and "--examples" in r.output and "is not a folder" in r.output
    r = CliRunner().invoke(app, ["serve", "--run", str(run.path), "--faithfulness", str(tmp_path / "none")])
    assert r.exit_code == 1 and "--faithfulness" in r.output and "is not a folder" in r.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(app, ["serve", "--run", str(run.path), "--port", str(port)])
    assert r.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}: the port is in use" in r.output
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if gradio were not installed
    r = CliRunner().invoke(app, ["serve", "--run", str(run.path)])
    assert r.exit_code == 1 and "pip install 'multimae-der[serve]'" in r.output


def test_launch_is_local_quiet_and_offline(tiny, monkeypatch, tmp_path):
    require_gradio()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    from multimae_der.app.serve import build_app, launch

    run, clips = tiny
    guard = NetworkGuard(monkeypatch)
    demo = build_app(run, examples=clips)
    try:
        url = launch(demo, port=free_port(), allowed=clips, block=False, quiet=True)
        assert url.startswith("http://127.0.0.1:")
        assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and demo.analytics_enabled is False
        assert demo.share is False and demo.server_name == "127.0.0.1"
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        config = urllib.request.urlopen(url + "config", timeout=30).read().decode()
    finally:
        demo.close()
    assert "Emotion, why, and how faithful" in config and "saliency" in config
    for remote in ("fonts.googleapis.com", "fonts.gstatic.com", "cdn.jsdelivr.net", "cdnjs"):
        assert remote not in page and remote not in config
    assert guard.attempts == []  # nothing in this process tried to reach the internet
    assert torch.get_num_threads() >= 1
