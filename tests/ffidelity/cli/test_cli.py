"""The ffidelity command line: listing commands, one-line errors, and a tiny benchmark run."""

from __future__ import annotations

from typer.testing import CliRunner

from ffidelity.cli import app

runner = CliRunner()


def test_lists_datasets_and_explainers() -> None:
    res = runner.invoke(app, ["datasets"])
    assert res.exit_code == 0 and "digits" in res.stdout and "seqcomb" in res.stdout
    res = runner.invoke(app, ["explainers"])
    assert res.exit_code == 0 and "sg_sq" in res.stdout and "gradcam" in res.stdout


def test_bad_benchmark_input_is_one_line_and_exit_1(tmp_path) -> None:
    for args, msg in [
        (["--methods", "fid,magic"], "unknown methods"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--beta", "2"], "beta must lie in [0, 1]"),
        (["--dataset", "cifar10"], "needs --root"),
        (["--strategy", "fsdp"], "--strategy must be 'ddp'"),
    ]:
        res = runner.invoke(app, ["benchmark", "--out", str(tmp_path / "o"), "--quick", *args])
        assert res.exit_code == 1, (args, res.output)
        assert msg in res.output and "Traceback" not in res.output, res.output
