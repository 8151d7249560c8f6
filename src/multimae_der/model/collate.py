"""Batching clips for the model: stack, fuse (batched) and hand uint8 frames to the model's device.

Fusion happens here, in the ``DataLoader`` (and its workers), on whole batches; the float normalisation happens
on the model's device (:func:`multimae_der.model.fusion.normalize`), so a batch travels as 4x smaller uint8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ffidelity.models.samplers import EpochShuffleSampler  # noqa: F401  (re-exported: train and pretrain use it)
from multimae_der.model.fusion import fuse_batch


def clip_id(item: dict[str, Any], position: int) -> int | str:
    """The id that seeds a clip's RFAS order: its ``index`` if the item has one, else its ``path``."""
    if "index" in item:
        return int(item["index"])
    if item.get("path"):
        return str(item["path"])
    return position


def stack_items(items: Sequence[dict[str, Any]], key: str) -> torch.Tensor:
    """Stacks ``item[key]`` of every item, with an error naming the clip whose shape differs."""
    first = items[0][key]
    for it in items:
        t = it[key]
        if not isinstance(t, torch.Tensor) or t.shape != first.shape:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"clip {it.get('path', '?')}: {key} has shape {shape}, others in the batch "
                             f"{tuple(first.shape)}")
    return torch.stack([it[key] for it in items])


@dataclass
class FusionCollate:
    """``collate_fn`` turning contract items into ``{"frames": uint8 (B, F, 3, S, S), "labels", "paths"}``.

    Args:
        fusion: a fusion strategy name (see :data:`multimae_der.model.fusion.FUSIONS`).
        num_frames: frames per fused clip.
        seed: run seed for RFAS (each clip's order comes from ``(seed, clip id)``).
        image_size: when given, clips of another size are rejected with a clear error.
        options: strategy options (e.g. ``{"mode": "clip"}`` for SFAS).
    """

    fusion: str
    num_frames: int = 16
    seed: int = 0
    image_size: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            raise ValueError("empty batch")
        video, audio = stack_items(items, "video"), stack_items(items, "audio")
        if self.image_size is not None and video.shape[-1] != self.image_size:
            raise ValueError(f"clips are {video.shape[-2]}x{video.shape[-1]} but the model expects "
                             f"{self.image_size}x{self.image_size}: preprocess at that size")
        frames, _ = fuse_batch(self.fusion, video, audio, num_frames=self.num_frames, seed=self.seed,
                               clip_ids=[clip_id(it, i) for i, it in enumerate(items)], **self.options)
        out: dict[str, Any] = {"frames": frames, "paths": [str(it.get("path", "")) for it in items]}
        if all("label" in it for it in items):
            out["labels"] = torch.tensor([int(it["label"]) for it in items], dtype=torch.long)
        return out
