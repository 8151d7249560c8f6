"""``--run`` accepts a run folder or a folder of runs: one run is used, several are offered as a choice.

On a terminal the user picks a run by number; elsewhere (scripts, CI) the command stops with one line that
lists the runs, so nothing runs on a run the user did not choose.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ffidelity.cli._common import err_console

__all__ = ["resolve_run"]


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _describe(run: Path) -> tuple[str, str]:
    """The run's fusion strategy and its held-out WAR (from ``metrics.json``, when evaluated)."""
    from multimae_der.model.run import METRICS_FILE, read_run_config

    cfg = read_run_config(run)
    fusion = str((cfg.get("fusion") or {}).get("strategy", "?")).upper()
    war = ""
    metrics = run / METRICS_FILE
    if metrics.is_file():
        try:
            war = f"{json.loads(metrics.read_text(encoding='utf-8'))['war'] * 100:.1f}%"
        except (ValueError, KeyError, TypeError):
            war = "?"
    return fusion, war


def resolve_run(path: Path) -> Path:
    """The run folder named by ``--run``: ``path`` itself, or the one run below it, or the user's choice.

    Raises:
        FileNotFoundError: ``path`` does not exist, or holds neither a run nor finished runs below it.
        ValueError: several runs below ``path`` and no terminal to choose on (the message lists them).
    """
    from multimae_der.model.run import CONFIG_FILE, find_runs

    if (path / CONFIG_FILE).is_file():
        return path  # a run folder (loading it reports an unfinished or damaged run)
    if not path.is_dir():
        raise FileNotFoundError(f"--run {path} is not a run folder: no such folder")
    runs = find_runs(path)
    if not runs:
        raise FileNotFoundError(f"--run {path} is not a run folder ({CONFIG_FILE} is missing) and holds no finished "
                                "runs; train one with `multimae-der train ... --out RUN`")
    if len(runs) == 1:
        err_console.print(f"using run {escape(str(runs[0]))}", soft_wrap=True, highlight=False)
        return runs[0]
    if not _interactive():
        listed = ", ".join(str(r) for r in runs)
        raise ValueError(f"--run {path} holds {len(runs)} runs: {listed}; pass one of them with --run")
    table = Table(title=f"runs in {escape(str(path))}")
    for col in ("#", "run", "fusion", "held-out WAR"):
        table.add_column(col)
    best, best_war = 1, -1.0
    for k, r in enumerate(runs, 1):
        fusion, war = _describe(r)
        table.add_row(str(k), escape(str(r.relative_to(path))), fusion, war)
        if war.endswith("%") and float(war[:-1]) > best_war:  # the best evaluated run is the default
            best, best_war = k, float(war[:-1])
    err_console.print(table)
    while True:
        choice = typer.prompt("run number", type=int, default=best)
        if 1 <= choice <= len(runs):
            return runs[choice - 1]
        err_console.print(f"choose a number from 1 to {len(runs)}")
