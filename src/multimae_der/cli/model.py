"""``multimae-der train | evaluate | cv | predict | pretrain``.

Every command names its data the same way (``--dataset ravdess --root DIR [--cache DIR] [--labels ravdess7]``)
and prepares it with ONE :class:`~multimae_der.data.prepare.PrepareConfig` whose image size is the model's (the tiny
model: 64x64), so what is cached is exactly what the model sees; the config is saved in the run folder, and
``evaluate`` / ``predict`` redo the same preprocessing from it. Folds are numbered from 1, as ``multimae-der
folds`` prints them: ``--fold K`` trains on the other folds and validates (and later tests) on fold K.

Data loading goes through two seams, :func:`build_dataset` and :func:`build_folds`, which import the data side
(``multimae_der.data.datasets``) only when called; tests replace them with in-memory fakes.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ffidelity.cli._common import console, err_console, friendly_errors
from multimae_der.cli.data import DEFAULT_WORKERS, CacheOpt, _one_line_warnings
from multimae_der.cli.runs import resolve_run

Fold = tuple[list[int], list[int]]


def build_dataset(dataset: str, root: Path, cache: Path | None, config: Any, label_set: str | None,
                  workers: int = 1, progress: bool = True, in_memory: bool = False) -> Any:
    """The prepared :class:`~multimae_der.data.datasets.ClipDataset` of ``dataset`` under ``root`` (cached first)."""
    from multimae_der.data.datasets import build_dataset as _build

    return _build(dataset, root, cache=cache, config=config, label_set=label_set, workers=workers,
                  progress=progress, in_memory=in_memory)


def _command_line(ctx: typer.Context) -> str:
    """The command as a user would type it: the program, the command and every option not at its default."""
    parts = [ctx.find_root().info_name or "multimae-der", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or not param.opts:
            continue
        if isinstance(value, bool):
            flags = param.opts if value else getattr(param, "secondary_opts", [])
            if flags:
                parts.append(max(flags, key=len))
            continue
        parts += [max(param.opts, key=len), shlex.quote(str(value))]
    return " ".join(parts)


def _fold_numbers(text: str | None, total: int) -> list[int]:
    """``--folds 1,2,3`` as fold numbers (from 1), checked against the ``total`` folds; all when not given."""
    if not text:
        return list(range(1, total + 1))
    try:
        numbers = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ValueError(f"--folds must be comma-separated fold numbers, got {text!r}") from None
    bad = [k for k in numbers if not 1 <= k <= total]
    if not numbers or bad:
        raise ValueError(f"--folds {text}: the data has folds 1-{total}")
    return numbers


def build_folds(dataset: str, data: Any, num_folds: int | None, seed: int) -> list[Fold]:
    """The subject-independent folds ``[(train_idx, test_idx), ...]`` of a built dataset."""
    from multimae_der.data.datasets import folds as _folds

    return _folds(dataset, data, num_folds=num_folds, seed=seed)


# ------------------------------------------------------------------------------------------------ options

DatasetOpt = Annotated[str, typer.Option(help="ravdess | cremad | iemocap.")]
RootOpt = Annotated[Path, typer.Option(help="The data set's folder.")]
LabelsOpt = Annotated[str | None, typer.Option("--labels", help="Label set: ravdess8, ravdess7 (the paper's, "
                                                                 "calm merged into neutral), cremad6, iemocap4 "
                                                                 "(default: the data set's own).")]
FoldOpt = Annotated[int | None, typer.Option(help="Hold out fold K (from 1, as `multimae-der folds` prints): "
                                                  "train on the other folds, validate and test on fold K. "
                                                  "Without it: train on every clip.")]
NumFoldsOpt = Annotated[int | None, typer.Option(help="Override the number of folds (small sets; not IEMOCAP).")]
FoldSeedOpt = Annotated[int, typer.Option(help="Seed of the CREMA-D speaker shuffle.")]
FramesOpt = Annotated[int, typer.Option(help="Video frames per clip (preprocessing).")]
WindowsOpt = Annotated[int, typer.Option(help="Audio windows per clip (preprocessing).")]
FeatureOpt = Annotated[str, typer.Option(help="Audio pictures: logmel | mfcc (the paper's).")]
SamplingOpt = Annotated[str, typer.Option(help="Frame sampling: even | stride (the official code's).")]
CropOpt = Annotated[str, typer.Option(help="center | face (needs OpenCV).")]
PrepWorkersOpt = Annotated[int, typer.Option("--workers", help="Worker processes for preparing clips.")]
MemoryOpt = Annotated[bool, typer.Option("--in-memory/--from-disk", help="Keep prepared clips in RAM after the "
                                                                          "first epoch (small sets: ~0.4 MB per "
                                                                          "64x64 clip).")]
ModelOpt = Annotated[str, typer.Option(help="Architecture: tiny (CPU, 64x64), small, base, large (the paper's).")]
SizeOpt = Annotated[int | None, typer.Option(help="Image size of the model AND of the prepared clips "
                                                  "(default: the architecture's).")]
LayersOpt = Annotated[int | None, typer.Option(help="Encoder layers (default: the architecture's).")]
FusionOpt = Annotated[str, typer.Option(help="Fusion strategy: cfas sfas ffls fslf ofos rfas video audio.")]
PresetOpt = Annotated[str, typer.Option(help="Hyper-parameters: measured (lr 1e-3, 5% warm-up + cosine) or "
                                             "paper (lr 1e-2 constant, 100 epochs).")]
EpochsOpt = Annotated[int | None, typer.Option(help="Epochs (default: the preset's: 15 measured, 100 paper).")]
FloatOpt = Annotated[float | None, typer.Option()]
IntOpt = Annotated[int | None, typer.Option()]
ProbeOpt = Annotated[bool, typer.Option("--linear-probe/--fine-tune", help="Freeze the encoder (official code) "
                                                                             "or fine-tune it all (paper).")]
InitOpt = Annotated[str | None, typer.Option(help="Initial weights: pre-training run, save_pretrained folder "
                                                    "or original VideoMAE .pth.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for initialisation, shuffling and RFAS orders.")]
AccelOpt = Annotated[str, typer.Option(help="Lightning accelerator (auto, cpu, gpu).")]
DevicesOpt = Annotated[str, typer.Option(help="Lightning devices (e.g. 1, 4, auto).")]
NodesOpt = Annotated[int, typer.Option(help="Lightning num_nodes.")]
StrategyOpt = Annotated[str, typer.Option("--strategy", help="Lightning strategy (auto, ddp, fsdp...).")]
PrecisionOpt = Annotated[str, typer.Option(help="Lightning precision (32-true, bf16-mixed, 16-mixed).")]
WorkersOpt = Annotated[int, typer.Option(help="DataLoader workers.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress")]


# ------------------------------------------------------------------------------------------------ helpers

MIN_CLIPS_PER_CLASS = 16  # below these a classifier learns little (warning only; the defaults are not changed)
MIN_STEPS = 200
#: below this many training speakers, held-out speakers are recognised poorly (SynthAV, FSLF, 4 held-out actors:
#: 4 training actors 0.67 WAR, 8 actors 0.77, 20 actors 0.89-0.92 at about the same number of clips)
MIN_TRAIN_ACTORS = 8


def small_data_warning(n_train: int, epochs: int, batch_size: int,
                       class_counts: Mapping[str, int] | None = None, actors: int | None = None) -> str | None:
    """The warning for a training split too small to learn from, or None.

    Warns when a class has fewer than ``MIN_CLIPS_PER_CLASS`` training clips (``class_counts``: clips per class
    name, when known) or the run takes fewer than ``MIN_STEPS`` optimizer steps, i.e. ``epochs x ceil(n_train /
    batch_size)`` (the last, partial batch is a step too), or the clips come from fewer than
    ``MIN_TRAIN_ACTORS`` speakers (``actors``, when known). Two lines: the numbers, then what to change.
    """
    batches = math.ceil(n_train / batch_size) if n_train > 0 else 0
    steps = epochs * batches
    problems, fixes = [], []
    if class_counts:
        fewest = min(class_counts, key=lambda name: class_counts[name])
        if class_counts[fewest] < MIN_CLIPS_PER_CLASS:
            problems.append(f"{class_counts[fewest]} clips of class {fewest!r} ({n_train} clips, "
                            f"{len(class_counts)} classes; want ~{MIN_CLIPS_PER_CLASS}+ per class)")
            fixes.append("more clips per class (SynthAV: `multimae-der synth --clips-per-actor N`)")
    if steps < MIN_STEPS:
        problems.append(f"{steps} optimizer steps ({epochs} epochs x {batches} batches of {batch_size}; "
                        f"want ~{MIN_STEPS}+)")
        need = math.ceil(MIN_STEPS / batches) if batches else MIN_STEPS
        fixes.append(f"--epochs {need} or a smaller --batch-size")
    if actors is not None and actors < MIN_TRAIN_ACTORS:
        problems.append(f"{actors} training speakers (want ~{MIN_TRAIN_ACTORS}+ for held-out speakers)")
        fixes.append("more speakers (SynthAV: `multimae-der synth --actors 24`)")
    if not problems:
        return None
    return f"training set too small to learn from: {'; '.join(problems)}.\n  Try {' and '.join(fixes)}."


def _class_counts(data: Any, idx: Sequence[int] | None) -> dict[str, int] | None:
    """Training clips per class name, from the dataset's ``labels`` (None when the dataset has none)."""
    from multimae_der.model.train import dataset_class_names

    labels, names = getattr(data, "labels", None), dataset_class_names(data)
    if labels is None or names is None:
        return None
    counts = [0] * len(names)
    for i in (range(len(labels)) if idx is None else idx):
        counts[labels[i]] += 1
    return dict(zip(names, counts, strict=True))


