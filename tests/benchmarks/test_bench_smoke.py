"""The benchmark suite end to end on tiny sizes (the ``smoke`` profile), and its pieces with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from benchmarks.common import Target, clocked, peak_rss_mb, reset_peak_rss, rss_mb, summarize
from benchmarks.memory_scaling import _linear_fit
from benchmarks.official import official_fidelity, official_rfidelity
from benchmarks.run import run_all
from torch import nn

from benchmarks import quantus_cmp

STATUSES = {"MET", "NOT MET", "SKIPPED", "reported"}


def _check_outputs(out, names) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["profile"] == "smoke"
    assert {b["name"] for b in summary["benchmarks"]} == set(names)
    rows = summary["targets"]
    assert rows and all(r["status"] in STATUSES for r in rows), rows  # no ERROR row
    for name in names:
        data = json.loads((out / f"{name}.json").read_text())
        assert data["error"] is None and data["name"] == name
        assert len(data["load_before"]) == 3 and data["seconds"] > 0
    md = (out / "SUMMARY.md").read_text()
    machine = summary["machine_start"]
    assert "## Machine" in md and "## Targets" in md and machine["cpu_model"] in md
    assert f"torch threads: default {machine['torch_threads']}" in md and "load at start" in md
    for r in rows:
        assert f"| {r['benchmark']} | {r['target']} | {r['value']} |" in md
    html = (out / "report.html").read_text()
    for b in summary["benchmarks"]:
        for file, _ in b["figures"]:
            assert (out / file).read_bytes()[:4] == b"\x89PNG" and file in html
    return summary


def test_quick_run_on_tiny_sizes_writes_json_and_summary(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(quantus_cmp, "available", lambda: False)  # a missing Quantus is NOT MET, never skipped
    names = ["engine", "engine_defaults", "memory", "scaling", "quantus"]
    result = run_all(tmp_path, "smoke", only=names, thread_counts=[1], log=lambda s: None)
    summary = _check_outputs(tmp_path, names)
    assert [r["name"] for r in result["results"]] == names
    by_name = {r["name"]: r for r in result["results"]}
    engine = by_name["engine"]["data"]
    for model in ("resnet9", "tiny"):
        ratios = engine[model]["ratios"]
        assert 0 < ratios["ours_rfid_vs_raw"]["of_best"] < 5 and ratios["ours_rfid_vs_raw"]["n"] >= 1
        assert engine[model]["threads"] == 1
    memory = by_name["memory"]["data"]["runs"]
    assert set(memory) == {"2", "8"} and all(r["peak_reset_after_setup"] for r in memory.values())
    assert memory["8"]["passes"] == 4 * memory["2"]["passes"]
    quantus = [r for r in summary["targets"] if r["benchmark"] == "quantus"]
    assert [r["status"] for r in quantus] == ["NOT MET"] and "not installed" in quantus[0]["note"]
    defaults = by_name["engine_defaults"]["data"]["tiny_cnn"]
    assert set(defaults["chosen_batch"]) == {"fid", "rfid", "ffid"} and defaults["calibration_cost"] >= 0
    assert all(r["rfid"] > 0 and r["raw"] > 0 for r in defaults["repeats"])
    first = by_name["engine_defaults"]["data"]["tiny_cnn_first"]  # the allocator tuning, on and off
    assert all(r["tuned"] for r in first["on"]) and not any(r["tuned"] for r in first["off"])
    assert all(r["rate"] > 0 and r["copies"] == 1900 for r in first["on"] + first["off"])
    assert (tmp_path / "engine_throughput.png").exists() and (tmp_path / "scaling.png").exists()


def test_smoke_run_of_explainers_and_emotion(tmp_path) -> None:
    names = ["explainers", "emotion", "token_drop"]
    run_all(tmp_path, "smoke", only=names, thread_counts=[1], log=lambda s: None)
    summary = _check_outputs(tmp_path, names)
    emotion = json.loads((tmp_path / "emotion.json").read_text())["data"]
    assert emotion["prepare"]["clips"] == 1 and emotion["prepare"]["clips_per_s"] > 0
    assert set(emotion["data_wait"]) >= {"workers_0", "workers_1"}
    assert emotion["predict"]["tiny"]["median"]["total"] > 0
    assert any(r["target"].startswith("IG peak RSS") for r in summary["targets"])
    drop = json.loads((tmp_path / "token_drop.json").read_text())["data"]
    assert [r["sparsity"] for r in drop["rows"]] == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert all(r["engine_clips_per_s"] > 0 and r["raw_clips_per_s"] > 0 for r in drop["rows"])


def test_unknown_profile_and_benchmark_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        run_all(tmp_path, "huge")
    with pytest.raises(ValueError, match="unknown benchmark"):
        run_all(tmp_path, "smoke", only=["nope"])


# -- pieces with known answers ----------------------------------------------------------------------------------
class Constant(nn.Module):
    """Always predicts class 0, whatever is removed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.flatten(1).sum(1) * 0 + 1, x.flatten(1).sum(1) * 0], dim=1)


