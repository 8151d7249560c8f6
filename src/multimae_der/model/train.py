"""Training MultiMAE-DER on Lightning: AdamW, warm-up + cosine (or constant) learning rate, checkpoints, resume.

``train(train_data, RUN, TrainConfig(...))`` writes the run folder described in :mod:`multimae_der.model.run`.
Rerunning it on the same folder resumes from ``checkpoints/last.ckpt`` and reproduces the uninterrupted run:
the shuffling order comes from ``(seed, epoch)``, the global RNG is reseeded from ``(seed, epoch, rank)`` at
every epoch start, and RFAS orders from ``(seed, clip id)``.

Presets: ``measured`` (what reached 99% FSLF on a synthetic set: lr 1e-3, weight decay 0.05, batch 16, 5%
warm-up then cosine to 0) and ``paper`` (the official code: AdamW lr 1e-2 constant, weight decay 0.05, 100
epochs, batch 16).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from torchmetrics.classification import MulticlassConfusionMatrix
from transformers import VideoMAEConfig

from multimae_der.data.heldout import training_clip_ids
from multimae_der.model.collate import EpochShuffleSampler, FusionCollate
from multimae_der.model.fusion import FUSIONS, normalize
from multimae_der.model.metrics import metrics_from_confusion
from multimae_der.model.run import (
    CONFIG_FILE,
    HISTORY_FILE,
    WEIGHTS_FILE,
    read_run_config,
    save_weights,
    write_run_config,
)
from multimae_der.model.videomae import build_classifier, freeze_backbone, make_config

#: keys of TrainConfig that may change between attempts on one run folder (they do not change the result)
RUNTIME_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "precision", "num_workers")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in ``RUN/config.json``).

    Attributes:
        model: named architecture (``tiny``, ``small``, ``base``, ``large``); ``image_size`` overrides its size;
            ``model_overrides`` any other ``VideoMAEConfig`` field (e.g. ``{"num_hidden_layers": 2}``).
        fusion, num_frames, fusion_options: the fusion strategy and its options.
        epochs, batch_size, lr, weight_decay, warmup, schedule: the optimisation (``warmup`` is a fraction of
            the steps; ``schedule`` is ``cosine`` or ``constant``).
        linear_probe: freeze the encoder (the official code) instead of fine-tuning it (the paper's text).
        head_dropout: dropout before the classifier.
        init_from: initial weights: a ``save_pretrained`` folder, a pre-training run, or an original ``.pth``.
        mask_ratio: tube-mask ratio for :func:`multimae_der.model.pretrain.pretrain`.
        seed: seeds initialisation, shuffling, dropout and RFAS orders.
        accelerator, devices, num_nodes, strategy, precision: passed to ``lightning.Trainer``.
        num_workers: DataLoader workers (fusion runs in them).
    """

    model: str = "tiny"
    image_size: int | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    fusion: str = "fslf"
    num_frames: int = 16
    fusion_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 15
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    schedule: str = "cosine"
    linear_probe: bool = False
    head_dropout: float = 0.0
    init_from: str | None = None
    mask_ratio: float = 0.9
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion strategy {self.fusion!r}; known: {', '.join(FUSIONS.names())}")
        self.fusion = self.fusion.lower()
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """``TrainConfig`` from a named preset (``measured`` or ``paper``) plus overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**d)


PRESETS: dict[str, dict[str, Any]] = {
    # measured on SynthAV (README: synth defaults, fold 1 = 4 held-out actors): batch 8 gives twice the steps
    # of batch 16 at the same compute; 15 epochs on 20 training actors x 24 clips (900 steps) reach >= 0.9 WAR
    "measured": dict(lr=1e-3, weight_decay=0.05, epochs=15, batch_size=8, warmup=0.05, schedule="cosine"),
    "paper": dict(lr=1e-2, weight_decay=0.05, epochs=100, batch_size=16, warmup=0.0, schedule="constant"),
}


class WarmupCosine:
    """Learning-rate factor per step: linear warm-up over ``warmup_steps``, then cosine to 0 (or constant)."""

    def __init__(self, total_steps: int, warmup_steps: int, schedule: str = "cosine") -> None:
        self.total, self.warmup, self.schedule = max(1, total_steps), warmup_steps, schedule

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def adamw_with_schedule(module: L.LightningModule, params: Sequence[tuple[str, torch.nn.Parameter]], lr: float,
                        weight_decay: float, warmup: float, schedule: str) -> dict[str, Any]:
    """AdamW (no decay on biases and norms) with a per-step :class:`WarmupCosine` schedule."""
    decay = [p for n, p in params if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in params if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    total = int(module.trainer.estimated_stepping_batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(total, round(warmup * total), schedule))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class EmotionModule(L.LightningModule):
    """Cross-entropy training of a :class:`~multimae_der.model.videomae.MultiMAEClassifier` on fused uint8 frames.

    The model is rebuilt from the plain-dict HF config in ``hparams``, so a checkpoint needs no pickled
    objects.
    """

    def __init__(self, model_config: dict[str, Any], class_names: list[str], lr: float = 1e-3,
                 weight_decay: float = 0.05, warmup: float = 0.05, schedule: str = "cosine",
                 linear_probe: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_classifier(VideoMAEConfig.from_dict(dict(model_config)))
        if linear_probe:
            freeze_backbone(self.model)
        self.val_cm = MulticlassConfusionMatrix(len(class_names))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Logits of uint8 fused frames ``(B, F, 3, S, S)`` (normalised here, on the model's device)."""
        return self.model(pixel_values=normalize(frames)).logits

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # dropout draws from (seed, step, rank), whatever else touched the global RNG: resuming is exact
        torch.manual_seed(self.hparams.seed * 1_000_003 + self.global_step * 7919 + self.global_rank)

    def on_train_epoch_start(self) -> None:
        if self.hparams.linear_probe:
            self.model.videomae.eval()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self(batch["frames"])
        loss = F.cross_entropy(logits, batch["labels"])
        acc = (logits.argmax(-1) == batch["labels"]).float().mean()
        bs = len(batch["labels"])
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        self.log("train_acc", acc, on_step=False, on_epoch=True, batch_size=bs)
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=bs)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.val_cm.update(self(batch["frames"]).argmax(-1), batch["labels"])

    def on_validation_epoch_end(self) -> None:
        m = metrics_from_confusion(self.val_cm.compute())
        self.val_cm.reset()
        self.log("val_uar", m["uar"], prog_bar=True, sync_dist=False)
        self.log("val_war", m["war"], prog_bar=True, sync_dist=False)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self(batch["frames"])

    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        return adamw_with_schedule(self, list(self.model.named_parameters()), h.lr, h.weight_decay, h.warmup,
                                   h.schedule)


