"""``multimae-der explain`` and ``multimae-der faithfulness`` through the dataset seam, and on a video file."""

import json

import pytest
from _mm_cue_fakes import CueClips, write_run
from typer.testing import CliRunner

from multimae_der.cli import app
from multimae_der.cli import model as cli_model


@pytest.fixture
def seam(monkeypatch):
    data = CueClips(16)
    calls = {}

    def build_dataset(dataset, root, cache, config, label_set, workers=1, progress=True, in_memory=False):
        calls["args"] = (dataset, str(root), config)
        return data

    def build_folds(dataset, ds, num_folds, seed):
        idx = list(range(len(ds)))
        return [(idx[4:], idx[:4]), (idx[:12], idx[12:])]

    monkeypatch.setattr(cli_model, "build_dataset", build_dataset)
    monkeypatch.setattr(cli_model, "build_folds", build_folds)
    return calls


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_explain_on_a_dataset(tmp_path, seam):
    run = write_run(tmp_path / "run", fusion="cfas")
    out = tmp_path / "expl"
    r = invoke("explain", "--run", run, "--dataset", "ravdess", "--root", tmp_path, "--fold", 2, "--limit", 2,
               "--explainers", "saliency,gradcam", "--no-gif", "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output
    assert seam["args"][2]["image_size"] == 32  # the run's preprocessing
    saved = json.loads((out / "explanations.json").read_text())
    assert [c["index"] for c in saved["clips"]] == [12, 13]  # fold 2's test clips (folds count from 1)
    assert saved["fusion"] == "cfas" and "report: " in r.output and "V" in r.output
    assert not list(out.glob("clip_*/*.gif"))
    bad = invoke("explain", "--run", run, "--dataset", "ravdess", "--root", tmp_path, "--explainers", "lime",
                 "--out", out)
    assert bad.exit_code == 1 and "unknown explainer 'lime'" in bad.output
    none = invoke("explain", "--run", run, "--out", out)
    assert none.exit_code == 1 and "does not record its data set" in none.output


def test_cli_explain_a_video_file(tmp_path):
    from multimae_der.data.synthav import synthesize

    synthesize(tmp_path / "synth", "ravdess", actors=1, clips_per_actor=1, duration=1.0, size=32, seed=1)
    video = next((tmp_path / "synth").rglob("*.mp4"))
    run = write_run(tmp_path / "run", fusion="fslf")
    out = tmp_path / "expl"
    r = invoke("explain", video, "--run", run, "--explainers", "saliency", "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output
    clip = json.loads((out / "explanations.json").read_text())["clips"][0]
    assert clip["path"] == str(video)
    assert "gt_overlap" in clip["explanations"]["saliency"]  # SynthAV's ground truth found beside the video
    assert (out / clip["explanations"]["saliency"]["files"]["gif"]).exists()
    missing = invoke("explain", tmp_path / "nope.mp4", "--run", run, "--out", out)
    assert missing.exit_code == 1 and "does not exist" in missing.output


@pytest.mark.slow
def test_cli_faithfulness_quick(tmp_path, seam):
    run = write_run(tmp_path / "run", fusion="fslf")
    out = tmp_path / "ffid"
    r = invoke("faithfulness", "--run", run, "--dataset", "ravdess", "--root", tmp_path, "--fold", 1, "--out", out,
               "--quick",
               "--n-test", 4, "--n-train", 4, "--n-samples", 1, "--explainers", "saliency,random", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "F-Fidelity" in r.output and "true explanation beats" in r.output
    saved = json.loads((out / "emotion.json").read_text())
    assert saved["task"]["test_indices"] == [0, 1, 2, 3]  # fold 1's test clips
    assert (out / "report.html").exists() and (out / "emotion.html").exists()


def test_cli_refuses_clips_the_run_trained_on(tmp_path, seam):
    """A run that records its held-out actors: by default only their clips are scored; a fold holding the
    training actors' clips is refused in one line, and accepted with --allow-train-clips."""
    run = write_run(tmp_path / "run", fusion="fslf")
    cfg_file = run / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["data"] = {"held_out_actors": ["03"]}
    cfg_file.write_text(json.dumps(cfg))
    out = tmp_path / "expl"
    r = invoke("explain", "--run", run, "--dataset", "ravdess", "--root", tmp_path, "--limit", 2,
               "--explainers", "saliency", "--no-gif", "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "explanations.json").read_text())
    assert [c["index"] for c in saved["clips"]] == [3, 7]  # actor 03's clips (CueClips: actor = index % 4)
    bad = invoke("faithfulness", "--run", run, "--dataset", "ravdess", "--root", tmp_path, "--fold", 1,
                 "--out", tmp_path / "ffid", "--quick", "--n-test", 4, "--no-progress")
    assert bad.exit_code == 1 and "used to train this run" in bad.output and "--allow-train-clips" in bad.output
    assert "Traceback" not in bad.output
    bad = invoke("explain", "--run", run, "--dataset", "ravdess", "--root", tmp_path, "--indices", "0,3",
                 "--explainers", "saliency", "--no-gif", "--out", out)
    assert bad.exit_code == 1 and "1 of the 2 clips" in bad.output
    ok = invoke("explain", "--run", run, "--dataset", "ravdess", "--root", tmp_path, "--indices", "0,3",
                "--explainers", "saliency", "--no-gif", "--out", out, "--allow-train-clips", "--no-progress")
    assert ok.exit_code == 0, ok.output