def _warn_small(data: Any, idx: Sequence[int] | None, cfg: Any, where: str = "") -> bool:
    """Prints :func:`small_data_warning` for the training clips ``idx`` of ``data`` (all when None)."""
    n = len(data) if idx is None else len(idx)
    speakers = getattr(data, "actors", None)
    actors = None if speakers is None else len({speakers[i] for i in (range(n) if idx is None else idx)})
    text = small_data_warning(n, cfg.epochs, cfg.batch_size, _class_counts(data, idx), actors)
    if text is not None:
        err_console.print(f"[yellow]warning:[/] {escape(where + text)}", highlight=False, soft_wrap=True)
    return text is not None


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _train_config(preset: str, layers: int | None = None, **kw: Any) -> Any:
    from multimae_der.model.train import TrainConfig

    if layers is not None:
        if layers < 1:
            raise ValueError(f"--layers must be at least 1, got {layers}")
        kw["model_overrides"] = {"num_hidden_layers": layers}
    return TrainConfig.preset(preset, **{k: v for k, v in kw.items() if v is not None})


def _prepare_config(cfg: Any, frames: int, windows: int, audio_feature: str, frame_sampling: str,
                    crop: str) -> Any:
    """The ONE preprocessing config: the model's image size, the clip's frames and audio windows."""
    from multimae_der.data.prepare import PrepareConfig
    from multimae_der.model.videomae import MODEL_CONFIGS

    if cfg.model not in MODEL_CONFIGS:
        raise ValueError(f"unknown model config {cfg.model!r}; known: {', '.join(MODEL_CONFIGS)}")
    size = cfg.image_size or MODEL_CONFIGS[cfg.model]["image_size"]
    return PrepareConfig(num_frames=frames, num_windows=windows, image_size=size, audio_feature=audio_feature,
                         frame_sampling=frame_sampling, crop=crop)


