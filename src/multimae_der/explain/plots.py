"""Pictures of emotion-model explanations: overlays on frames and audio pictures (PNG strip, GIF), timelines,
and the HTML page that gathers them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from ffidelity.utils import atomic
from ffidelity.utils.report import HtmlReport

if TYPE_CHECKING:
    from multimae_der.explain.provenance import ClipExplanation

_LABELS = {"video": ("video frame", "V"), "audio": ("audio window", "A")}
_CMAP = "inferno"


def _image(item: Mapping[str, Any], modality: str, index: int) -> np.ndarray:
    src = item[modality][index]
    arr = src.numpy() if isinstance(src, torch.Tensor) else np.asarray(src)
    return np.ascontiguousarray(arr.transpose(1, 2, 0)).astype(np.float32) / 255.0  # (S, S, 3) in [0, 1]


def color_scale(expl: ClipExplanation) -> float:
    """One colour scale per explanation, shared by both modalities (so the picture shows the modality share):
    the 99.5th percentile of the non-zero source-pixel masses."""
    vals = torch.cat([v.flatten() for v in expl.sources.values()])
    vals = vals[vals > 0]
    if vals.numel() == 0:
        return 1.0
    return float(torch.quantile(vals.double()[: 1 << 24], 0.995)) or float(vals.max())


def overlay(image: np.ndarray, heat: np.ndarray, vmax: float, alpha: float = 0.7) -> np.ndarray:
    """Blends a heat map (scaled by ``vmax``) over an RGB image in [0, 1]; returns uint8 (S, S, 3)."""
    h = np.clip(heat / max(vmax, 1e-12), 0.0, 1.0)
    colours = plt.get_cmap(_CMAP)(h)[..., :3]
    a = (alpha * h)[..., None]
    return (np.clip(image * (1 - a) + colours * a, 0, 1) * 255).round().astype(np.uint8)


def _panels(item: Mapping[str, Any], expl: ClipExplanation, modality: str, vmax: float) -> list[np.ndarray]:
    return [overlay(_image(item, modality, i), expl.sources[modality][i].numpy(), vmax)
            for i in expl.used.get(modality, [])]


def _gt(item: Mapping[str, Any], modality: str, index: int) -> np.ndarray | None:
    key = f"gt_{modality}"
    if key not in item:
        return None
    g = item[key][index]
    return (g.numpy() if isinstance(g, torch.Tensor) else np.asarray(g)).astype(float)


def strip_figure(item: Mapping[str, Any], expl: ClipExplanation, *, class_names: Sequence[str] | None = None
                 ) -> plt.Figure:
    """Attribution overlays on every source frame the fusion used: video row, audio row (cyan: true cue)."""
    rows = [m for m in ("video", "audio") if expl.used.get(m)]
    vmax = color_scale(expl)
    cols = max(len(expl.used[m]) for m in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.15 * cols + 0.3, 1.35 * len(rows) + 0.6), squeeze=False)
    for r, m in enumerate(rows):
        panels = _panels(item, expl, m, vmax)
        for c in range(cols):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(panels):
                continue
            idx = expl.used[m][c]
            ax.imshow(panels[c], interpolation="nearest")
            gt = _gt(item, m, idx)
            if gt is not None and gt.any():
                ax.contour(gt, levels=[0.5], colors="cyan", linewidths=0.6)
            ax.set_title(f"{_LABELS[m][1]}{idx}", fontsize=7)
    names = list(class_names or [])
    pred = names[expl.predicted] if expl.predicted < len(names) else str(expl.predicted)
    share = ", ".join(f"{m} {v:.0%}" for m, v in expl.share.items())
    fig.suptitle(f"{expl.explainer}: predicted {pred} ({expl.probability:.0%}); mass {share}", fontsize=8)
    fig.tight_layout()
    return fig


def timeline_figure(expl: ClipExplanation) -> plt.Figure:
    """Fraction of the clip's attribution mass on each source frame (video) and audio window."""
    total = sum(float(v.sum()) for v in expl.timeline.values()) or 1.0
    fig, ax = plt.subplots(figsize=(5.2, 2.4))
    for m, colour in (("video", "tab:blue"), ("audio", "tab:orange")):
        used = expl.used.get(m, [])
        if not used:
            continue
        vals = expl.timeline[m][used].numpy() / total
        ax.plot(used, vals, marker="o", ms=3, color=colour, label=f"{m} ({expl.share.get(m, 0):.0%})")
    ax.set_xlabel("source index (video frame / audio window, in clip order)")
    ax.set_ylabel("share of mass")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title(f"{expl.explainer}: attribution over time", fontsize=8)
    fig.tight_layout()
    return fig