def dataset_class_names(dataset: Dataset) -> list[str] | None:
    """``dataset.class_names`` (looking through ``Subset`` wrappers), or None."""
    while True:
        names = getattr(dataset, "class_names", None)
        if names is not None:
            return list(names)
        if isinstance(dataset, Subset):
            dataset = dataset.dataset
        else:
            return None


def build_model_config(config: TrainConfig, class_names: Sequence[str]) -> VideoMAEConfig:
    """The encoder configuration of a training run: its architecture, image size, frames and classes."""
    return make_config(config.model, class_names=list(class_names), image_size=config.image_size,
                       num_frames=config.num_frames, head_dropout=config.head_dropout, **config.model_overrides)


def resolve_preprocessing(preprocessing: Any, data: Dataset | None, image_size: int) -> dict[str, Any]:
    """The run's preprocessing settings as a full :class:`~multimae_der.data.prepare.PrepareConfig` dict.

    ``preprocessing`` (a ``PrepareConfig`` or its dict) wins; else the config the dataset was prepared with;
    else the defaults at the model's image size (in-memory data). The image size must be the model's: the
    model never resizes on the fly, so prepare at its size (``--image-size``).
    """
    from multimae_der.data.datasets import prepare_config_of
    from multimae_der.data.prepare import PrepareConfig

    if isinstance(preprocessing, dict):
        preprocessing = PrepareConfig.from_dict(preprocessing) if preprocessing else None
    prep = preprocessing or prepare_config_of(data) or PrepareConfig(image_size=image_size)
    if prep.image_size != image_size:
        raise ValueError(f"the clips are prepared at {prep.image_size}x{prep.image_size} but the model expects "
                         f"{image_size}x{image_size}: prepare at the model's size (--image-size {image_size})")
    return prep.to_dict()


