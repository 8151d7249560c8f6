"""``ffidelity evaluate`` (Fidelity, R-Fidelity and F-Fidelity of explanations of a user's own model) and
``ffidelity version``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ffidelity.cli._common import batch_size_option, console, friendly_errors


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def _floats(value: str | None, flag: str) -> tuple[float, ...] | None:
    """``"0.1,0.5"`` -> ``(0.1, 0.5)``; ``None`` stays ``None``; a bad value raises a ``ValueError`` naming ``flag``."""
    if value is None:
        return None
    out = []
    for part in _names(value):
        try:
            out.append(float(part))
        except ValueError:
            raise ValueError(f"{flag}: {part!r} is not a number (expected comma-separated numbers)") from None
    if not out:
        raise ValueError(f"{flag} is empty (expected comma-separated numbers)")
    return tuple(out)


def register(app: typer.Typer) -> None:
    @app.command()
    def version() -> None:
        """Print the version."""
        from ffidelity._version import __version__

        typer.echo(__version__)

    @app.command()
    @friendly_errors
    def evaluate(
        model: Path = typer.Option(..., help="A TorchScript file, or a Hugging Face save_pretrained folder of an "
                                   "image classifier (with config.json)."),
        inputs: Path = typer.Option(..., help="An .npz (arrays x, optional y and attributions), a .pt (dict with "
                                    "x, optional y), or a folder of images (one subfolder per class, or flat)."),
        out: Path = typer.Option(..., help="Output folder: results.json, table.csv, curves.csv, curve PNGs, "
                                 "report.html, config.json."),
        explainers: str | None = typer.Option(None, help="Comma-separated explainers to compute (see `ffidelity "
                                              "explainers`; ig = integrated_gradients)."),
        attributions: Path | None = typer.Option(None, help="An .npz or .pt with one array of attributions, "
                                                 "(N, ...) in the inputs' or the units' shape."),
        metrics: str = typer.Option("fid,rfid,ffid", help="Comma-separated metrics: fid, rfid, ffid."),
        labels: Path | None = typer.Option(None, help="CSV with columns file,label for a flat image folder."),
        image_size: int | None = typer.Option(None, help="Resize images to this size (square)."),
        mean: str | None = typer.Option(None, help="Per-channel mean subtracted from the inputs, e.g. 0.5,0.5,0.5."),
        std: str | None = typer.Option(None, help="Per-channel std the inputs are divided by."),
        beta: float = typer.Option(0.1, help="F-Fidelity's fine-tuning mask ratio and removal cap."),
        alpha: float = typer.Option(0.5, help="Removal probability of R-/F-Fidelity."),
        n_samples: int = typer.Option(50, help="Monte-Carlo samples per input and sparsity (R-/F-Fidelity)."),
        sparsities: str | None = typer.Option(None, help="Comma-separated explanation sizes in (0, 1) "
                                              "(default 0.05, 0.10, ..., 0.95)."),
        mode: str = typer.Option("acc", help="'acc' (accuracy indicator) or 'prob' (softmax probability)."),
        seed: int = typer.Option(0, help="Seed of tie-breaking and every random draw."),
        batch_size: str = typer.Option("auto", help="Masked copies per forward pass: a number, or auto (the "
                                       "engine times a few sizes and keeps the fastest)."),
        patch: int = typer.Option(1, help="A unit is a patch x patch block of pixels."),
        reference: float = typer.Option(0.0, help="Value a removed unit takes."),
        finetune_data: Path | None = typer.Option(None, help="F-Fidelity's fine-tuning data (like --inputs, with "
                                                  "labels), ideally the model's training data."),
        finetune_labels: Path | None = typer.Option(None, help="CSV file,label for a flat --finetune-data folder."),
        finetune_epochs: int = typer.Option(5, help="Fine-tuning epochs."),
        finetune_lr: float = typer.Option(1e-4, help="Fine-tuning learning rate (Adam)."),
        overwrite: bool = typer.Option(False, help="Replace a non-empty --out folder."),
        progress: bool = typer.Option(False, help="Show progress bars."),
    ) -> None:
        """Evaluate explanations of your own model with Fidelity, R-Fidelity and F-Fidelity."""
        from ffidelity.evaluate.config import METRIC_NAMES, EvaluateConfig
        from ffidelity.evaluate.run import run

        cfg = EvaluateConfig(
            model=str(model), inputs=str(inputs), out=str(out), explainers=_names(explainers),
            attributions=str(attributions) if attributions else None, metrics=_names(metrics),
            labels=str(labels) if labels else None, image_size=image_size, mean=_floats(mean, "--mean"),
            std=_floats(std, "--std"), beta=beta, alpha=alpha, n_samples=n_samples,
            sparsities=_floats(sparsities, "--sparsities"), mode=mode, seed=seed, batch_size=batch_size_option(batch_size), patch=patch,
            reference=reference, finetune_data=str(finetune_data) if finetune_data else None,
            finetune_labels=str(finetune_labels) if finetune_labels else None, finetune_epochs=finetune_epochs,
            finetune_lr=finetune_lr, overwrite=overwrite, progress=progress)
        ev = run(cfg)
        table = Table(title=f"{model.name}: areas under the curves (Fid+ higher, Fid- lower = more faithful)")
        for col in ("metric", "explanation", "AUC Fid+", "AUC Fid-"):
            table.add_column(col, justify="left" if col in ("metric", "explanation") else "right")
        for m, by_name in ev.results.items():
            for name, r in by_name.items():
                table.add_row(METRIC_NAMES[m], name, f"{r.auc_plus:.4f}", f"{r.auc_minus:.4f}")
        console.print(table)
        console.print(f"report: {ev.out / 'report.html' if ev.out else out}  ({ev.timings['total_s']:.1f} s)",
                      soft_wrap=True)