def write_gif(item: Mapping[str, Any], expl: ClipExplanation, path: Path, *, scale: int = 2,
              duration_ms: int = 400) -> Path:
    """An animated GIF: step k shows the k-th used video frame and the k-th used audio picture, overlaid."""
    from PIL import Image

    vmax = color_scale(expl)
    video, audio = _panels(item, expl, "video", vmax), _panels(item, expl, "audio", vmax)
    size = (video or audio)[0].shape[0]
    blank = np.zeros((size, size, 3), np.uint8)
    frames = []
    for k in range(max(len(video), len(audio))):
        row = [video[k] if k < len(video) else blank] if video else []
        row += [audio[k] if k < len(audio) else blank] if audio else []
        img = Image.fromarray(np.concatenate(row, axis=1))
        frames.append(img.resize((img.width * scale, img.height * scale), Image.NEAREST))
    with atomic.atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return path


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def write_clip_figures(item: Mapping[str, Any], by_name: Mapping[str, ClipExplanation], folder: Path, *,
                       class_names: Sequence[str] | None = None, gif: bool = True) -> dict[str, dict[str, Path]]:
    """Writes ``<explainer>_strip.png``, ``<explainer>_timeline.png`` (and ``<explainer>.gif``) for one clip."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Path]] = {}
    for name, expl in by_name.items():
        f = {"strip": _save(strip_figure(item, expl, class_names=class_names), folder / f"{name}_strip.png"),
             "timeline": _save(timeline_figure(expl), folder / f"{name}_timeline.png")}
        if gif:
            f["gif"] = write_gif(item, expl, folder / f"{name}.gif")
        files[name] = f
    return files


def write_report(summary: Mapping[str, Any], out: Path, *, title: str) -> Path:
    """``index.html``: mean modality shares, then per clip the prediction, shares, strips, timelines, GIFs."""
    import pandas as pd

    rep = HtmlReport(title, out)
    rep.paragraph(
        f"Attributions are computed on the fused input the model sees ({summary['fusion'].upper()}) and mapped back "
        "to the video frame or audio window, and to the pixel region, each fused pixel came from. The modality "
        "share is the fraction of |attribution| mass on each modality. Overlays share one colour scale across "
        "both modalities; cyan contours mark SynthAV's true cue pixels when the clip has them. "
        f"Explained class: the {'predicted' if summary['target'] == 'predicted' else 'true'} one.")
    if summary["fusion"] == "sfas":
        rep.paragraph("SFAS averages a video frame and an audio picture into every fused pixel, so any attribution "
                      "on the fused input splits 50/50 between the modalities by construction.", cls="small")
    rep.heading("Mean modality share")
    rep.table(pd.DataFrame(summary["mean_share"]).T, caption=f"{len(summary['clips'])} clip(s)")
    for k, clip in enumerate(summary["clips"]):
        truth = f"true {clip['emotion']}" if clip.get("emotion") else "no label"
        rep.heading(f"Clip {k}: {Path(clip['path']).name or clip['index']}", level=3)
        rep.paragraph(f"{truth}; predicted {clip['predicted']} ({clip['probability']:.0%}).")
        rows = {n: {"video share": e["share"].get("video", 0.0), "audio share": e["share"].get("audio", 0.0),
                    **{f"{m} mass on cue": v for m, v in e.get("gt_overlap", {}).items()},
                    **{f"{m} cue area (chance)": v for m, v in e.get("gt_area", {}).items()}}
                for n, e in clip["explanations"].items()}
        rep.table(pd.DataFrame(rows).T)
        for n, e in clip["explanations"].items():
            for kind in ("strip", "timeline", "gif"):
                if kind in e["files"]:
                    rep.image(out / e["files"][kind], f"{n}: {kind}")
    return rep.save("index.html")
