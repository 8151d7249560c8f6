"""Explaining the emotion model: attributions over the fused input, mapped back to frames and audio windows.

The model sees one tensor per clip, the fused normalised frames ``(F, 3, S, S)``. Attributions are computed
there with :func:`ffidelity.explainers.explain` (Captum underneath), through :class:`EmotionLogits`, which
turns the Hugging Face classifier (``pixel_values=`` in, an output object out) into a plain logits module.
They are then sent back to their sources with the clip's :class:`~multimae_der.model.fusion.FusionLayout`, whatever
the fusion strategy: per video frame and region, per audio window and time-frequency region, and summarised as
the modality share (fraction of ``|attribution|`` mass on video vs audio) and a timeline.

Explainers are those of :data:`ffidelity.explainers.EXPLAINERS` (``saliency``, ``integrated_gradients`` (alias
``ig``), ``smoothgrad``, ``sg_sq``, ``occlusion``, ``random``, ...) plus ``vit_gradcam``, registered here:
Grad-CAM on the tokens of the last encoder block, the ViT counterpart of Grad-CAM on the last conv block
(``gradcam`` is an alias of it for this model). Occlusion slides a tube-shaped window, one token at a time.

Caveat, by construction: SFAS averages a video frame and an audio picture into every fused pixel, so any
fused-input attribution splits 50/50 between the modalities; use the modality ablation there
(:mod:`multimae_der.explain.faithfulness`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ffidelity.explainers.core import EXPLAINERS
from ffidelity.explainers.core import explain as _ffid_explain
from ffidelity.explainers.core import resolve_explainer as ffidelity_resolve
from multimae_der.explain.provenance import (
    ClipExplanation,
    modality_share,
    region_mass,
    source_maps,
    timeline,
)
from multimae_der.model.collate import clip_id
from multimae_der.model.fusion import MODALITIES, FusionLayout, fuse_batch, normalize
from multimae_der.model.run import Run, load_run

#: short names accepted everywhere an explainer is named for the emotion model.
EXPLAINER_ALIASES: dict[str, str] = {"ig": "integrated_gradients", "gradcam": "vit_gradcam"}

#: settings that keep each explainer affordable on a CPU (any can be overridden per call).
EXPLAINER_DEFAULTS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 16, "internal_batch_size": 32},
    "sg_sq": {"n_steps": 8, "nt_samples": 4, "internal_batch_size": 32},
    "smoothgrad": {"nt_samples": 8},
}

DEFAULT_EXPLAINERS: tuple[str, ...] = ("integrated_gradients", "saliency", "sg_sq", "occlusion")


class EmotionLogits(nn.Module):
    """``(B, F, 3, S, S)`` normalised fused frames -> ``(B, classes)`` logits of a VideoMAE classifier.

    Captum, the F-Fidelity engine and the trainer all want a module that maps one tensor to logits; the HF
    classifier takes ``pixel_values=`` and returns an output object. The state dict keys are the classifier's
    with a ``model.`` prefix.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def token_model(self) -> nn.Module:
        """The HF classifier this module calls as ``model(pixel_values=x).logits`` (for token dropping)."""
        return self.model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def resolve_explainer(name: str) -> str:
    """The registered name of ``name`` (aliases resolved), with a clear error for unknown names."""
    return ffidelity_resolve(name, EXPLAINER_ALIASES)


def explainer_options(name: str, config: Any, **overrides: Any) -> dict[str, Any]:
    """Options for explainer ``name`` on a model with VideoMAE ``config`` (tube window for occlusion)."""
    name = resolve_explainer(name)
    opts = dict(EXPLAINER_DEFAULTS.get(name, {}))
    if name == "occlusion":
        p = int(config.patch_size)
        opts.update(window=(int(config.tubelet_size), p, p), channel_dim=2)
    opts.update(overrides)
    return opts


# -- the ViT Grad-CAM ------------------------------------------------------------------------------------------
def _videomae_parts(model: nn.Module) -> tuple[nn.Module, Any]:
    """The last encoder block and the config of the VideoMAE inside ``model``."""
    blocks = [m for m in model.modules() if type(m).__name__ == "VideoMAELayer"]
    configs = [m.config for m in model.modules() if hasattr(getattr(m, "config", None), "tubelet_size")]
    if not blocks or not configs:
        raise ValueError("vit_gradcam needs a VideoMAE model (encoder blocks of type VideoMAELayer); for other "
                         "models use saliency, integrated_gradients, sg_sq or occlusion")
    return blocks[-1], configs[0]


