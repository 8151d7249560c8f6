"""Supervised training of a classifier on Lightning, with an optional per-batch input transform.

One trainer serves training from scratch (the demo's models, ROAR's retraining) and F-Fidelity's random-mask
fine-tuning: the difference is only the ``transform`` applied to each batch. Checkpoints (best by validation
accuracy when validation data is given, and ``last.ckpt``), CSV logs, resume after a kill, and a final
``model.safetensors`` that makes a finished run a cache hit.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ffidelity.models.samplers import EpochShuffleSampler
from ffidelity.utils import atomic
from ffidelity.utils.modelio import logits_of

BatchTransform = Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, torch.Tensor]]


class CorruptFileWarning(UserWarning):
    """A damaged checkpoint or cached result was found and is rebuilt."""


def resume_checkpoint(path: str | Path) -> Path | None:
    """``path`` when it is a Lightning checkpoint to resume from; ``None`` when there is none.

    The file is read with ``torch.load(weights_only=True)`` first, so nothing in it can run code. A damaged file
    (cut short, not a checkpoint) is renamed to ``<name>.corrupt`` with a :class:`CorruptFileWarning` and
    training starts over.

    Raises:
        ValueError: the file holds pickled objects other than tensors and plain containers (never unpickled).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} holds objects other than tensors and plain containers; refusing to unpickle "
                         f"it (checkpoints are read with weights_only=True; delete the file to start over): "
                         f"{last}") from None
    except Exception as exc:  # a damaged file: torch raises RuntimeError, EOFError, OSError, ... depending on where
        bad = path.with_name(path.name + ".corrupt")
        with contextlib.suppress(FileNotFoundError):  # another process of a multi-GPU run moved it already
            os.replace(path, bad)
        warnings.warn(f"{path} is damaged ({type(exc).__name__}); moved it to {bad.name} and training starts "
                      "over", CorruptFileWarning, stacklevel=2)
        return None
    return path


