"""``multimae-der synth | prepare | folds`` through typer's CliRunner."""

from __future__ import annotations

from typer.testing import CliRunner

from multimae_der.cli import app
from multimae_der.data.datasets import ClipDataset

runner = CliRunner()


def test_synth_prepare_folds(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "cache"
    r = runner.invoke(app, ["synth", "--out", str(root), "--format", "ravdess", "--actors", "4",
                            "--clips-per-actor", "2", "--duration", "0.8", "--size", "48", "--seed", "2"])
    assert r.exit_code == 0, r.output
    assert "wrote 8 ravdess clips (8 classes)" in r.output
    r = runner.invoke(app, ["prepare", "--dataset", "ravdess", "--root", str(root), "--cache", str(cache),
                            "--frames", "4", "--windows", "4", "--image-size", "32"])
    assert r.exit_code == 0, r.output
    assert "8 clips ready" in r.output and "8 decoded, 0 cached" in r.output
    r = runner.invoke(app, ["prepare", "--dataset", "ravdess", "--root", str(root), "--cache", str(cache),
                            "--frames", "4", "--windows", "4", "--image-size", "32"])
    assert "0 decoded, 8 cached" in r.output
    assert ClipDataset(cache)[0]["video"].shape == (4, 3, 32, 32)
    r = runner.invoke(app, ["folds", "--dataset", "ravdess", "--root", str(root), "--num-folds", "2"])
    assert r.exit_code == 0, r.output
    assert "actors 01-02" in r.output and "actors 03-04" in r.output and "ravdess folds (8 clips, 4 speakers)" in r.output
    (root / "Actor_01" / "bad name.mp4").write_bytes(b"x")
    r = runner.invoke(app, ["folds", "--dataset", "ravdess", "--root", str(root), "--num-folds", "2"])
    assert r.exit_code == 0 and "warning: skipped" in r.output and "bad name.mp4" in r.output


def test_bad_input_gives_one_line_errors(tmp_path):
    cases = [
        (["folds", "--dataset", "ravdess", "--root", str(tmp_path / "nope")], "does not exist"),
        (["folds", "--dataset", "afew", "--root", str(tmp_path)], "unknown dataset"),
        (["prepare", "--dataset", "ravdess", "--root", str(tmp_path), "--cache", str(tmp_path / "c")],
         "no usable ravdess clip"),
        (["prepare", "--dataset", "ravdess", "--root", str(tmp_path), "--cache", str(tmp_path / "c"),
          "--audio-feature", "wav"], "audio_feature must be one of"),
        (["synth", "--out", str(tmp_path / "s"), "--format", "afew"], "unknown format"),
        (["synth", "--out", str(tmp_path / "s"), "--format", "iemocap", "--actors", "12"], "at most 10 actors"),
        (["folds", "--dataset", "cremad", "--root", str(tmp_path)], "VideoFlash"),
    ]
    for args, message in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 1, (args, r.output)
        lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
        assert lines[-1].startswith("error:") and message in " ".join(lines), (args, r.output)
        assert "Traceback" not in r.output