@EXPLAINERS.register("vit_gradcam")
def vit_gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: nn.Module | None = None
                ) -> torch.Tensor:
    """Grad-CAM on the token outputs of the last VideoMAE encoder block (Selvaraju et al. 2017, ViT form).

    Each hidden channel is weighted by its gradient averaged over tokens; a token's score is the ReLU of its
    weighted activation sum. With MultiMAE-DER's mean-pooling head this is the class activation map of the
    tokens. The score of a token is spread evenly over its tube's pixels and channels, so summing the result
    over a tube (``ffidelity.VideoUnits``) gives the token's score back.
    """
    block, config = _videomae_parts(model)
    layer = layer or block
    b, t, c, h, w = x.shape
    tub, p = int(config.tubelet_size), int(config.patch_size)
    grid = (t // tub, h // p, w // p)
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, (tuple, list)) else output)

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(x.detach().requires_grad_(True))  # a gradient path even with a frozen encoder
            acts = captured[-1]
            score = logits.gather(1, target.view(-1, 1)).sum()
            grads = torch.autograd.grad(score, acts)[0]
    finally:
        handle.remove()
    if acts.shape[1] != grid[0] * grid[1] * grid[2]:
        raise ValueError(f"vit_gradcam: {acts.shape[1]} tokens do not form the {grid} tube grid of inputs "
                         f"{tuple(x.shape)}")
    cam = torch.relu((grads.mean(1, keepdim=True) * acts).sum(-1)).detach()  # (B, tokens)
    cam = cam.reshape(b, *grid) / (tub * p * p * c)
    cam = cam.repeat_interleave(tub, 1).repeat_interleave(p, 2).repeat_interleave(p, 3)  # (B, T, H, W)
    return cam[:, :, None].expand(b, t, c, h, w).contiguous()


# -- fused inputs ----------------------------------------------------------------------------------------------
@dataclass
class FusedClips:
    """A batch of clips fused the way a run fuses them.

    Attributes:
        inputs: normalised fused frames ``(B, F, 3, S, S)`` (the model's input).
        layouts: one :class:`FusionLayout` per clip.
        num_sources: per clip, the number of source frames per modality.
        labels: the true classes (``None`` when the items carry no label).
    """

    inputs: torch.Tensor
    layouts: list[FusionLayout]
    num_sources: list[dict[str, int]]
    labels: torch.Tensor | None = None


def _tensor(value: Any, key: str, item: Mapping[str, Any]) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise ValueError(f"clip {item.get('path', '?')}: {key} must be an array, got {type(value).__name__}")


def fuse_items(run: Run, items: Sequence[Mapping[str, Any]]) -> FusedClips:
    """Fuses contract items (uint8 ``video`` (T, 3, S, S), ``audio`` (N, 3, S, S)) with the run's strategy."""
    if not items:
        raise ValueError("no clips to fuse")
    for it in items:
        missing = {"video", "audio"} - set(it)
        if missing:
            raise ValueError(f"clip {it.get('path', '?')} lacks {', '.join(sorted(missing))}")
    video = torch.stack([_tensor(it["video"], "video", it) for it in items])
    audio = torch.stack([_tensor(it["audio"], "audio", it) for it in items])
    if video.shape[-1] != run.image_size:
        raise ValueError(f"clips are {video.shape[-2]}x{video.shape[-1]} but the run's model expects "
                         f"{run.image_size}x{run.image_size}: preprocess at that size")
    f = run.fusion
    frames, layouts = fuse_batch(f["strategy"], video, audio, num_frames=int(f["num_frames"]), seed=int(f["seed"]),
                                 clip_ids=[clip_id(dict(it), i) for i, it in enumerate(items)],
                                 **dict(f.get("options", {})))
    labels = None
    if all("label" in it for it in items):
        labels = torch.tensor([int(it["label"]) for it in items], dtype=torch.long)
    num = [{"video": int(video.shape[1]), "audio": int(audio.shape[1])}] * len(items)
    return FusedClips(normalize(frames), layouts, num, labels)


