"""The model CLI (train, evaluate, cv, predict, pretrain) through the dataset seam, on a planted fake set."""

import json

import pandas as pd
import pytest
from _mm_fakes import PlantedClips
from typer.testing import CliRunner

from multimae_der.cli import app
from multimae_der.cli import model as cli_model
from multimae_der.model.cv import check_folds, summarize, to_markdown

FAST = ["--model", "tiny", "--image-size", "32", "--layers", "1", "--batch-size", "8", "--no-progress"]


@pytest.fixture
def fake_data(monkeypatch):
    data = PlantedClips(24)
    calls = {}

    def build_dataset(dataset, root, cache, config, label_set, workers=1, progress=True, in_memory=False):
        calls["dataset"] = (dataset, str(root), config, label_set)
        return data

    def build_folds(dataset, ds, num_folds, seed):
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
    r = invoke("train", "--dataset", "ravdess", "--root", str(tmp_path), "--out", str(run), "--epochs", "1",
               "--fusion", "ofos", "--fold", "1", "--labels", "ravdess8", *FAST)
    assert r.exit_code == 0, r.output
    dataset, _, prep, labels = calls["dataset"]
    assert dataset == "ravdess" and prep.image_size == 32 and labels == "ravdess8"  # ONE PrepareConfig
    conf = json.loads((run / "config.json").read_text())
    assert conf["fusion"]["strategy"] == "ofos" and conf["preprocessing"] == prep.to_dict()
    assert conf["data"]["fold"] == 1 and conf["data"]["dataset"] == "ravdess"
    assert (run / "checkpoints" / "best.ckpt").is_file()  # validated on the held-out fold

    r = invoke("evaluate", "--run", str(run), "--no-progress")  # the run knows its data and fold
    assert r.exit_code == 0, r.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 12 and "UAR" in r.output and "fold 1" in r.output
    assert calls["dataset"][2] == conf["preprocessing"]  # evaluate prepares with the run's recorded config

    clip = data[0]
    import multimae_der.data.prepare as prepare_module

    monkeypatch.setattr(prepare_module, "preprocess_clip",
                        lambda path, config, **kw: {"video": clip["video"].numpy(), "audio": clip["audio"].numpy()})
    video = tmp_path / "a.mp4"
    video.write_bytes(b"")
    r = invoke("predict", str(video), "--run", str(run), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["emotion"] in data.class_names and sum(out["probabilities"].values()) == pytest.approx(1.0)

    r = invoke("predict", str(video), "--run", str(tmp_path / "nope"))
    assert r.exit_code == 1 and "not a run folder" in r.output

    cv_dir = tmp_path / "cv"
    r = invoke("cv", "--dataset", "ravdess", "--root", str(tmp_path), "--out", str(cv_dir), "--fusion", "fslf,audio",
               "--epochs", "1", *FAST)
    assert r.exit_code == 0, r.output
    for name in ("results.csv", "results.md", "results.png", "folds.csv", "fslf/fold_1/metrics.json",
                 "audio/fold_2/metrics.json"):
        assert (cv_dir / name).is_file(), name
    table = pd.read_csv(cv_dir / "results.csv")
    assert table["strategy"].tolist() == ["fslf", "audio"] and (table["folds"] == 2).all()
    assert pd.read_csv(cv_dir / "folds.csv")["fold"].tolist() == [1, 2, 1, 2]
    assert json.loads((cv_dir / "fslf" / "fold_2" / "config.json").read_text())["data"]["fold"] == 2
    some = tmp_path / "cv-some"  # --folds runs a subset and keeps the folds' numbers
    r = invoke("cv", "--dataset", "ravdess", "--root", str(tmp_path), "--out", str(some), "--fusion", "audio",
               "--epochs", "1", "--folds", "2", *FAST)
    assert r.exit_code == 0, r.output
    assert not (some / "audio" / "fold_1").exists() and (some / "audio" / "fold_2" / "metrics.json").is_file()
    assert pd.read_csv(some / "folds.csv")["fold"].tolist() == [2]
    md = (some / "results.md").read_text()
    assert "Folds 2 " in md and "multimae-der cv --dataset ravdess" in md and "--folds 2" in md
    r = invoke("cv", "--dataset", "ravdess", "--root", str(tmp_path), "--out", str(some), "--folds", "3", *FAST)
    assert r.exit_code == 1 and "the data has folds 1-2" in r.output

    pre = tmp_path / "pre"
    r = invoke("pretrain", "--dataset", "ravdess", "--root", str(tmp_path), "--out", str(pre), "--epochs", "1",
               "--fold", "2", *FAST)
    assert r.exit_code == 0, r.output
    assert "on 12 clips" in r.output  # fold 2 left out
    r = invoke("train", "--dataset", "ravdess", "--root", str(tmp_path), "--out", str(tmp_path / "ft"),
               "--epochs", "1", "--init-from", str(pre), "--fold", "2", *FAST)
    assert r.exit_code == 0, r.output

    for args, message in [
        (["--fusion", "bogus"], "unknown fusion strategy"),
        (["--fold", "3"], "--fold 3 does not exist"),
        (["--layers", "0"], "--layers must be at least 1"),
    ]:
        r = invoke("train", "--dataset", "ravdess", "--root", str(tmp_path), "--out", str(tmp_path / "x"), *FAST,
                   *args)
        assert r.exit_code == 1 and message in r.output, (args, r.output)


def test_lightning_options_pass_through(tmp_path, fake_data, monkeypatch):
    """--devices, --num-nodes, --strategy and --precision reach lightning.Trainer unchanged."""
    import lightning as L

    seen = {}

    class Stop(Exception):
        pass

    def fake_trainer(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(L, "Trainer", fake_trainer)
    r = invoke("train", "--dataset", "ravdess", "--root", str(tmp_path), "--out", str(tmp_path / "run"),
               "--devices", "4", "--num-nodes", "2", "--strategy", "ddp", "--precision", "bf16-mixed",
               "--accelerator", "cpu", *FAST)
    assert isinstance(r.exception, Stop), r.output
    assert (seen["devices"], seen["num_nodes"], seen["strategy"], seen["precision"], seen["accelerator"]) == (
        4, 2, "ddp", "bf16-mixed", "cpu")
