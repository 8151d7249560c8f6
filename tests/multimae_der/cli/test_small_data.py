"""The small-training-set warning of ``train`` / ``cv`` and the default cache of ``prepare`` (nothing trains)."""

import pytest
from _mm_fakes import PlantedClips
from typer.testing import CliRunner

from multimae_der.cli import app
from multimae_der.cli import model as cli_model
from multimae_der.cli.model import small_data_warning


@pytest.mark.parametrize("n, epochs, batch, counts, expected", [
    (4000, 10, 16, {"happy": 2000, "sad": 2000}, None),                     # 2500 steps, 2000 per class
    (200, 16, 16, {"happy": 16, "sad": 184}, None),                         # exactly at both limits: 208 steps
    (48, 10, 16, {"happy": 6, "sad": 42},
     "training set too small to learn from: 6 clips of class 'happy' (48 clips, 2 classes; want ~16+ per class); "
     "30 optimizer steps (10 epochs x 3 batches of 16; want ~200+).\n  Try more clips per class (SynthAV: "
     "`multimae-der synth --clips-per-actor N`) and --epochs 67 or a smaller --batch-size."),
    (49, 10, 16, None,  # no labels known: only the step rule; the partial last batch is a step
     "training set too small to learn from: 40 optimizer steps (10 epochs x 4 batches of 16; want ~200+).\n"
     "  Try --epochs 50 or a smaller --batch-size."),
    (4000, 10, 16, {"happy": 3990, "sad": 10, "calm": 0},
     "training set too small to learn from: 0 clips of class 'calm' (4000 clips, 3 classes; want ~16+ per class).\n"
     "  Try more clips per class (SynthAV: `multimae-der synth --clips-per-actor N`)."),
])
def test_small_data_warning(n, epochs, batch, counts, expected):
    assert small_data_warning(n, epochs, batch, counts) == expected


def test_few_training_speakers_are_warned_about():
    assert small_data_warning(4000, 10, 16, None, actors=8) is None
    assert small_data_warning(4000, 10, 16, None, actors=4) == (
        "training set too small to learn from: 4 training speakers (want ~8+ for held-out speakers).\n"
        "  Try more speakers (SynthAV: `multimae-der synth --actors 24`).")


class LabelledClips(PlantedClips):
    """PlantedClips with the ``labels`` list a ClipDataset has."""

    @property
    def labels(self):
        return [i % self.num_classes for i in range(self.n)]


@pytest.fixture
def no_training(monkeypatch):
    import multimae_der.model.cv
    import multimae_der.model.train

    data, seen = LabelledClips(24), {}

    def cross_validate(data, folds, out, cfg, **kw):
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text("| table |\n", encoding="utf-8")
        return [None]

    monkeypatch.setattr(cli_model, "build_dataset", lambda *a, **k: data)
    monkeypatch.setattr(cli_model, "build_folds", lambda *a, **k: [(list(range(6, 24)), list(range(6))),
                                                                     (list(range(6)), list(range(6, 24)))])
    monkeypatch.setattr(multimae_der.model.train, "train", lambda train_data, out, cfg, **kw: seen.update(n=len(train_data)))
    monkeypatch.setattr(multimae_der.model.cv, "cross_validate", cross_validate)
    return seen


def test_train_and_cv_warn_before_training(tmp_path, no_training):
    base = ["--dataset", "ravdess", "--root", str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress"]
    r = CliRunner().invoke(app, ["train", *base, "--fold", "1"])
    assert r.exit_code == 0, r.output
    assert no_training["n"] == 18
    assert "warning: training set too small to learn from: 6 clips of class 'emotion_0' (18 clips, 3 classes" in r.output
    assert "45 optimizer steps (15 epochs x 3 batches of 8" in r.output and "--epochs 67" in r.output
    r = CliRunner().invoke(app, ["cv", *base, "--fusion", "fslf"])
    assert r.exit_code == 0, r.output
    assert "warning: fold 2 of 2: training set too small to learn from: 2 clips of class" in r.output
    r = CliRunner().invoke(app, ["train", *base, "--epochs", "200", "--batch-size", "1"])
    assert r.exit_code == 0, r.output
    assert "optimizer steps" not in r.output and "8 clips of class 'emotion_0' (24 clips" in r.output


def test_prepare_defaults_to_the_cache_train_reads(tmp_path, monkeypatch):
    import multimae_der.data.prepare
    from multimae_der.data.datasets import CACHE_DIRNAME

    seen = {}

    def prepare_dataset(dataset, root, cache, config, workers=1):
        seen["cache"] = cache
        return multimae_der.data.prepare.PrepareSummary(dataset, str(root), str(cache), config.hash())

    monkeypatch.setattr(multimae_der.data.prepare, "prepare_dataset", prepare_dataset)
    r = CliRunner().invoke(app, ["prepare", "--dataset", "ravdess", "--root", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert seen["cache"] == tmp_path.resolve() / CACHE_DIRNAME
