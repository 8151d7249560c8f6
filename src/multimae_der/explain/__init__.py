"""Explaining the emotion model: attributions, their provenance (fused input <-> sources), plots, and the
faithfulness benchmark.

The package re-exports the names of the former ``multimae_der.explain`` module (now
:mod:`multimae_der.explain.attributions`).
"""

from multimae_der.explain.attributions import (
    DEFAULT_EXPLAINERS,
    EXPLAINER_ALIASES,
    EXPLAINER_DEFAULTS,
    EmotionLogits,
    FusedClips,
    attribute,
    explain_clips,
    explain_items,
    explainer_options,
    fuse_items,
    load_video_item,
    resolve_explainer,
    summarize,
    vit_gradcam,
)
from multimae_der.explain.provenance import ClipExplanation

__all__ = [
    "DEFAULT_EXPLAINERS",
    "EXPLAINER_ALIASES",
    "EXPLAINER_DEFAULTS",
    "ClipExplanation",
    "EmotionLogits",
    "FusedClips",
    "attribute",
    "explain_clips",
    "explain_items",
    "explainer_options",
    "fuse_items",
    "load_video_item",
    "resolve_explainer",
    "summarize",
    "vit_gradcam",
]
