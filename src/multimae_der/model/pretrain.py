"""Masked-autoencoder pre-training of the encoder on unlabeled fused clips (VideoMAE, 90% tube masking).

Tube masking hides the same spatial patches in every tubelet slice, and the same number of them in every
clip (VideoMAE's pre-training model needs an equal count per sample). The run folder holds the pre-training
model's weights; a classifier starts from them with ``TrainConfig(init_from=RUN)`` (the encoder keys match:
``clf.videomae.load_state_dict(pre.videomae.state_dict())``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import VideoMAEConfig

from multimae_der.model.collate import EpochShuffleSampler, FusionCollate
from multimae_der.model.fusion import normalize
from multimae_der.model.run import WEIGHTS_FILE, save_weights
from multimae_der.model.train import (
    TrainConfig,
    adamw_with_schedule,
    build_model_config,
    make_trainer,
    prepare_run_folder,
    resolve_preprocessing,
)
from multimae_der.model.videomae import MultiMAEPreTraining, build_pretrainer


def tube_mask(batch_size: int, config: VideoMAEConfig, ratio: float = 0.9,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A boolean ``(B, seq_len)`` mask (True = hidden): per clip, ``floor(ratio * P)`` of the ``P`` spatial
    patches, hidden in all ``T / tubelet`` slices (token order: time-major, as VideoMAE's patch embedding)."""
    per_frame = (config.image_size // config.patch_size) ** 2
    slices = config.num_frames // config.tubelet_size
    n_mask = int(ratio * per_frame)
    if not 0 < n_mask < per_frame:
        raise ValueError(f"mask ratio {ratio} hides {n_mask} of {per_frame} patches per frame: nothing would be "
                         "hidden or visible")
    order = torch.rand(batch_size, per_frame, generator=generator).argsort(dim=1)
    spatial = torch.zeros(batch_size, per_frame, dtype=torch.bool)
    spatial.scatter_(1, order[:, :n_mask], True)
    return spatial.repeat(1, slices)


class PretrainModule(L.LightningModule):
    """Reconstruction of the hidden tubes (normalised-pixel MSE, VideoMAE's loss)."""

    def __init__(self, model_config: dict[str, Any], mask_ratio: float = 0.9, lr: float = 1e-3,
                 weight_decay: float = 0.05, warmup: float = 0.05, schedule: str = "cosine", seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model: MultiMAEPreTraining = build_pretrainer(VideoMAEConfig.from_dict(dict(model_config)))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # dropout draws from (seed, step, rank), whatever else touched the global RNG: resuming is exact
        torch.manual_seed(self.hparams.seed * 1_000_003 + self.global_step * 7919 + self.global_rank)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        frames = batch["frames"]
        gen = torch.Generator().manual_seed(self.hparams.seed * 1_000_003 + self.global_step * 31 + self.global_rank)
        mask = tube_mask(frames.shape[0], self.model.config, self.hparams.mask_ratio, gen).to(frames.device)
        loss = self.model(pixel_values=normalize(frames), bool_masked_pos=mask).loss
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=frames.shape[0])
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        return adamw_with_schedule(self, list(self.model.named_parameters()), h.lr, h.weight_decay, h.warmup,
                                   h.schedule)


def pretrain(data: Dataset, run_dir: str | Path, config: TrainConfig | None = None, *,
             class_names: Sequence[str] | None = None, preprocessing: Any = None,
             data_info: dict[str, Any] | None = None, progress: bool = True,
             callbacks: Sequence[L.Callback] = ()) -> Path:
    """Pre-trains the encoder on ``data`` (labels unused) into ``run_dir``; resumable like ``train``.

    ``class_names`` only sizes the (unused) head in the stored config so a classifier config can be derived;
    ``preprocessing`` and ``data_info`` are recorded as in :func:`multimae_der.model.train.train`.
    """
    config = config or TrainConfig()
    run_dir = Path(run_dir)
    if len(data) == 0:
        raise ValueError("the pre-training set is empty")
    mcfg = build_model_config(config, list(class_names) if class_names else ["unused"])
    run_config = {"kind": "pretrain", "class_names": list(class_names or []), "model": mcfg.to_dict(),
                  "fusion": {"strategy": config.fusion, "num_frames": config.num_frames, "seed": config.seed,
                             "options": dict(config.fusion_options)},
                  "preprocessing": resolve_preprocessing(preprocessing, data, mcfg.image_size),
                  "data": dict(data_info or {}), "training": config.to_dict()}
    resuming = prepare_run_folder(run_dir, run_config)
    L.seed_everything(config.seed, verbose=False)
    module = PretrainModule(mcfg.to_dict(), mask_ratio=config.mask_ratio, lr=config.lr,
                            weight_decay=config.weight_decay, warmup=config.warmup, schedule=config.schedule,
                            seed=config.seed)
    collate = FusionCollate(config.fusion, num_frames=config.num_frames, seed=config.seed,
                            image_size=mcfg.image_size, options=dict(config.fusion_options))
    loader = DataLoader(data, batch_size=config.batch_size, sampler=EpochShuffleSampler(len(data), config.seed),
                        collate_fn=collate, num_workers=config.num_workers, drop_last=len(data) > config.batch_size)
    trainer, _ = make_trainer(run_dir, config, monitor=None, progress=progress, callbacks=callbacks,
                              steps_per_epoch=len(loader))
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer.fit(module, loader, ckpt_path=str(last) if resuming else None, weights_only=True)
    if trainer.is_global_zero:
        save_weights(module.model, run_dir / WEIGHTS_FILE)
    return run_dir