def attribute(model: nn.Module, inputs: torch.Tensor, explainer: str, target: torch.Tensor | int | None = None,
              *, batch_size: int = 8, progress: bool = False, **options: Any) -> torch.Tensor:
    """Attributions ``(B, F, 3, S, S)`` of a classifier on fused normalised inputs.

    Args:
        model: a MultiMAE-DER classifier (wrapped in :class:`EmotionLogits` here) or any logits module.
        inputs: fused normalised frames.
        explainer: a registered name or alias (``ig``, ``gradcam``).
        target: class per clip; ``None`` explains the predicted class.
        batch_size: clips per Captum call.
        options: explainer options over :data:`EXPLAINER_DEFAULTS` (``n_steps``, ``nt_samples``, ``seed``...).
    """
    name = resolve_explainer(explainer)
    wrapped = model if isinstance(model, EmotionLogits) or not hasattr(model, "videomae") else EmotionLogits(model)
    config = getattr(wrapped, "config", None)
    opts = explainer_options(name, config, **options) if config is not None else dict(options)
    return _ffid_explain(name, wrapped, inputs, target, batch_size=batch_size, progress=progress, **opts)


# -- per-clip explanations ---------------------------------------------------------------------------------
def summarize(layout: FusionLayout, attribution: torch.Tensor, num_sources: Mapping[str, int], *,
              explainer: str, target: int, predicted: int, probability: float,
              gt: Mapping[str, torch.Tensor] | None = None, grid: tuple[int, int] = (4, 4)) -> ClipExplanation:
    """Maps one clip's fused attribution ``(F, 3, S, S)`` back to its sources and summarises it."""
    maps = source_maps(layout, attribution, num_sources)
    used = {m: sorted({i for i in layout.sources(m) if i >= 0}) for m in maps}
    overlap: dict[str, float] = {}
    area: dict[str, float] = {}
    if gt:
        for m, mask in gt.items():
            total = float(maps[m].sum()) if m in maps else 0.0
            if total > 0:
                overlap[m] = float((maps[m] * mask.to(maps[m].dtype)).sum()) / total
                area[m] = float(mask[used[m]].float().mean())
    return ClipExplanation(explainer, int(target), int(predicted), float(probability), maps,
                           modality_share(maps), timeline(maps),
                           {m: region_mass(v, grid) for m, v in maps.items()}, used, overlap, area)


def explain_items(run: Run, items: Sequence[Mapping[str, Any]], explainers: Sequence[str] = DEFAULT_EXPLAINERS,
                  *, target: str = "predicted", options: Mapping[str, Mapping[str, Any]] | None = None,
                  batch_size: int = 8, progress: bool = False) -> list[dict[str, ClipExplanation]]:
    """Explains clips with several explainers; returns, per clip, ``{explainer: ClipExplanation}``.

    Args:
        run: a loaded run.
        items: contract items (``video``, ``audio``; optional ``label``, ``gt_video``, ``gt_audio``).
        explainers: names or aliases.
        target: ``"predicted"`` (explain the model's decision) or ``"label"`` (the true class).
        options: per-explainer option overrides.
    """
    if target not in ("predicted", "label"):
        raise ValueError(f"target must be 'predicted' or 'label', got {target!r}")
    names = [resolve_explainer(e) for e in explainers]
    if not names:
        raise ValueError("no explainer given")
    fused = fuse_items(run, items)
    model = EmotionLogits(run.model).eval()
    with torch.inference_mode():
        probs = torch.cat([model(fused.inputs[s:s + batch_size]).float().softmax(-1)
                           for s in range(0, fused.inputs.shape[0], batch_size)])
    predicted = probs.argmax(-1)
    if target == "label":
        if fused.labels is None:
            raise ValueError("target='label' needs labelled clips")
        targets = fused.labels
    else:
        targets = predicted
    out: list[dict[str, ClipExplanation]] = [{} for _ in items]
    for name, given in zip(names, explainers, strict=True):
        extra = dict((options or {}).get(given, (options or {}).get(name, {})))
        attr = attribute(model, fused.inputs, name, targets, batch_size=batch_size, progress=progress, **extra)
        for i, it in enumerate(items):
            gt = None
            if "gt_video" in it and "gt_audio" in it:
                gt = {"video": _tensor(it["gt_video"], "gt_video", it), "audio": _tensor(it["gt_audio"], "gt_audio", it)}
            out[i][name] = summarize(fused.layouts[i], attr[i], fused.num_sources[i], explainer=name,
                                     target=int(targets[i]), predicted=int(predicted[i]),
                                     probability=float(probs[i, predicted[i]]), gt=gt)
    return out


