"""The emotion pipeline end to end through the CLI on real media files: SynthAV (RAVDESS layout) -> prepare ->
train -> evaluate -> predict, resume after an interruption, and one-line errors for bad input."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
from _mm_serve_helpers import video_without_audio
from typer.testing import CliRunner

import multimae_der.model.train as train_module
from multimae_der.cli import app
from multimae_der.data.datasets import CACHE_DIRNAME, build_dataset
from multimae_der.data.prepare import PrepareConfig
from multimae_der.model.predict import predict_clip
from multimae_der.model.run import load_run

runner = CliRunner()
# a 1-layer tiny VideoMAE at 64x64, 8 frames and 8 audio windows per clip: seconds per epoch on 2 cores
FAST = ["--model", "tiny", "--layers", "1", "--frames", "8", "--windows", "8", "--batch-size", "4", "--no-progress"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def one_error_line(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "ravdess"
    r = invoke("synth", "--out", str(root), "--format", "ravdess", "--actors", "4", "--clips-per-actor", "4",
               "--duration", "1", "--size", "64", "--seed", "5")
    assert r.exit_code == 0, r.output
    return root


class Steps(L.Callback):
    """Records the global step after every training batch; optionally crashes at the start of one step."""

    def __init__(self, record: list[int], kill_at: int | None = None) -> None:
        self.record, self.kill_at = record, kill_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.kill_at:
            raise RuntimeError("simulated kill")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.record.append(trainer.global_step)


_MAKE_TRAINER = train_module.make_trainer


def with_callback(monkeypatch, callback: L.Callback) -> None:
    def make_trainer(run_dir, config, *, callbacks=(), **kw):
        return _MAKE_TRAINER(run_dir, config, callbacks=[*callbacks, callback], **kw)

    monkeypatch.setattr(train_module, "make_trainer", make_trainer)


@pytest.mark.slow
def test_synth_train_evaluate_predict_resume(synth_root, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train_args = ["train", "--dataset", "ravdess", "--root", str(synth_root), "--num-folds", "2", "--fold", "2",
                  "--fusion", "fslf", "--epochs", "2", "--in-memory", "--out", str(run), *FAST]

    # an interrupted first attempt (8 training clips, batch 4: 2 steps per epoch), killed as step 4 of 4 starts
    first: list[int] = []
    with_callback(monkeypatch, Steps(first, kill_at=3))
    r = invoke(*train_args)
    assert isinstance(r.exception, RuntimeError) and "simulated kill" in str(r.exception)
    assert first == [1, 2, 3] and not (run / "model.safetensors").exists()
    # prepared into the default cache inside the root, at the model's image size
    cache = synth_root / CACHE_DIRNAME
    assert len(list((cache / "clips").glob("*.npz"))) == 16

    # rerunning the same command continues from the last checkpoint (end of epoch 1): steps 3 and 4 only
    second: list[int] = []
    with_callback(monkeypatch, Steps(second))
    r = invoke(*train_args)
    assert r.exit_code == 0, r.output
    assert second == [3, 4] and (run / "model.safetensors").is_file()
    assert "fold 2 (8 clips) held out" in r.output
    # a finished run: nothing is retrained
    third: list[int] = []
    with_callback(monkeypatch, Steps(third))
    r = invoke(*train_args)
    assert r.exit_code == 0, r.output
    assert third == []

    conf = json.loads((run / "config.json").read_text())
    prep = PrepareConfig.from_dict(conf["preprocessing"])
    assert (prep.image_size, prep.num_frames, prep.num_windows) == (64, 8, 8) == (conf["model"]["image_size"], 8, 8)
    trained_on = conf["data"].pop("train_clips")  # the training fold's clips (actors 01-02), by clip id
    assert len(trained_on) == len(set(trained_on)) > 0 and all(isinstance(c, str) for c in trained_on)
    assert conf["data"] == {"dataset": "ravdess", "root": str(synth_root.resolve()), "cache": str(cache.resolve()),
                            "label_set": "ravdess8", "fold": 2, "num_folds": 2, "fold_seed": 0}

    # evaluate needs only the run folder: it scores the held-out fold (actors 03-04)
    r = invoke("evaluate", "--run", str(run), "--no-progress")
    assert r.exit_code == 0, r.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 8 and 0.0 <= metrics["uar"] <= 1.0 and 0.0 <= metrics["war"] <= 1.0
    assert len(metrics["per_class_recall"]) == 8 and np.array(metrics["confusion_matrix"]).sum() == 8
    assert np.trace(np.array(metrics["confusion_matrix"])) == round(metrics["war"] * 8)
    assert (run / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    # a label set with other classes than the run's is refused
    one_error_line(invoke("evaluate", "--run", str(run), "--labels", "ravdess7", "--no-progress"),
                   "the run was trained on classes")

    # predict one mp4: the same preprocessing as the cache, so the same probabilities as the cached clip
    video = sorted((synth_root / "Actor_04").glob("*.mp4"))[0]
    r = invoke("predict", str(video), "--run", str(run), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out) == {"path", "emotion", "label", "probabilities"}
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    data = build_dataset("ravdess", synth_root, config=prep, progress=False)
    item = data[[str(p) for p in (e["path"] for e in data.entries)].index(str(video))]
    expected = predict_clip(load_run(run), item)
    assert out["emotion"] == expected.emotion
    assert out["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)
    r = invoke("predict", str(video), "--run", str(run))
    assert r.exit_code == 0 and expected.emotion in r.output


def test_in_memory_dataset_reads_each_file_once(synth_root, tmp_path):
    cache = tmp_path / "cache"
    config = PrepareConfig(num_frames=4, num_windows=4, image_size=32)
    data = build_dataset("ravdess", synth_root, cache=cache, config=config, in_memory=True, progress=False)
    first = data[3]
    first["video"].zero_()  # changing an item never changes what the dataset holds
    for file in (cache / "clips").glob("*.npz"):
        file.unlink()
    again = data[3]  # no file read (a read would warn and rebuild the file)
    assert again["video"].shape == (4, 3, 32, 32) and again["video"].float().mean() > 0
    assert not list((cache / "clips").glob("*.npz"))
    fresh = build_dataset("ravdess", synth_root, cache=cache, config=config, progress=False)
    assert torch.equal(fresh[3]["video"], again["video"]) and torch.equal(fresh[3]["audio"], again["audio"])


def test_bad_input_gives_one_error_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    train = ["train", "--out", str(tmp_path / "run"), *FAST]
    one_error_line(invoke(*train, "--dataset", "afew", "--root", str(empty)), "unknown dataset 'afew'")
    one_error_line(invoke(*train, "--dataset", "ravdess", "--root", str(empty)), "no usable ravdess clip")
    one_error_line(invoke(*train, "--dataset", "ravdess", "--root", str(tmp_path / "nope")), "does not exist")
    assert not (empty / CACHE_DIRNAME).exists() and not (tmp_path / "run").exists()  # nothing written
    one_error_line(invoke("evaluate", "--run", str(tmp_path / "missing")), "is not a run folder")
    one_error_line(invoke("predict", str(tmp_path / "a.mp4"), "--run", str(tmp_path / "missing")),
                   "is not a run folder")
    one_error_line(invoke("cv", "--dataset", "ravdess", "--root", str(empty), "--out", str(tmp_path / "cv"),
                          "--fusion", "fslf,nope"), "unknown")


def test_predict_rejects_a_video_without_audio(synth_root, tmp_path):
    run = tmp_path / "run"
    r = invoke("train", "--dataset", "ravdess", "--root", str(synth_root), "--epochs", "1", "--out", str(run), *FAST)
    assert r.exit_code == 0, r.output
    assert "all 16 clips" in r.output
    silent = tmp_path / "silent.mp4"
    video_without_audio(silent)
    one_error_line(invoke("predict", str(silent), "--run", str(run)), "no audio track")
    one_error_line(invoke("predict", str(tmp_path / "none.mp4"), "--run", str(run)), "does not exist")
    one_error_line(invoke("evaluate", "--run", str(run), "--fold", "7", "--num-folds", "2"), "--fold 7 does not exist")
