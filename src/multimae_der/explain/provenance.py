"""Moving maps between the fused frames the model sees and the clip's sources (video frames, audio pictures).

Every fusion strategy records, per fused frame, which source frame and source region filled which part of it
(:class:`multimae_der.model.fusion.FusionLayout`). This module uses that record in both directions:

* sources -> fused: :func:`project_to_fused` puts a map defined on the sources (e.g. SynthAV's ground-truth cue
  pixels) where the fusion put those pixels, exactly as the fusion mixes pixels (resized regions averaged,
  SFAS halves weighted 0.5);
* fused -> sources: :func:`source_maps` gives each source pixel its share of the attribution mass of the fused
  pixels it went into (``FusionLayout.backproject`` on ``|attribution|``, so mass is conserved), then
  :func:`modality_share`, :func:`timeline` and :func:`region_mass` summarise it per modality, per source
  frame and per region;
* modality units: :func:`modality_labels` / :func:`modality_units` label every fused pixel video (0) or audio
  (1) for a modality ablation through the F-Fidelity engine;
* :class:`ClipExplanation`: one explainer's explanation of one clip, mapped back to the sources (what
  :mod:`multimae_der.explain.attributions` produces and :mod:`multimae_der.explain.plots` draws).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ffidelity.units.video import GroupUnits
from multimae_der.model.fusion import MODALITIES, FusionLayout


def project_to_fused(layout: FusionLayout, maps: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Places per-source maps onto the fused frames the way the fusion placed the source pixels.

    Args:
        layout: the clip's fusion layout.
        maps: ``{modality: (n, S, S)}`` (or ``(n, C, S, S)``) float maps over that modality's source frames;
            a modality left out contributes nothing.

    Returns:
        ``(F, S, S)`` (or ``(F, C, S, S)``): each fused pixel = sum over its sources of weight x the mean of the
        source block resized into it. Projecting the source images themselves gives the fused frames (up to
        the fusion's uint8 rounding).
    """
    if not maps:
        raise ValueError("no source maps to project")
    first = next(iter(maps.values()))
    lead = tuple(first.shape[1:-2])
    out = torch.zeros(layout.num_frames, *lead, layout.size, layout.size, dtype=torch.float32)
    for modality, m in maps.items():
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        if m.shape[-1] != layout.size or m.shape[-2] != layout.size or tuple(m.shape[1:-2]) != lead:
            raise ValueError(f"{modality} map of shape {tuple(m.shape)} does not fit the layout's "
                             f"{layout.size}x{layout.size} frames")
    for f, pieces in enumerate(layout.frames):
        for p in pieces:
            if p.modality not in maps:
                continue
            src = maps[p.modality]
            if p.index >= src.shape[0]:
                raise ValueError(f"the layout uses {p.modality} frame {p.index} but the map has {src.shape[0]}")
            t, b, left, r = p.out_box
            st, sb, sl, sr = p.src_box
            region = src[p.index, ..., st:sb, sl:sr].float()
            fy, fx = (sb - st) // (b - t), (sr - sl) // (r - left)
            region = region.unflatten(-1, (r - left, fx)).unflatten(-3, (b - t, fy)).mean(dim=(-1, -3))
            out[f, ..., t:b, left:r] += p.weight * region
    return out


def source_maps(layout: FusionLayout, attribution: torch.Tensor, num_sources: Mapping[str, int]
                ) -> dict[str, torch.Tensor]:
    """Attribution mass per source pixel: ``|attribution|`` summed over channels, then back-projected.

    Args:
        layout: the clip's fusion layout.
        attribution: ``(F, C, S, S)`` or ``(F, S, S)`` attribution of the fused frames.
        num_sources: source frames per modality (``{"video": T, "audio": N}``).

    Returns:
        ``{modality: (n, S, S)}`` non-negative maps; their total equals the fused attribution's total mass.
    """
    mass = attribution.detach().float().abs()
    if mass.dim() == 4:
        mass = mass.sum(1)
    return layout.backproject(mass, num_sources)