class EpochHistory(L.Callback):
    """Per-epoch training metrics that survive a kill: written atomically to ``path`` when ``fit`` ends.

    The mean training loss of each epoch (and the ``val_*`` metrics of an epoch with validation) is recorded
    BEFORE Lightning writes that epoch's checkpoint (checkpoint callbacks run last), and the history travels
    inside the checkpoint, so a run resumed after a kill ends with the history of an uninterrupted one. (CSV logs
    are flushed later than checkpoints: a kill in between loses an epoch from them.)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.history: list[dict[str, float]] = []
        self._sum, self._count = 0.0, 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sum, self._count = 0.0, 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._sum += float(loss.detach())
            self._count += 1

    def _record(self, trainer: L.Trainer) -> None:
        epoch = int(trainer.current_epoch)
        if self._count == 0 or (self.history and self.history[-1]["epoch"] == epoch):
            return
        row = {"epoch": epoch, "step": int(trainer.global_step), "train_loss": self._sum / self._count}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")})
        self.history.append(row)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # also when a finished run is "resumed": the history comes from last.ckpt
            atomic.write_json(self.path, self.history)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(r) for r in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(r) for r in state_dict.get("history", [])]


SCHEDULES = ("constant", "cosine")


class ClassifierModule(L.LightningModule):
    """Cross-entropy training of ``model``; ``transform`` maps each raw batch to ``(x, y)``.

    The global RNG (the transform's random masks, dropout) is reseeded from ``(seed, step, rank)`` before every
    step, so a run resumed from ``last.ckpt`` draws exactly what an uninterrupted one would.
    """

    def __init__(self, model: nn.Module, transform: BatchTransform | None = None, lr: float = 1e-3,
                 weight_decay: float = 0.0, optimizer: str = "adam", seed: int = 0, schedule: str = "constant"
                 ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.save_hyperparameters(ignore=["model", "transform"])
        self.model = model
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(x))

    def _xy(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        batch = tuple(batch)
        return self.transform(batch) if self.transform is not None else (batch[0], batch[1])

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        torch.manual_seed(self.hparams.seed * 1_000_003 + self.global_step * 7919 + self.global_rank)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = self._xy(batch)
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = self._xy(batch)
        self.log("val_acc", (self(x).argmax(-1) == y).float().mean(), prog_bar=True, on_epoch=True)

    def configure_optimizers(self) -> Any:
        opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[self.hparams.optimizer]
        opt = opt_cls(self.model.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.get("schedule", "constant") == "constant":
            return opt
        # cosine decay to zero over the whole run, stepped per batch: training ends in a flat region instead of
        # wherever the last large step landed (its state is in the checkpoint, so a resumed run decays the same)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def quiet_lightning() -> None:
    """Silences Lightning's start-up chatter (GPU/TPU lines, tips); warnings and errors still show."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.rank_zero", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Two warnings that say nothing to a user: validation is optional by design, and the pytree one is
    # Lightning's own deprecation of a torch internal.
    warnings.filterwarnings("ignore", message=r".*defined a `validation_step` but have no `val_dataloader`")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def as_loader(data: Any, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """A ``DataLoader`` from a loader, a ``Dataset``, or a tuple of tensors ``(x, y, ...)``.

    Shuffling draws each epoch's order from ``(seed, epoch)`` (:class:`~ffidelity.models.samplers.EpochShuffleSampler`),
    so a resumed run sees the orders of an uninterrupted one.
    """
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in data):
        if len(data) < 2:
            raise ValueError("tensor data must be at least (x, y)")
        n = data[0].shape[0]
        if any(t.shape[0] != n for t in data):
            raise ValueError(f"data tensors disagree on their number of rows: {[t.shape[0] for t in data]}")
        if n == 0:
            raise ValueError("the training data is empty")
        data = TensorDataset(data[0], data[1].long(), *data[2:])
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a DataLoader, a Dataset or a tuple of tensors, got {type(data).__name__}")
    sampler = EpochShuffleSampler(len(data), seed) if shuffle else None  # type: ignore[arg-type]
    return DataLoader(data, batch_size=batch_size, sampler=sampler)


def trainable_copy(model: nn.Module) -> nn.Module:
    """A deep copy whose parameters can be trained, TorchScript modules included.

    ``copy.deepcopy`` of a ``ScriptModule`` gives parameters that are not leaves (the optimiser refuses them), so
    those round-trip through ``torch.jit.save`` / ``torch.jit.load`` instead.
    """
    if isinstance(model, torch.jit.ScriptModule):
        buf = io.BytesIO()
        torch.jit.save(model, buf)
        buf.seek(0)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        return torch.jit.load(buf, map_location=device).train(model.training)
    return copy.deepcopy(model)


def fit_classifier(
    model: nn.Module,
    train_data: Any,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    batch_size: int = 128,
    transform: BatchTransform | None = None,
    val_data: Any = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    accelerator: str = "auto",
    devices: int | str = 1,
    trainer_kwargs: dict[str, Any] | None = None,
    schedule: str = "constant",
) -> nn.Module:
    """Trains a copy of ``model``; returns it in eval mode on the CPU (``model`` itself is untouched).

    Args:
        model: any classifier returning logits or an output with ``.logits``.
        train_data: a ``DataLoader``, a ``Dataset`` or a tuple of tensors ``(x, y, ...)``.
        epochs, lr, weight_decay, optimizer, batch_size: optimisation settings.
        schedule: ``"constant"`` learning rate, or ``"cosine"`` decay to zero over the run (per step).
        transform: maps each batch tuple to the ``(x, y)`` the model trains on (e.g. random masking).
        val_data: when given, the weights with the best validation accuracy are returned.
        out_dir: checkpoints, CSV logs and ``model.safetensors``; a rerun resumes from ``last.ckpt``, and a run
            whose ``model.safetensors`` exists is loaded instead of retrained.
        seed: seeds initialisation-independent randomness: shuffling and the transform's draws.
        progress: show Lightning's progress bar.
        accelerator, devices, trainer_kwargs: passed to ``lightning.Trainer`` (e.g. ``strategy="ddp"``).
    """
    from safetensors.torch import load_file, save_file

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    trained = trainable_copy(model)
    final = Path(out_dir) / "model.safetensors" if out_dir is not None else None
    if final is not None and final.exists():
        try:
            state = load_file(str(final))
        except Exception as exc:  # safetensors raises its own error type for a cut-short file
            warnings.warn(f"{final} is damaged ({type(exc).__name__}: {exc}); training again", CorruptFileWarning,
                          stacklevel=2)
            final.unlink()
        else:
            try:
                trained.load_state_dict(state)
            except RuntimeError as exc:
                raise ValueError(f"{final} does not fit the model (written by another configuration? use a new "
                                 f"folder): {str(exc).strip().splitlines()[-1]}") from None
            return trained.eval()

    quiet_lightning()
    L.seed_everything(seed, workers=True, verbose=False)
    trained.train()
    train_loader = as_loader(train_data, batch_size, shuffle=True, seed=seed)
    val_loader = as_loader(val_data, batch_size, shuffle=False, seed=seed) if val_data is not None else None
    module = ClassifierModule(trained, transform, lr=lr, weight_decay=weight_decay, optimizer=optimizer, seed=seed,
                              schedule=schedule)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(out_dir) if out_dir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        ckpt = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=root / "checkpoints", save_last=True, save_top_k=1, mode="max",
            monitor="val_acc" if val_loader is not None else None,
        )
        trainer = L.Trainer(
            max_epochs=epochs, accelerator=accelerator, devices=devices, default_root_dir=root,
            callbacks=[EpochHistory(root / "history.json"), ckpt],
            logger=L.pytorch.loggers.CSVLogger(root, name="logs") if out_dir is not None else False,
            enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
            log_every_n_steps=max(1, min(50, len(train_loader))),
            **(trainer_kwargs or {}),
        )
        last = resume_checkpoint(root / "checkpoints" / "last.ckpt")
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if last else None, weights_only=True)
        if val_loader is not None and ckpt.best_model_path:
            state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)
    trained = module.model.cpu().eval()
    if final is not None:
        with atomic.atomic_path(final) as tmp_path:
            save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(tmp_path))
    return trained