def _data_info(dataset: str, root: Path, cache: Path | None, data: Any, labels: str | None,
               fold: int | None, num_folds: int | None, fold_seed: int) -> dict[str, Any]:
    """What ``evaluate --run`` needs to find the same clips again (recorded in the run's config)."""
    from multimae_der.data.datasets import default_cache
    from multimae_der.data.sources import canonical_dataset

    label_set = getattr(data, "label_set", None)
    return {"dataset": canonical_dataset(dataset), "root": str(root.resolve()),
            "cache": str((cache or default_cache(root)).resolve()),
            "label_set": getattr(label_set, "name", None) or labels, "fold": fold, "num_folds": num_folds,
            "fold_seed": fold_seed}


def _load(dataset: str, root: Path, cache: Path | None, prep: Any, labels: str | None, workers: int,
          progress: bool, in_memory: bool = False) -> Any:
    from multimae_der.data.sources import canonical_dataset

    canonical_dataset(dataset)  # a wrong name fails before anything touches the disk
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    with _one_line_warnings():
        return build_dataset(dataset, root, cache, prep, labels, workers, progress, in_memory)


def _split(dataset: str, data: Any, fold: int, num_folds: int | None, seed: int) -> Fold:
    folds = build_folds(dataset, data, num_folds, seed)
    if not 1 <= fold <= len(folds):
        raise ValueError(f"--fold {fold} does not exist: {dataset} has {len(folds)} folds here (1-{len(folds)}; "
                         "see `multimae-der folds`)")
    tr, te = folds[fold - 1]
    return list(tr), list(te)


def _subset(data: Any, idx: list[int]) -> Any:
    from torch.utils.data import Subset

    return Subset(data, idx)