def _identity(cfg: dict[str, Any]) -> dict[str, Any]:
    """The parts of a run configuration that define the run, as they read back from JSON (where the cache
    lives and how many devices run it do not change the result)."""
    c = {k: v for k, v in json.loads(json.dumps(cfg, default=str)).items() if k != "format"}
    if isinstance(c.get("data"), dict):
        c["data"] = {k: v for k, v in c["data"].items() if k != "cache"}
    t = c.get("training", {})
    # the cosine/warm-up schedule depends on the total number of steps, so ``epochs`` defines the run; with a
    # constant rate and no warm-up a finished run may be extended by asking for more epochs
    extendable = t.get("schedule") == "constant" and not t.get("warmup")
    c["training"] = {k: v for k, v in t.items() if k not in RUNTIME_KEYS and not (extendable and k == "epochs")}
    return c


def prepare_run_folder(run_dir: Path, run_config: dict[str, Any]) -> bool:
    """Writes ``config.json``; on an existing run checks it is the same run. Returns True when resuming.

    ``checkpoints/last.ckpt`` is checked first (:func:`ffidelity.models.training.resume_checkpoint`): a planted pickle
    is refused with a ValueError, a damaged file is set aside with a warning and training starts over.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / CONFIG_FILE).exists():
        old = _identity(read_run_config(run_dir))
        new = _identity({"format": None, **run_config})
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if "training" in diff:
                ot, nt = old["training"], new["training"]
                diff += [f"training.{k}" for k in sorted(set(ot) | set(nt)) if ot.get(k) != nt.get(k)]
            raise ValueError(f"{run_dir} holds a different run (differs in {', '.join(diff)}); use a new folder")
    write_run_config(run_dir, run_config)
    from ffidelity.models.training import resume_checkpoint

    return resume_checkpoint(run_dir / "checkpoints" / "last.ckpt") is not None


def make_trainer(run_dir: Path, config: TrainConfig, *, monitor: str | None, progress: bool,
                 callbacks: Sequence[L.Callback] = (), steps_per_epoch: int = 1) -> tuple[L.Trainer, Any]:
    """A ``lightning.Trainer`` writing checkpoints (last, and best by ``monitor``) and CSV logs into ``run_dir``."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from ffidelity.models.training import EpochHistory, quiet_lightning

    quiet_lightning()
    warnings.filterwarnings("ignore", message=".*validation_step.*but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")  # resuming
    if monitor is not None:
        ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="max",
                               save_top_k=1, save_last=True, enable_version_counter=False)
    else:  # no validation: only last.ckpt, rewritten every epoch
        ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                               save_last=False, enable_version_counter=False)
    trainer = L.Trainer(
        max_epochs=config.epochs, accelerator=config.accelerator, devices=config.devices,
        num_nodes=config.num_nodes, strategy=config.strategy, precision=config.precision,
        default_root_dir=run_dir, callbacks=[EpochHistory(run_dir / HISTORY_FILE), ckpt, *callbacks],
        logger=CSVLogger(run_dir, name="logs"),
        enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
    )
    return trainer, ckpt


def load_init_weights(model: torch.nn.Module, source: str | Path) -> None:
    """Initial weights from a pre-training/classification run, a ``save_pretrained`` folder or a checkpoint file."""
    from multimae_der.model.convert import load_weights, read_state_dict

    source = Path(source)
    if source.is_dir():
        weights = next((source / n for n in ("model.safetensors", "pytorch_model.bin") if (source / n).is_file()),
                       None)
        if weights is None:
            raise FileNotFoundError(f"{source} has no model.safetensors or pytorch_model.bin")
    else:
        weights = source
    load_weights(model, read_state_dict(weights), source=str(weights))