def test_official_baselines_count_passes_and_score_a_constant_model() -> None:
    x = torch.randn(3, 3, 4, 4)
    y = torch.zeros(3, dtype=torch.long)
    scores = np.random.default_rng(0).normal(size=(3, 16))
    acc, passes = official_fidelity(Constant(), x, y, scores, [0.25, 0.5])
    assert passes == 3 * 2 * 2 and acc.shape == (3, 2, 2) and np.all(acc == 1.0)
    acc, passes = official_rfidelity(Constant(), x, y, scores, [0.25, 0.5, 0.75], n_samples=5, beta=0.1)
    assert passes == 3 * 3 * 2 * 5 and np.all(acc == 1.0)


def test_official_fidelity_removes_the_top_scored_pixels() -> None:
    class CountKept(nn.Module):  # class 0 while more than half of the first channel is non-zero
        def forward(self, x):
            kept = (x[:, 0] != 0).flatten(1).float().mean(1)
            return torch.stack([kept - 0.5, torch.zeros_like(kept)], dim=1)

    x = torch.ones(1, 1, 4, 4)
    acc, _ = official_fidelity(CountKept(), x, torch.tensor([0]), np.arange(16.0)[None], [0.25, 0.75])
    # removing the top 25 % keeps 75 % (class 0); removing the rest keeps 25 % (class 1); and so on
    np.testing.assert_array_equal(acc[0], [[1.0, 0.0], [0.0, 1.0]])


def test_target_status_and_summaries() -> None:
    assert Target("a", 0.95, 0.9).status == "MET"
    assert Target("a", 0.85, 0.9).status == "NOT MET"
    assert Target("a", 5.0, 10.0, op="<").status == "MET"
    assert Target("a", None, 1.0).status == "NOT MET"
    assert Target("a", 3.0).status == "reported"
    assert Target("a", None, 1.0, skipped=True).status == "SKIPPED"
    s = summarize([1.0, 3.0, 2.0])
    assert s == {"median": 2.0, "best": 3.0, "min": 1.0, "n": 3}


def test_linear_fit_and_clock() -> None:
    fit = _linear_fit([1, 2, 4, 8], [0.5 + 2 * v for v in (1, 2, 4, 8)])
    assert fit["slope"] == pytest.approx(2.0) and fit["intercept"] == pytest.approx(0.5)
    assert fit["r2"] == pytest.approx(1.0)
    assert _linear_fit([1, 2, 3], [1.0, 3.0, 1.0])["r2"] < 0.5
    wall, cpu, out = clocked(lambda: sum(range(100_000)))
    assert out == sum(range(100_000)) and wall > 0 and cpu >= 0


def test_peak_rss_resets_to_the_current_size() -> None:
    block = np.ones(40_000_000 // 8)  # 40 MB, touched
    del block
    if not reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs on this system")
    assert peak_rss_mb() < rss_mb() + 20
    block = np.ones(60_000_000 // 8)
    assert peak_rss_mb() >= rss_mb() - 1 and peak_rss_mb() > 50
    del block