def explain_clips(run_dir: str | Path | Run, dataset: Any, indices: Sequence[int] | None, out: str | Path,
                  explainers: Sequence[str] = DEFAULT_EXPLAINERS, *, target: str = "predicted",
                  options: Mapping[str, Mapping[str, Any]] | None = None, gif: bool = True,
                  title: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Explains clips of a dataset and writes pictures, a JSON summary and an HTML page.

    Writes, under ``out``: per clip ``clip_<k>/<explainer>_strip.png`` (attribution overlays on the used video
    frames and audio pictures), ``<explainer>_timeline.png`` and ``<explainer>.gif`` (video frame and audio
    picture side by side, step by step), then ``explanations.json`` (modality shares, timelines, regions) and
    ``index.html``.

    Args:
        run_dir: a run folder (or a loaded :class:`Run`).
        dataset: a dataset of contract items (e.g. :class:`multimae_der.data.datasets.ClipDataset`) or a list of items.
        indices: which clips (default: the first 4).
        out: output folder.
        explainers: names or aliases (``ig``, ``saliency``, ``sg_sq``, ``occlusion``, ``gradcam``, ``random``).
        target: ``"predicted"`` or ``"label"``.
        options: per-explainer option overrides.
        gif: also write the animated GIFs.

    Returns:
        The summary written to ``explanations.json`` (``clips``, ``mean_share``, ``report``, ``seconds``).
    """
    from multimae_der.explain.plots import write_clip_figures, write_report

    t0 = time.perf_counter()
    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir)
    out = Path(out)
    idx = list(range(min(4, len(dataset)))) if indices is None else [int(i) for i in indices]
    if not idx:
        raise ValueError("no clip selected")
    for i in idx:
        if not 0 <= i < len(dataset):
            raise ValueError(f"clip index {i} is out of range: the dataset has {len(dataset)} clips")
    items = [dataset[i] for i in idx]
    results = explain_items(run, items, explainers, target=target, options=options, progress=progress)
    names = run.class_names
    clips = []
    for k, (i, it, by_name) in enumerate(zip(idx, items, results, strict=True)):
        folder = out / f"clip_{k:02d}"
        files = write_clip_figures(it, by_name, folder, class_names=names, gif=gif)
        label = int(it["label"]) if "label" in it else None
        first = next(iter(by_name.values()))
        clips.append({
            "index": i, "path": str(it.get("path", "")), "label": label,
            "emotion": names[label] if label is not None and 0 <= label < len(names) else it.get("emotion"),
            "predicted": names[first.predicted], "probability": first.probability,
            "explanations": {n: {**e.to_dict(), "files": {kind: str(p.relative_to(out)) for kind, p in
                                                          files[n].items()}} for n, e in by_name.items()},
        })
    mean_share = {n: {m: float(np.mean([r[n].share.get(m, 0.0) for r in results])) for m in MODALITIES}
                  for n in results[0]}
    summary = {"run": str(run.path), "fusion": run.fusion["strategy"], "target": target,
               "explainers": list(results[0]), "clips": clips, "mean_share": mean_share}
    report = write_report(summary, out, title=title or f"Explanations of {run.path.name} "
                                                       f"({run.fusion['strategy'].upper()})")
    summary["report"] = str(report)
    summary["seconds"] = time.perf_counter() - t0
    from ffidelity.utils import atomic

    atomic.write_json(out / "explanations.json", summary)
    return summary


def load_video_item(run: Run, path: str | Path) -> dict[str, Any]:
    """Preprocesses one video file exactly as the run's data was (``run.preprocessing``); SynthAV ground truth
    beside the file (``<stem>.npz``) is picked up."""
    from multimae_der.data.prepare import preprocess_clip

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    data = preprocess_clip(path, run.preprocessing)
    item = {k: torch.as_tensor(v) for k, v in data.items() if k in ("video", "audio", "gt_video", "gt_audio")}
    item["path"] = str(path)
    return item
