"""``multimae-der train | evaluate | cv | predict | pretrain``.

Data loading goes through two seams, :func:`build_dataset` and :func:`build_folds`, which import the data
side (``multimae_der.datasets``) only when called; tests replace them with in-memory fakes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ffidelity.cli._common import console, friendly_errors

Fold = tuple[list[int], list[int]]


def build_dataset(dataset: str, root: Path, cache: Path | None, config: dict[str, Any]) -> Any:
    """The data side's dataset of contract items for ``dataset`` (e.g. ``ravdess``) under ``root``."""
    from multimae_der.datasets import build_dataset as _build

    return _build(dataset, root, cache=cache, config=config)


def build_folds(dataset: str, data: Any, config: dict[str, Any]) -> list[Fold]:
    """The data side's subject-independent folds ``[(train_idx, test_idx), ...]`` for ``dataset``."""
    from multimae_der.datasets import folds as _folds

    return _folds(dataset, data, config=config)


DatasetArg = Annotated[str, typer.Argument(help="Dataset name (e.g. ravdess, crema-d, iemocap).")]
RootArg = Annotated[Path, typer.Argument(help="Dataset root folder.")]
CacheOpt = Annotated[Path | None, typer.Option(help="Preprocessing cache folder.")]
ModelOpt = Annotated[str, typer.Option(help="Architecture: tiny, small, base, large.")]
SizeOpt = Annotated[int | None, typer.Option(help="Image size (default: the architecture's).")]
FusionOpt = Annotated[str, typer.Option(help="Fusion strategy: cfas sfas ffls fslf ofos rfas video audio.")]
PresetOpt = Annotated[str, typer.Option(help="Hyper-parameter preset: measured (lr 1e-3, cosine) or paper "
                                             "(lr 1e-2 constant, 100 epochs).")]
EpochsOpt = Annotated[int | None, typer.Option(help="Epochs (default: the preset's, else 10).")]
FloatOpt = Annotated[float | None, typer.Option()]
IntOpt = Annotated[int | None, typer.Option()]
ProbeOpt = Annotated[bool, typer.Option("--linear-probe/--fine-tune", help="Freeze the encoder (official code) "
                                                                             "or fine-tune it all (paper).")]
InitOpt = Annotated[str | None, typer.Option(help="Initial weights: pre-training run, save_pretrained folder "
                                                    "or original VideoMAE .pth.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for initialisation, shuffling and RFAS orders.")]
AccelOpt = Annotated[str, typer.Option(help="Lightning accelerator.")]
DevicesOpt = Annotated[str, typer.Option(help="Lightning devices (e.g. 1, 4, auto).")]
NodesOpt = Annotated[int, typer.Option(help="Lightning num_nodes.")]
StrategyOpt = Annotated[str, typer.Option("--dist-strategy", help="Lightning strategy (auto, ddp, fsdp...).")]
PrecisionOpt = Annotated[str, typer.Option(help="Lightning precision (32-true, bf16-mixed, 16-mixed).")]
WorkersOpt = Annotated[int, typer.Option(help="DataLoader workers.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress")]


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _train_config(preset: str, **kw: Any) -> Any:
    from multimae_der.train import TrainConfig

    return TrainConfig.preset(preset, **{k: v for k, v in kw.items() if v is not None})


def _preprocessing(image_size: int | None, model: str) -> dict[str, Any]:
    from multimae_der.model import MODEL_CONFIGS

    if model not in MODEL_CONFIGS:
        raise ValueError(f"unknown model config {model!r}; known: {', '.join(MODEL_CONFIGS)}")
    return {"image_size": image_size or MODEL_CONFIGS[model]["image_size"], "num_frames": 16, "num_audio": 16}


