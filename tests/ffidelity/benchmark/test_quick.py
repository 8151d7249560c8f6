"""The quick preset on real digits, as `make demo` runs it: the targets that one seed can check."""

from __future__ import annotations

import pytest

from ffidelity.benchmark.config import BenchmarkConfig
from ffidelity.benchmark.runner import run


@pytest.mark.slow
def test_quick_preset_on_digits_recovers_the_ranking(tmp_path) -> None:
    res = run(BenchmarkConfig.quick_preset(progress=False), tmp_path)
    summary = res.summary()
    assert set(summary) == {"sg_sq", "gradcam"}
    # F-Fidelity recovers the ground-truth ranking of both explainers' degraded copies on the MoRF side, and
    # is no worse than plain Fidelity up to one swap of neighbours among the six copies (Spearman 1 - 12/210;
    # one seed cannot tell such a swap from noise)
    one_swap = 12 / 210
    for explainer in summary:
        ffid, fid = (summary[explainer][m]["macro_morf_vs_gt"] for m in ("ffid", "fid"))
        assert ffid <= -0.9, (explainer, ffid)
        assert ffid <= fid + one_swap + 1e-9, (explainer, ffid, fid)
    # the random explainer's MoRF area is below every real explainer's under F-Fidelity and R-Fidelity
    base = res.baseline.set_index(["method", "explainer"])["morf_area"]
    for method in ("ffid", "rfid"):
        assert base[(method, "random")] < min(base[(method, e)] for e in summary), method
    # the models behind the numbers are usable: the fine-tuned copy keeps its accuracy under random masks
    assert res.models["original_clean_acc"] >= 0.85 and res.models["finetuned_masked_acc"] >= 0.85
    assert res.timings["total_s"] > 0 and (tmp_path / "report.html").is_file()