def modality_share(maps: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of the attribution mass on each modality (0 for both when there is no mass at all)."""
    totals = {m: float(v.sum()) for m, v in maps.items()}
    total = sum(totals.values())
    return {m: (v / total if total > 0 else 0.0) for m, v in totals.items()}


def timeline(maps: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Attribution mass per source frame (video) / window (audio): ``{modality: (n,)}``."""
    return {m: v.flatten(1).sum(1) for m, v in maps.items()}


def region_mass(source: torch.Tensor, grid: tuple[int, int] = (4, 4)) -> torch.Tensor:
    """Attribution mass per region of every source frame: ``(n, S, S)`` -> ``(n, gy, gx)``.

    For audio pictures rows are frequency bands (row 0 = the highest frequencies, the picture's top) and
    columns are time slices of the window. Regions at the far edges are smaller when S is not a multiple.
    """
    n, h, w = source.shape
    gy, gx = grid
    if gy < 1 or gx < 1 or gy > h or gx > w:
        raise ValueError(f"region grid {grid} does not fit {h}x{w} frames")
    ys = torch.div(torch.arange(h) * gy, h, rounding_mode="floor")
    xs = torch.div(torch.arange(w) * gx, w, rounding_mode="floor")
    cell = (ys[:, None] * gx + xs[None, :]).flatten()
    out = torch.zeros(n, gy * gx, dtype=source.dtype)
    out.index_add_(1, cell, source.reshape(n, -1))
    return out.reshape(n, gy, gx)


def modality_labels(layout: FusionLayout) -> torch.Tensor:
    """Long ``(F, S, S)``: 0 where a fused pixel comes from the video, 1 from the audio.

    Raises:
        ValueError: for a layout whose pixels mix both modalities (SFAS): no pixel can be removed for one
            modality alone on the fused input.
    """
    video, audio = layout.modality_mask("video"), layout.modality_mask("audio")
    mixed = (video > 0) & (audio > 0)
    if bool(mixed.any()):
        raise ValueError(f"{layout.strategy} mixes video and audio in the same fused pixels, so a modality "
                         "cannot be removed on the fused input; ablate it at the source instead")
    labels = torch.full(video.shape, -1, dtype=torch.long)
    labels[video > 0] = 0
    labels[audio > 0] = 1
    return labels


def modality_units(layouts: Sequence[FusionLayout], inputs: torch.Tensor | None = None,
                   reference: float = 0.0) -> GroupUnits:
    """Two units per fused clip, all its video-derived pixels and all its audio-derived pixels.

    Args:
        layouts: one layout per clip of ``inputs``.
        inputs: the fused clips ``(B, F, 3, S, S)``; needed when the layouts differ between clips (RFAS).
        reference: what a removed pixel becomes (0.0 = the mean colour after normalisation).
    """
    if not layouts:
        raise ValueError("no layouts")
    first = layouts[0]
    if all(lay == first for lay in layouts):
        return GroupUnits(modality_labels(first), channel_dim=2, reference=reference, names=MODALITIES)
    if inputs is None or inputs.shape[0] != len(layouts):
        raise ValueError("clips with different layouts (RFAS) need their fused inputs, one per layout")
    labels = torch.stack([modality_labels(lay) for lay in layouts])
    return GroupUnits(labels, inputs=inputs, channel_dim=2, reference=reference, names=MODALITIES)


@dataclass
class ClipExplanation:
    """One explainer's explanation of one clip, mapped back to the sources.

    Attributes:
        explainer: registered explainer name.
        target: the explained class; ``predicted`` / ``probability``: the model's prediction and its probability.
        sources: ``{modality: (n, S, S)}`` attribution mass per source pixel.
        share: fraction of the mass per modality.
        timeline: mass per source frame / audio window.
        regions: mass per region of each source frame, ``(n, gy, gx)`` (audio rows: high to low frequency).
        used: the source indices the fusion used, per modality.
        gt_overlap: for clips with ground truth, the fraction of each modality's mass on the true cue pixels.
        gt_area: the fraction of the used source pixels that are cue pixels: what ``gt_overlap`` would be for
            an explanation that spreads its mass evenly (the chance level).
    """

    explainer: str
    target: int
    predicted: int
    probability: float
    sources: dict[str, torch.Tensor]
    share: dict[str, float]
    timeline: dict[str, torch.Tensor]
    regions: dict[str, torch.Tensor]
    used: dict[str, list[int]]
    gt_overlap: dict[str, float] = field(default_factory=dict)
    gt_area: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"explainer": self.explainer, "target": self.target, "predicted": self.predicted,
                "probability": self.probability, "share": self.share,
                "timeline": {m: v.tolist() for m, v in self.timeline.items()},
                "regions": {m: v.tolist() for m, v in self.regions.items()}, "used": self.used,
                "gt_overlap": self.gt_overlap, "gt_area": self.gt_area}
