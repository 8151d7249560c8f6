"""``ffidelity benchmark`` (the paper's controlled experiment), ``ffidelity datasets`` and ``ffidelity explainers``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ffidelity.cli._common import batch_size_option, console, friendly_errors


def _split(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return items or None


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly_errors
    def benchmark(
        dataset: str = typer.Option("digits", help="A registered data set (see `ffidelity datasets`)."),
        out: Path = typer.Option(..., help="Output folder; a rerun with the same folder resumes."),
        root: Path | None = typer.Option(None, help="Folder of a real data set (CIFAR, PAM, SST-2, ...)."),
        explainers: str | None = typer.Option(None, help="Comma-separated base explainers (default: the "
                                              "data set's)."),
        methods: str | None = typer.Option(None, help="Comma-separated evaluation methods of fid, roar, rfid, "
                                           "ffid, road (default: all that apply; ROAD on images only)."),
        seeds: int | None = typer.Option(None, help="Seeds of the degradation and Monte-Carlo draws (paper: 5)."),
        n_test: int | None = typer.Option(None, help="Test inputs evaluated."),
        n_samples: int | None = typer.Option(None, help="Monte-Carlo samples N (paper: 50)."),
        beta: float = typer.Option(0.1, help="F-Fidelity's fine-tuning ratio and removal cap."),
        beta_minus: float | None = typer.Option(None, help="F-Fidelity's cap on the complement (LeRF side); "
                                                "default: beta, as in the paper."),
        alpha: float = typer.Option(0.5, help="Removal probability alpha+ = alpha- of R-/F-Fidelity."),
        mode: str = typer.Option("acc", help="'acc' (accuracy indicator, the paper's) or 'prob'."),
        quick: bool = typer.Option(False, help="One seed, 9 sparsities, 100 inputs, N = 10: a few minutes."),
        epochs: int | None = typer.Option(None, help="Training epochs of the models (default: the data set's)."),
        finetune_epochs: int | None = typer.Option(None, help="F-Fidelity fine-tuning epochs (default: the "
                                                   "data set's)."),
        batch_size: str = typer.Option("auto", help="Masked copies per forward pass: a number, or auto (the engine times a few sizes and keeps the fastest)."),
        devices: int = typer.Option(1, help="Processes sharing the evaluation (GPUs, or CPU workers); under "
                                    "torchrun/SLURM the job's processes are used."),
        strategy: str = typer.Option("ddp", help="Scale-out strategy (only 'ddp': shard inputs, gather results)."),
    ) -> None:
        """Which faithfulness metric recovers the true ranking of degraded explainers? (F-Fidelity, Table 1)"""
        from ffidelity.benchmark.config import BenchmarkConfig
        from ffidelity.benchmark.runner import run

        common = {"dataset": dataset, "root": str(root) if root else None, "explainers": _split(explainers),
                  "methods": _split(methods), "beta": beta, "beta_minus": beta_minus, "alpha_plus": alpha,
                  "alpha_minus": alpha, "mode": mode, "batch_size": batch_size_option(batch_size), "epochs": epochs,
                  "finetune_epochs": finetune_epochs}
        sized = {"seeds": seeds, "n_test": n_test, "n_samples": n_samples}
        if quick:
            cfg = BenchmarkConfig.quick_preset(**common, **sized)
        else:
            cfg = BenchmarkConfig(**common, **{k: v for k, v in sized.items() if v is not None})
        cfg.check()
        if strategy != "ddp":
            raise ValueError(f"--strategy must be 'ddp', got {strategy!r}")
        console.print(f"[bold]benchmark[/] {dataset} -> {out}  (seeds {cfg.seeds}, N {cfg.n_samples}, "
                      f"{len(cfg.sparsity_grid())} sparsities)")
        result = run(cfg, out, devices=devices)
        table = Table(title=f"{dataset}: macro MoRF vs GT (ideal -1) / LeRF vs GT (ideal +1)")
        table.add_column("explainer")
        table.add_column("method")
        table.add_column("MoRF vs GT", justify="right")
        table.add_column("LeRF vs GT", justify="right")
        for explainer, by_method in result.summary().items():
            for method, s in by_method.items():
                table.add_row(explainer, method, f"{s['macro_morf_vs_gt']:+.2f}", f"{s['macro_lerf_vs_gt']:+.2f}")
        console.print(table)
        for line in result.verdicts():
            console.print(f"- {line}")
        console.print(f"report: {out / 'report.html'}  ({result.timings['total_s']:.0f} s)")

    @app.command()
    def datasets() -> None:
        """List the registered data sets."""
        from ffidelity.benchmark.tasks import TASKS

        for name in TASKS.names():
            doc = (TASKS.get(name).__doc__ or "").strip().splitlines()[0]
            console.print(f"[bold]{name}[/]: {doc}")

    @app.command()
    def explainers() -> None:
        """List the registered explainers."""
        from ffidelity.explainers.core import EXPLAINERS

        for name in EXPLAINERS.names():
            doc = (EXPLAINERS.get(name).__doc__ or "").strip().splitlines()[0]
            console.print(f"[bold]{name}[/]: {doc}")
