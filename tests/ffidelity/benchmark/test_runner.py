"""The controlled experiment: scores with known answers, and a tiny end-to-end run with resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ffidelity.benchmark.config import BenchmarkConfig, StaleRunError
from ffidelity.benchmark.correlation import macro_scores, micro_per_level, micro_ranks, nanmean, spearman
from ffidelity.benchmark.runner import run
from ffidelity.benchmark.tasks import get_task

NOISES = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
S = np.array([0.1, 0.2, 0.3])


def test_spearman_known_answers_and_undefined_ties() -> None:
    assert spearman([5, 4, 3, 2, 1, 0], NOISES) == pytest.approx(-1.0)
    assert spearman([0, 1, 2, 3, 4, 5], NOISES) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 1, 1, 1, 1, 1], NOISES))  # undefined, not 0
    assert spearman([1, 3, 2, 4, 6, 5], NOISES) == pytest.approx(1 - 6 * (0 + 1 + 1 + 0 + 1 + 1) / (6 * 35))


def test_macro_and_micro_scores_of_an_ideal_metric() -> None:
    plus = np.outer(1 - NOISES, [1.0, 2.0, 3.0])  # MoRF falls with noise at every level
    minus = np.outer(NOISES, [1.0, 1.0, 1.0])  # LeRF rises with noise
    m = macro_scores(plus, minus, NOISES, S)
    assert m == pytest.approx({"morf_vs_gt": -1.0, "lerf_vs_gt": 1.0, "morf_vs_lerf": -1.0})
    micro = micro_per_level(plus, minus, NOISES)
    assert np.allclose(micro["morf_vs_gt"], -1) and np.allclose(micro["lerf_vs_gt"], 1)
    flat = micro_per_level(np.ones((6, 3)), minus, NOISES)
    assert np.isnan(flat["morf_vs_gt"]).all() and math.isnan(nanmean(flat["morf_vs_gt"]))


def test_micro_rank_prefers_the_ideal_and_puts_undefined_last() -> None:
    per_method = {"a": np.array([-1.0, -0.5]), "b": np.array([-0.2, -0.9]), "c": np.array([np.nan, 0.3])}
    ranks = micro_ranks(per_method, "morf_vs_gt")  # ideal -1: lower is better
    assert ranks == {"a": 1.5, "b": 1.5, "c": 3.0}
    assert micro_ranks({"a": np.array([0.9]), "b": np.array([0.1])}, "lerf_vs_gt") == {"a": 1.0, "b": 2.0}


@pytest.fixture(scope="module")
def tiny_task():
    task = get_task("digits", quick=True)
    task.x_train, task.y_train = task.x_train[:300], task.y_train[:300]
    task.fit = {"epochs": 3, "lr": 3e-3, "batch_size": 64}
    task.finetune = {"epochs": 1, "lr": 1e-3, "batch_size": 64}
    task.explainer_kwargs = {"sg_sq": {"n_steps": 2, "nt_samples": 2}}
    return task


@pytest.mark.slow
def test_tiny_benchmark_writes_every_output_and_resumes(tmp_path, tiny_task, monkeypatch) -> None:
    cfg = BenchmarkConfig(explainers=("saliency", "gradcam"), seeds=2, noises=(0.0, 0.5, 1.0),
                          sparsities=(0.2, 0.5), n_test=12, n_samples=2, progress=False)
    res = run(cfg, tmp_path, task=tiny_task)
    for name in ("results.json", "table.csv", "report.html", "curves_saliency_ffid.png",
                 "curves_gradcam_roar.png"):
        assert (tmp_path / name).exists(), name
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["config"]["seeds"] == 2 and data["environment"]["torch"] == torch.__version__
    table = res.table()
    assert table.shape == (7, 2 * 6)  # 7 score rows; 2 explainers x (5 methods + F-Fid on original explanations)
    assert set(res.curves["explainer"]) == {"saliency", "gradcam", "random"}
    assert len(res.curves) == 2 * (2 * 6 * 3 + 6)  # seeds x (explainers x methods x noises + random per method)
    html = (tmp_path / "report.html").read_text()
    assert "F-Fidelity" in html and "ground-truth ranking" in html and "random" in html

    # a rerun is served from the cache: no training, no explaining, no evaluation
    import ffidelity.benchmark.runner as bm
    from ffidelity.metrics.engine import Fidelity

    def boom(*a, **k):
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(bm, "explain", boom)
    monkeypatch.setattr(Fidelity, "evaluate", boom)
    again = run(cfg, tmp_path, task=tiny_task)
    assert again.curves.equals(res.curves)

    # other Monte-Carlo settings in the same folder: those curves are recomputed, never served stale
    monkeypatch.undo()
    calls: list[str] = []
    real = Fidelity.evaluate

    def counting(self, *a, **k):
        calls.append(self.method)
        return real(self, *a, **k)

    monkeypatch.setattr(Fidelity, "evaluate", counting)
    more = run(cfg, tmp_path, task=tiny_task, methods=("fid", "rfid"), n_samples=3)
    assert calls == ["rfid"] * (2 * (2 * 3 + 1))  # seeds x (explainers x noises + random); fid from the cache
    fid = more.curves[more.curves["method"] == "fid"].reset_index(drop=True)
    assert fid.equals(res.curves[res.curves["method"] == "fid"].reset_index(drop=True))
    # settings that the cached models depend on may not change under the same folder
    with pytest.raises(StaleRunError, match=r"other settings.*n_test 12 -> 8"):
        run(cfg, tmp_path, task=tiny_task, n_test=8)
    # ... nor may the task's training recipe (a new version's recipe would otherwise meet old cached models)
    tiny_task.fit = {**tiny_task.fit, "lr": tiny_task.fit.get("lr", 1e-3) * 2}
    with pytest.raises(StaleRunError, match=r"other settings.*fit"):
        run(cfg, tmp_path, task=tiny_task)


def test_demo_stage_restarts_a_stale_folder(tmp_path) -> None:
    from multimae_der.app.demo import run_or_restart

    (tmp_path / "old.txt").write_text("from an older version")
    calls: list[bool] = []

    def fake_run(cfg, out):
        calls.append((out / "old.txt").exists())
        if (out / "old.txt").exists():
            raise StaleRunError(f"{out} holds a benchmark run with other settings")
        return "result"

    assert run_or_restart(fake_run, None, tmp_path) == "result"
    assert calls == [True, False] and not tmp_path.exists()  # emptied, then run again (the fake writes nothing)


def test_bad_benchmark_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown methods"):
        BenchmarkConfig(methods=("fid", "magic")).check()
    with pytest.raises(ValueError, match="two noise levels"):
        BenchmarkConfig(noises=(0.0,)).check()
    with pytest.raises(ValueError, match="beta"):
        BenchmarkConfig(beta=3).check()


@pytest.mark.slow
def test_two_processes_give_the_numbers_of_one(tmp_path) -> None:
    import shutil

    cfg = BenchmarkConfig(methods=("fid", "ffid"), explainers=("saliency",), seeds=1, noises=(0.0, 1.0),
                          sparsities=(0.3, 0.6), n_test=10, n_samples=3, quick=True, progress=False,
                          original_explanations=False, random_baseline=False)
    two = run(cfg, tmp_path / "two", devices=2)
    one_dir = tmp_path / "one"
    one_dir.mkdir()
    for sub in ("models", "explanations"):  # same models and explanations; only the curves are recomputed
        shutil.copytree(tmp_path / "two" / sub, one_dir / sub)
    one = run(cfg, one_dir)
    assert len(one.curves) == len(two.curves) == 4
    for a, b in zip(one.curves["fid_plus"], two.curves["fid_plus"], strict=True):
        assert a == b
    for a, b in zip(one.curves["fid_minus"], two.curves["fid_minus"], strict=True):
        assert a == b
