"""The model CLI (train, evaluate, cv, predict, pretrain) through the dataset seam, on a planted fake set."""

import json
import sys
import types

import pandas as pd
import pytest
from typer.testing import CliRunner

from _mm_fakes import PlantedClips
from multimae_der.cli import app
from multimae_der.cli import model as cli_model
from multimae_der.cv import check_folds, summarize, to_markdown

FAST = ["--model", "tiny", "--image-size", "32", "--batch-size", "8", "--no-progress"]


@pytest.fixture
def fake_data(monkeypatch):
    data = PlantedClips(24)
    calls = {}

    def build_dataset(dataset, root, cache, config):
        calls["dataset"] = (dataset, str(root), config)
        return data

    def build_folds(dataset, ds, config):
        idx = list(range(len(ds)))
        return [(idx[12:], idx[:12]), (idx[:12], idx[12:])]

    monkeypatch.setattr(cli_model, "build_dataset", build_dataset)
    monkeypatch.setattr(cli_model, "build_folds", build_folds)
    return data, calls


def invoke(*args):
    result = CliRunner().invoke(app, list(args))
    return result


def test_summary_table_layout():
    rows = pd.DataFrame({"strategy": ["video", "fslf", "fslf", "rfas", "rfas"], "fold": [0, 0, 1, 0, 1],
                         "uar": [0.5, 0.8, 0.9, 0.6, 0.6], "war": [0.5, 0.7, 0.9, 0.6, 0.8], "n_test": [10] * 5})
    table = summarize(rows)
    assert table["strategy"].tolist() == ["rfas", "fslf", "video"]  # the paper's order
    fslf = table.set_index("strategy").loc["fslf"]
    assert fslf.uar_mean == pytest.approx(85.0) and fslf.war_std == pytest.approx(14.142, abs=1e-3)
    md = to_markdown(table)
    assert "| FSLF | 85.00 ± 7.07 | 80.00 ± 14.14 | 2 |" in md and "| video only | 50.00 | 50.00 | 1 |" in md
    with pytest.raises(ValueError, match="both train and test"):
        check_folds([([0, 1], [1, 2])], 3)


@pytest.mark.slow
def test_cli_train_evaluate_predict_cv_pretrain(tmp_path, fake_data, monkeypatch):
    data, calls = fake_data
    run = tmp_path / "run"
    r = invoke("train", "ravdess", str(tmp_path), "--run", str(run), "--epochs", "1", "--fusion", "ofos", *FAST)
    assert r.exit_code == 0, r.output
    assert calls["dataset"][0] == "ravdess" and calls["dataset"][2]["image_size"] == 32
    assert json.loads((run / "config.json").read_text())["fusion"]["strategy"] == "ofos"

    r = invoke("evaluate", str(run), "ravdess", str(tmp_path), "--fold", "0", "--no-progress")
    assert r.exit_code == 0, r.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 12 and "UAR" in r.output

    clip = data[0]
    monkeypatch.setitem(sys.modules, "multimae_der.prepare", types.SimpleNamespace(
        preprocess_clip=lambda path, config: {"video": clip["video"], "audio": clip["audio"]}))
    video = tmp_path / "a.mp4"
    video.write_bytes(b"")
    r = invoke("predict", str(run), str(video), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["emotion"] in data.class_names and sum(out["probabilities"].values()) == pytest.approx(1.0)

    r = invoke("predict", str(tmp_path / "nope"), str(video))
    assert r.exit_code == 1 and "not a run folder" in r.output

    cv_dir = tmp_path / "cv"
    r = invoke("cv", "ravdess", str(tmp_path), "--out", str(cv_dir), "--strategies", "fslf,audio", "--epochs", "1",
               *FAST)
    assert r.exit_code == 0, r.output
    for name in ("results.csv", "results.md", "results.png", "folds.csv", "fslf/fold_1/metrics.json"):
        assert (cv_dir / name).is_file(), name
    table = pd.read_csv(cv_dir / "results.csv")
    assert table["strategy"].tolist() == ["fslf", "audio"] and (table["folds"] == 2).all()
    assert len(pd.read_csv(cv_dir / "folds.csv")) == 4

    pre = tmp_path / "pre"
    r = invoke("pretrain", "ravdess", str(tmp_path), "--run", str(pre), "--epochs", "1", *FAST)
    assert r.exit_code == 0, r.output
    r = invoke("train", "ravdess", str(tmp_path), "--run", str(tmp_path / "ft"), "--epochs", "1",
               "--init-from", str(pre), "--holdout-fold", "1", *FAST)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ft" / "checkpoints" / "best.ckpt").is_file()

    r = invoke("train", "ravdess", str(tmp_path), "--run", str(tmp_path / "x"), "--fusion", "bogus", *FAST)
    assert r.exit_code == 1 and "unknown fusion strategy" in r.output