def register(app: typer.Typer) -> None:
    @app.command("train")
    @friendly_errors
    def train_cmd(dataset: DatasetArg, root: RootArg,
                  run: Annotated[Path, typer.Option(help="Run folder (rerun to resume).")],
                  cache: CacheOpt = None, model: ModelOpt = "tiny", image_size: SizeOpt = None,
                  fusion: FusionOpt = "fslf", preset: PresetOpt = "measured", epochs: EpochsOpt = None,
                  batch_size: IntOpt = None, lr: FloatOpt = None, weight_decay: FloatOpt = None,
                  warmup: FloatOpt = None, linear_probe: ProbeOpt = False, init_from: InitOpt = None,
                  holdout_fold: Annotated[int | None, typer.Option(help="Validate on this fold (from the data "
                                                                       "side's folds), train on the rest.")] = None,
                  seed: SeedOpt = 0, accelerator: AccelOpt = "auto", devices: DevicesOpt = "1",
                  num_nodes: NodesOpt = 1, dist_strategy: StrategyOpt = "auto", precision: PrecisionOpt = "32-true",
                  num_workers: WorkersOpt = 0, progress: ProgressOpt = True) -> None:
        """Train a classifier on a dataset (the whole set, or all folds but --holdout-fold)."""
        from torch.utils.data import Subset

        from multimae_der.train import train

        cfg = _train_config(preset, model=model, image_size=image_size, fusion=fusion, epochs=epochs,
                            batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
                            linear_probe=linear_probe, init_from=init_from, seed=seed, accelerator=accelerator,
                            devices=_devices(devices), num_nodes=num_nodes, strategy=dist_strategy,
                            precision=precision, num_workers=num_workers)
        prep = _preprocessing(image_size, model)
        data = build_dataset(dataset, root, cache, prep)
        val = None
        if holdout_fold is not None:
            folds = build_folds(dataset, data, prep)
            if not 0 <= holdout_fold < len(folds):
                raise ValueError(f"--holdout-fold must be in 0..{len(folds) - 1}")
            tr, te = folds[holdout_fold]
            from multimae_der.train import dataset_class_names

            names = dataset_class_names(data)
            data, val = Subset(data, list(tr)), Subset(data, list(te))
            train(data, run, cfg, val_data=val, class_names=names, preprocessing=prep, progress=progress)
        else:
            train(data, run, cfg, preprocessing=prep, progress=progress)
        console.print(f"trained: {run}")

    @app.command("evaluate")
    @friendly_errors
    def evaluate_cmd(run: Annotated[Path, typer.Argument(help="A finished run folder.")], dataset: DatasetArg,
                     root: RootArg, cache: CacheOpt = None,
                     fold: Annotated[int | None, typer.Option(help="Score only this fold's test clips.")] = None,
                     out: Annotated[Path | None, typer.Option(help="Output folder (default: the run).")] = None,
                     batch_size: int = 16, progress: ProgressOpt = True) -> None:
        """Score a run: metrics.json (WAR, UAR, per-class recall, confusion matrix) and a PNG."""
        from torch.utils.data import Subset

        from multimae_der.evaluate import evaluate
        from multimae_der.run import read_run_config

        prep = read_run_config(run).get("preprocessing") or {}
        data = build_dataset(dataset, root, cache, prep)
        if fold is not None:
            folds = build_folds(dataset, data, prep)
            if not 0 <= fold < len(folds):
                raise ValueError(f"--fold must be in 0..{len(folds) - 1}")
            data = Subset(data, list(folds[fold][1]))
        m = evaluate(run, data, out_dir=out, batch_size=batch_size, progress=progress)
        console.print(f"UAR {m['uar'] * 100:.2f}%  WAR {m['war'] * 100:.2f}%  (n = {m['n']})")

    @app.command("cv")
    @friendly_errors
    def cv_cmd(dataset: DatasetArg, root: RootArg,
               out: Annotated[Path, typer.Option(help="Output folder (rerun to continue).")],
               cache: CacheOpt = None,
               strategies: Annotated[str, typer.Option(help="Comma-separated strategies (default: all 8).")] = "",
               model: ModelOpt = "tiny", image_size: SizeOpt = None, preset: PresetOpt = "measured",
               epochs: EpochsOpt = None, batch_size: IntOpt = None, lr: FloatOpt = None,
               weight_decay: FloatOpt = None, warmup: FloatOpt = None, linear_probe: ProbeOpt = False,
               init_from: InitOpt = None, seed: SeedOpt = 0, accelerator: AccelOpt = "auto",
               devices: DevicesOpt = "1", num_nodes: NodesOpt = 1, dist_strategy: StrategyOpt = "auto",
               precision: PrecisionOpt = "32-true", num_workers: WorkersOpt = 0, progress: ProgressOpt = True) -> None:
        """Cross-validate every fusion strategy: results.csv / results.md / results.png like the paper's table."""
        from multimae_der.cv import cross_validate
        from multimae_der.fusion import PAPER_ORDER

        cfg = _train_config(preset, model=model, image_size=image_size, epochs=epochs, batch_size=batch_size,
                            lr=lr, weight_decay=weight_decay, warmup=warmup, linear_probe=linear_probe,
                            init_from=init_from, seed=seed, accelerator=accelerator, devices=_devices(devices),
                            num_nodes=num_nodes, strategy=dist_strategy, precision=precision,
                            num_workers=num_workers)
        prep = _preprocessing(image_size, model)
        data = build_dataset(dataset, root, cache, prep)
        folds = build_folds(dataset, data, prep)
        names = [s.strip().lower() for s in strategies.split(",") if s.strip()] or list(PAPER_ORDER)
        table = cross_validate(data, folds, out, cfg, strategies=names, preprocessing=prep, progress=progress,
                               title=dataset)
        console.print((out / "results.md").read_text(encoding="utf-8"))
        console.print(f"{len(table)} strategies x {len(folds)} folds -> {out}")

    @app.command("predict")
    @friendly_errors
    def predict_cmd(run: Annotated[Path, typer.Argument(help="A finished run folder.")],
                    video: Annotated[Path, typer.Argument(help="A video file with audio.")],
                    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
        """Predict the emotion of one video file."""
        from multimae_der.predict import predict_file

        pred = predict_file(run, video)
        if as_json:
            typer.echo(json.dumps({"path": str(video), **pred.to_dict()}, indent=2))
            return
        console.print(f"[bold]{pred.emotion}[/] ({pred.probabilities[pred.emotion] * 100:.1f}%)")
        for name, p in sorted(pred.probabilities.items(), key=lambda kv: -kv[1]):
            console.print(f"  {name:<12} {p * 100:5.1f}%")

    @app.command("pretrain")
    @friendly_errors
    def pretrain_cmd(dataset: DatasetArg, root: RootArg,
                     run: Annotated[Path, typer.Option(help="Run folder (rerun to resume).")],
                     cache: CacheOpt = None, model: ModelOpt = "tiny", image_size: SizeOpt = None,
                     fusion: FusionOpt = "fslf", epochs: EpochsOpt = None, batch_size: IntOpt = None,
                     lr: FloatOpt = None, weight_decay: FloatOpt = None, warmup: FloatOpt = None,
                     mask_ratio: Annotated[float, typer.Option(help="Tube-mask ratio.")] = 0.9,
                     seed: SeedOpt = 0, accelerator: AccelOpt = "auto", devices: DevicesOpt = "1",
                     num_nodes: NodesOpt = 1, dist_strategy: StrategyOpt = "auto",
                     precision: PrecisionOpt = "32-true", num_workers: WorkersOpt = 0,
                     progress: ProgressOpt = True) -> None:
        """Masked-autoencoder pre-training (90% tube masking) on the dataset's fused clips (labels unused)."""
        from multimae_der.pretrain import pretrain
        from multimae_der.train import dataset_class_names

        cfg = _train_config("measured", model=model, image_size=image_size, fusion=fusion, epochs=epochs,
                            batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
                            mask_ratio=mask_ratio, seed=seed, accelerator=accelerator, devices=_devices(devices),
                            num_nodes=num_nodes, strategy=dist_strategy, precision=precision,
                            num_workers=num_workers)
        prep = _preprocessing(image_size, model)
        data = build_dataset(dataset, root, cache, prep)
        pretrain(data, run, cfg, class_names=dataset_class_names(data), preprocessing=prep, progress=progress)
        console.print(f"pre-trained: {run} (start a classifier from it with --init-from {run})")
