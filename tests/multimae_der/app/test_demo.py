"""`make demo` in a reduced size: every stage runs, the index page links every report and shows the pictures."""

from __future__ import annotations

import html
import json
import re

import pytest

from multimae_der.app import demo


@pytest.mark.slow
def test_small_demo_writes_an_index_with_every_stage(tmp_path, capsys) -> None:
    out = tmp_path / "demo-output"
    results = demo.main(["--out", str(out), "--small"])
    assert list(results) == list(demo.STAGES)
    page = (out / "index.html").read_text(encoding="utf-8")
    for name, res in results.items():
        assert (out / name / res["report"]).is_file(), name
        assert f"{name}/{res['report']}" in page
        for line in res["lines"][:2]:
            assert html.escape(line.split("(")[0].strip()[:40], quote=False) in page
    # pictures are embedded, and each one exists
    images = re.findall(r"<img src='([^']+)'", page)
    assert any("curves_" in i for i in images) and any("size.png" in i for i in images)
    assert any("confusion_matrix" in i for i in images) and any("_strip.png" in i for i in images)
    assert all((out / i).is_file() for i in images)
    # the emotion numbers are the run's own, in range
    for scores in results["emotion"]["numbers"].values():
        assert 0.0 <= scores["war"] <= 1.0 and 0.0 <= scores["uar"] <= 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["stages"]) == list(demo.STAGES) and summary["total_s"] > 0
    assert "multimae-der serve --run" in capsys.readouterr().out

    # rerunning one stage keeps the others on the page
    demo.main(["--out", str(out), "--small", "--only", "size"])
    again = json.loads((out / "summary.json").read_text())
    assert list(again["stages"]) == list(demo.STAGES)
    with pytest.raises(SystemExit, match="unknown stages"):
        demo.main(["--out", str(out), "--only", "nope"])