# ------------------------------------------------------------------------------------------------ commands

def register(app: typer.Typer) -> None:
    @app.command("train")
    @friendly_errors
    def train_cmd(dataset: DatasetOpt, root: RootOpt,
                  out: Annotated[Path, typer.Option(help="Run folder (rerun the same command to resume).")],
                  cache: CacheOpt = None, labels: LabelsOpt = None, fold: FoldOpt = None,
                  num_folds: NumFoldsOpt = None, fold_seed: FoldSeedOpt = 0, fusion: FusionOpt = "fslf",
                  model: ModelOpt = "tiny", image_size: SizeOpt = None, layers: LayersOpt = None,
                  preset: PresetOpt = "measured", epochs: EpochsOpt = None, batch_size: IntOpt = None,
                  lr: FloatOpt = None, weight_decay: FloatOpt = None, warmup: FloatOpt = None,
                  linear_probe: ProbeOpt = False, init_from: InitOpt = None, seed: SeedOpt = 0,
                  frames: FramesOpt = 16, windows: WindowsOpt = 16, audio_feature: FeatureOpt = "logmel",
                  frame_sampling: SamplingOpt = "even", crop: CropOpt = "center", workers: PrepWorkersOpt = DEFAULT_WORKERS,
                  in_memory: MemoryOpt = False, accelerator: AccelOpt = "auto", devices: DevicesOpt = "1",
                  num_nodes: NodesOpt = 1,
                  strategy: StrategyOpt = "auto", precision: PrecisionOpt = "32-true", num_workers: WorkersOpt = 0,
                  progress: ProgressOpt = True) -> None:
        """Train a classifier: on every clip, or on all folds but --fold K (validated on fold K)."""
        from multimae_der.model.train import dataset_class_names, train

        cfg = _train_config(preset, layers, model=model, image_size=image_size, fusion=fusion, epochs=epochs,
                            batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
                            linear_probe=linear_probe, init_from=init_from, seed=seed, accelerator=accelerator,
                            devices=_devices(devices), num_nodes=num_nodes, strategy=strategy,
                            precision=precision, num_workers=num_workers)
        prep = _prepare_config(cfg, frames, windows, audio_feature, frame_sampling, crop)
        data = _load(dataset, root, cache, prep, labels, workers, progress, in_memory)
        names = dataset_class_names(data)
        info = _data_info(dataset, root, cache, data, labels, fold, num_folds, fold_seed)
        if fold is not None:
            tr, te = _split(dataset, data, fold, num_folds, fold_seed)
            _warn_small(data, tr, cfg)
            train(_subset(data, tr), out, cfg, val_data=_subset(data, te), class_names=names, preprocessing=prep,
                  data_info=info, progress=progress)
            where = f"{len(tr)} clips, fold {fold} ({len(te)} clips) held out"
        else:
            _warn_small(data, None, cfg)
            train(data, out, cfg, class_names=names, preprocessing=prep, data_info=info, progress=progress)
            where = f"all {len(data)} clips"
        console.print(f"trained {out}: {cfg.fusion}, {cfg.model} at {prep.image_size}x{prep.image_size}, "
                      f"{cfg.epochs} epochs on {where}; score it with: multimae-der evaluate --run {out}",
                      soft_wrap=True)

    @app.command("evaluate")
    @friendly_errors
    def evaluate_cmd(run: Annotated[Path, typer.Option(help="A finished run folder, or a folder of runs to choose from.")],
                     dataset: Annotated[str | None, typer.Option(help="Override the run's data set.")] = None,
                     root: Annotated[Path | None, typer.Option(help="Override the run's data folder.")] = None,
                     cache: CacheOpt = None, labels: LabelsOpt = None,
                     fold: Annotated[int | None, typer.Option(help="Score this fold's clips (default: the run's "
                                                                   "held-out fold, else every clip).")] = None,
                     num_folds: NumFoldsOpt = None, workers: PrepWorkersOpt = DEFAULT_WORKERS,
                     out: Annotated[Path | None, typer.Option(help="Output folder (default: the run).")] = None,
                     batch_size: int = 16, progress: ProgressOpt = True) -> None:
        """Score a run on its held-out clips: metrics.json (WAR, UAR, per-class recall, confusion matrix) + PNG."""
        from multimae_der.model.evaluate import evaluate
        from multimae_der.model.run import read_run_config
        from multimae_der.model.train import dataset_class_names

        run = resolve_run(run)
        cfg = read_run_config(run)
        recorded = dict(cfg.get("data") or {})
        if dataset is None and root is None:
            cache = cache or (Path(recorded["cache"]) if recorded.get("cache") else None)
        dataset = dataset or recorded.get("dataset")
        root = root or (Path(recorded["root"]) if recorded.get("root") else None)
        if not dataset or root is None:
            raise ValueError(f"{run} does not record its data set; pass --dataset and --root")
        labels = labels or recorded.get("label_set")
        fold = fold if fold is not None else recorded.get("fold")
        num_folds = num_folds if num_folds is not None else recorded.get("num_folds")
        data = _load(dataset, root, cache, cfg.get("preprocessing") or None, labels, workers, progress)
        names = dataset_class_names(data)
        if names is not None and list(names) != list(cfg.get("class_names", [])):
            raise ValueError(f"the run was trained on classes {cfg.get('class_names')} but {dataset} with label set "
                             f"{labels or 'default'} has {list(names)}; pass --labels")
        if fold is not None:
            _, te = _split(dataset, data, int(fold), num_folds, int(recorded.get("fold_seed") or 0))
            data, scope = _subset(data, te), f"fold {fold}"
        else:
            scope = "every clip (the run has no held-out fold)"
        m = evaluate(run, data, out_dir=out, batch_size=batch_size, progress=progress)
        console.print(f"{m['fusion']} on {scope}: UAR {m['uar'] * 100:.2f}%  WAR {m['war'] * 100:.2f}%  "
                      f"(n = {m['n']}) -> {(out or run) / 'metrics.json'}", soft_wrap=True)

    @app.command("cv")
    @friendly_errors
    def cv_cmd(ctx: typer.Context, dataset: DatasetOpt, root: RootOpt,
               out: Annotated[Path, typer.Option(help="Output folder (rerun to continue).")],
               cache: CacheOpt = None, labels: LabelsOpt = None,
               fusion: Annotated[str, typer.Option(help="all, or comma-separated strategies "
                                                        "(e.g. fslf,ofos,video,audio).")] = "all",
               num_folds: NumFoldsOpt = None, fold_seed: FoldSeedOpt = 0,
               folds: Annotated[str | None, typer.Option("--folds", help="Only these folds, comma-separated "
                                                                         "(e.g. 1,2,3; default: all).")] = None,
               model: ModelOpt = "tiny", image_size: SizeOpt = None, layers: LayersOpt = None,
               preset: PresetOpt = "measured", epochs: EpochsOpt = None, batch_size: IntOpt = None,
               lr: FloatOpt = None, weight_decay: FloatOpt = None, warmup: FloatOpt = None,
               linear_probe: ProbeOpt = False, init_from: InitOpt = None, seed: SeedOpt = 0,
               frames: FramesOpt = 16, windows: WindowsOpt = 16, audio_feature: FeatureOpt = "logmel",
               frame_sampling: SamplingOpt = "even", crop: CropOpt = "center", workers: PrepWorkersOpt = DEFAULT_WORKERS,
               in_memory: MemoryOpt = False, accelerator: AccelOpt = "auto", devices: DevicesOpt = "1",
               num_nodes: NodesOpt = 1,
               strategy: StrategyOpt = "auto", precision: PrecisionOpt = "32-true", num_workers: WorkersOpt = 0,
               progress: ProgressOpt = True) -> None:
        """Cross-validate fusion strategies over the folds: results.csv / .md / .png like the paper's table."""
        from multimae_der.model.cv import cross_validate
        from multimae_der.model.fusion import FUSIONS, PAPER_ORDER

        names = [s.strip().lower() for s in fusion.split(",") if s.strip()]
        if not names or names == ["all"]:
            names = list(PAPER_ORDER)
        for name in names:
            FUSIONS.get(name)
        cfg = _train_config(preset, layers, model=model, image_size=image_size, epochs=epochs,
                            batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
                            linear_probe=linear_probe, init_from=init_from, seed=seed, accelerator=accelerator,
                            devices=_devices(devices), num_nodes=num_nodes, strategy=strategy,
                            precision=precision, num_workers=num_workers)
        prep = _prepare_config(cfg, frames, windows, audio_feature, frame_sampling, crop)
        data = _load(dataset, root, cache, prep, labels, workers, progress, in_memory)
        all_folds = build_folds(dataset, data, num_folds, fold_seed)
        numbers = _fold_numbers(folds, len(all_folds))
        chosen = [all_folds[k - 1] for k in numbers]
        info = _data_info(dataset, root, cache, data, labels, None, num_folds, fold_seed)
        smallest = min(range(len(chosen)), key=lambda k: len(chosen[k][0]), default=None)
        if smallest is not None:  # the smallest training split speaks for all folds
            _warn_small(data, list(chosen[smallest][0]), cfg, f"fold {numbers[smallest]} of {len(all_folds)}: ")
        command = _command_line(ctx)
        table = cross_validate(data, chosen, out, cfg, strategies=names, preprocessing=prep, data_info=info,
                               progress=progress, title=dataset, fold_numbers=numbers, command=command)
        console.print((out / "results.md").read_text(encoding="utf-8"))
        console.print(f"{len(table)} strategies x {len(chosen)} folds -> {out}", soft_wrap=True)

    @app.command("predict")
    @friendly_errors
    def predict_cmd(video: Annotated[Path, typer.Argument(help="A video file with audio.")],
                    run: Annotated[Path, typer.Option(help="A finished run folder, or a folder of runs to choose from.")],
                    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
        """Predict the emotion of one video file (preprocessed the way the run's data was)."""
        from multimae_der.model.predict import predict_file

        pred = predict_file(resolve_run(run), video)
        if as_json:
            typer.echo(json.dumps({"path": str(video), **pred.to_dict()}, indent=2))
            return
        console.print(f"[bold]{pred.emotion}[/] ({pred.probabilities[pred.emotion] * 100:.1f}%)")
        for name, p in sorted(pred.probabilities.items(), key=lambda kv: -kv[1]):
            console.print(f"  {name:<12} {p * 100:5.1f}%")

    @app.command("pretrain")
    @friendly_errors
    def pretrain_cmd(dataset: DatasetOpt, root: RootOpt,
                     out: Annotated[Path, typer.Option(help="Run folder (rerun to resume).")],
                     cache: CacheOpt = None, labels: LabelsOpt = None,
                     fold: Annotated[int | None, typer.Option(help="Leave fold K's clips out (so a classifier "
                                                                   "tested on fold K never saw them).")] = None,
                     num_folds: NumFoldsOpt = None, fold_seed: FoldSeedOpt = 0, fusion: FusionOpt = "fslf",
                     model: ModelOpt = "tiny", image_size: SizeOpt = None, layers: LayersOpt = None,
                     epochs: EpochsOpt = None, batch_size: IntOpt = None, lr: FloatOpt = None,
                     weight_decay: FloatOpt = None, warmup: FloatOpt = None,
                     mask_ratio: Annotated[float, typer.Option(help="Tube-mask ratio.")] = 0.9,
                     seed: SeedOpt = 0, frames: FramesOpt = 16, windows: WindowsOpt = 16,
                     audio_feature: FeatureOpt = "logmel", frame_sampling: SamplingOpt = "even",
                     crop: CropOpt = "center", workers: PrepWorkersOpt = DEFAULT_WORKERS, in_memory: MemoryOpt = False,
                     accelerator: AccelOpt = "auto",
                     devices: DevicesOpt = "1", num_nodes: NodesOpt = 1, strategy: StrategyOpt = "auto",
                     precision: PrecisionOpt = "32-true", num_workers: WorkersOpt = 0,
                     progress: ProgressOpt = True) -> None:
        """Masked-autoencoder pre-training (90% tube masking) on the data set's fused clips (labels unused)."""
        from multimae_der.model.pretrain import pretrain
        from multimae_der.model.train import dataset_class_names

        cfg = _train_config("measured", layers, model=model, image_size=image_size, fusion=fusion, epochs=epochs,
                            batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
                            mask_ratio=mask_ratio, seed=seed, accelerator=accelerator, devices=_devices(devices),
                            num_nodes=num_nodes, strategy=strategy, precision=precision,
                            num_workers=num_workers)
        prep = _prepare_config(cfg, frames, windows, audio_feature, frame_sampling, crop)
        data = _load(dataset, root, cache, prep, labels, workers, progress, in_memory)
        names = dataset_class_names(data)
        info = _data_info(dataset, root, cache, data, labels, fold, num_folds, fold_seed)
        if fold is not None:
            data = _subset(data, _split(dataset, data, fold, num_folds, fold_seed)[0])
        pretrain(data, out, cfg, class_names=names, preprocessing=prep, data_info=info, progress=progress)
        console.print(f"pre-trained {out} on {len(data)} clips (start a classifier from it with --init-from {out})",
                      soft_wrap=True)
