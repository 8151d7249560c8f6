"""``--run`` takes a run folder or a folder of runs (``demo-output``, a ``cv`` output): finding and choosing."""

import json

import pytest
from _mm_cue_fakes import write_run
from typer.testing import CliRunner

from multimae_der.cli import app
from multimae_der.cli import runs as cli_runs
from multimae_der.model.run import find_runs, is_run

runner = CliRunner()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """demo-like layout: two finished runs deep down, an unfinished one, and decoys."""
    root = tmp_path_factory.mktemp("out")
    a = write_run(root / "emotion" / "runs" / "fslf", fusion="fslf")
    b = write_run(root / "emotion" / "runs" / "video", fusion="video")
    (a / "metrics.json").write_text(json.dumps({"war": 0.9375}))
    unfinished = write_run(root / "emotion" / "runs" / "audio", fusion="audio")
    (unfinished / "model.safetensors").unlink()
    (root / "emotion" / "runs" / "notes").mkdir()
    (root / "emotion" / "runs" / "notes" / "config.json").write_text(json.dumps({"format": "other"}))
    (root / "emotion" / "runs" / "notes" / "model.safetensors").write_bytes(b"")
    write_run(root / ".hidden" / "run")  # hidden folders are not searched
    return root, a, b


def test_find_runs_finds_finished_runs_only(tree):
    root, a, b = tree
    assert find_runs(root) == [a, b]
    assert find_runs(a) == [a]
    assert find_runs(root, max_depth=2) == []  # the runs are three levels down
    assert not is_run(root / "emotion" / "runs" / "audio") and not is_run(root / "emotion" / "runs" / "notes")


def test_a_run_folder_is_used_as_given(tree):
    _, a, _ = tree
    assert cli_runs.resolve_run(a) == a


def test_one_run_below_is_used_and_named(tmp_path):
    run = write_run(tmp_path / "runs" / "fslf")
    res = runner.invoke(app, ["predict", str(tmp_path / "missing.mp4"), "--run", str(tmp_path)])
    assert f"using run {run}" in res.output.replace("\n", "")
    assert res.exit_code == 1 and "missing.mp4" in res.output and "Traceback" not in res.output


def test_several_runs_without_a_terminal_list_them(tree, monkeypatch):
    root, a, b = tree
    monkeypatch.setattr(cli_runs, "_interactive", lambda: False)
    res = runner.invoke(app, ["serve", "--run", str(root)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    out = res.output.replace("\n", "")
    assert "holds 2 runs" in out and str(a) in out and str(b) in out and "config.json is missing" not in out


def test_several_runs_on_a_terminal_are_offered_as_a_choice(tree, monkeypatch):
    root, a, b = tree
    monkeypatch.setattr(cli_runs, "_interactive", lambda: True)
    picked = []
    from multimae_der.cli import model as cli_model

    monkeypatch.setattr(cli_model, "resolve_run", lambda p: picked.append(cli_runs.resolve_run(p)) or picked[-1])
    res = runner.invoke(app, ["predict", "nothing.mp4", "--run", str(root)], input="2\n")
    assert picked == [b], (res.output, repr(res.exception))
    assert "FSLF" in res.output and "93.8%" in res.output and "VIDEO" in res.output  # the choice table
    res = runner.invoke(app, ["predict", "nothing.mp4", "--run", str(root)], input="7\n\n")
    assert picked[-1] == a  # out of range is asked again; the default is the best evaluated run (fslf, 93.8%)
    assert "run number [1]" in res.output


def test_a_folder_without_runs_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    for cmd in (["serve"], ["explain"], ["faithfulness"], ["evaluate"], ["predict", "x.mp4"]):
        res = runner.invoke(app, [*cmd, "--run", str(tmp_path / "empty")])
        assert res.exit_code == 1, cmd
        assert "holds no finished runs" in res.output.replace("\n", ""), cmd
        assert "Traceback" not in res.output
    res = runner.invoke(app, ["serve", "--run", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "no such folder" in res.output


def test_the_best_evaluated_run_is_the_default_choice(tmp_path, monkeypatch):
    first, second = write_run(tmp_path / "a"), write_run(tmp_path / "b", fusion="ofos")
    (first / "metrics.json").write_text(json.dumps({"war": 0.5}))
    (second / "metrics.json").write_text(json.dumps({"war": 0.75}))
    monkeypatch.setattr(cli_runs, "_interactive", lambda: True)
    monkeypatch.setattr(cli_runs.typer, "prompt", lambda text, type, default: default)
    assert cli_runs.resolve_run(tmp_path) == second