def train(train_data: Dataset, run_dir: str | Path, config: TrainConfig | None = None, *,
          val_data: Dataset | None = None, class_names: Sequence[str] | None = None,
          preprocessing: Any = None, data_info: dict[str, Any] | None = None, progress: bool = True,
          callbacks: Sequence[L.Callback] = ()) -> Path:
    """Trains a classifier into ``run_dir`` (resuming from ``checkpoints/last.ckpt`` when present).

    Args:
        train_data: a Dataset of contract items (``video``, ``audio``, ``label``, ``path``, ...).
        run_dir: the run folder (see :mod:`multimae_der.model.run`).
        config: hyper-parameters (default ``TrainConfig()``, the measured recipe on the tiny model).
        val_data: optional validation items: enables ``val_uar``/``val_war`` logs and ``best.ckpt``.
        class_names: default ``train_data.class_names``.
        preprocessing: the data side's :class:`~multimae_der.data.prepare.PrepareConfig` (or its dict), stored so
            ``predict`` can redo it on a new file (default: the config ``train_data`` was prepared with).
        data_info: where the data came from (``dataset``, ``root``, ``cache``, ``label_set``, ``fold``, ...),
            stored as ``data`` so ``evaluate --run`` needs nothing else.
        progress: show Lightning's progress bar.
        callbacks: extra Lightning callbacks.

    Returns:
        ``run_dir``; ``run_dir/model.safetensors`` holds the final (last-epoch) weights.
    """
    config = config or TrainConfig()
    run_dir = Path(run_dir)
    names = list(class_names) if class_names is not None else dataset_class_names(train_data)
    if not names:
        raise ValueError("class names are unknown: pass class_names or give the dataset a class_names attribute")
    if len(train_data) == 0:
        raise ValueError("the training set is empty")
    mcfg = build_model_config(config, names)
    run_config = {
        "kind": "classifier",
        "class_names": names,
        "model": mcfg.to_dict(),
        "fusion": {"strategy": config.fusion, "num_frames": config.num_frames, "seed": config.seed,
                   "options": dict(config.fusion_options)},
        "preprocessing": resolve_preprocessing(preprocessing, train_data, mcfg.image_size),
        "data": dict(data_info or {}),
        "training": config.to_dict(),
    }
    trained_on = training_clip_ids(train_data)
    if trained_on is not None:  # so explanations and faithfulness can refuse to score clips the run saw
        run_config["data"]["train_clips"] = trained_on
    L.seed_everything(config.seed, verbose=False)
    module = EmotionModule(mcfg.to_dict(), names, lr=config.lr, weight_decay=config.weight_decay,
                           warmup=config.warmup, schedule=config.schedule, linear_probe=config.linear_probe,
                           seed=config.seed)
    if config.init_from:  # before anything is written: weights that do not fit leave no half-made run folder
        load_init_weights(module.model, config.init_from)  # (a resumed run then restores last.ckpt over them)
    resuming = prepare_run_folder(run_dir, run_config)
    collate = FusionCollate(config.fusion, num_frames=config.num_frames, seed=config.seed,
                            image_size=mcfg.image_size, options=dict(config.fusion_options))
    loader = DataLoader(train_data, batch_size=config.batch_size,
                        sampler=EpochShuffleSampler(len(train_data), config.seed), collate_fn=collate,
                        num_workers=config.num_workers, persistent_workers=config.num_workers > 0)
    val_loader = (DataLoader(val_data, batch_size=config.batch_size, shuffle=False, collate_fn=collate,
                             num_workers=config.num_workers) if val_data is not None else None)
    trainer, _ = make_trainer(run_dir, config, monitor="val_uar" if val_loader is not None else None,
                              progress=progress, callbacks=callbacks, steps_per_epoch=len(loader))
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer.fit(module, loader, val_loader, ckpt_path=str(last) if resuming else None, weights_only=True)
    if trainer.is_global_zero:
        save_weights(module.model, run_dir / WEIGHTS_FILE)
    return run_dir
