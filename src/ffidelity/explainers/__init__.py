"""Explainers: one verb (``explain``) over Captum's methods, a registry, and the paper's degraded copies.

Importing the package registers every method: the input-level ones (:mod:`ffidelity.explainers.methods`) and
the token-level ones for text models (:mod:`ffidelity.explainers.text`).
"""

from ffidelity.explainers import text as _text  # noqa: F401  (registers the layer_* explainers)
from ffidelity.explainers.core import (
    EXPLAINER_ALIASES,
    EXPLAINERS,
    Explainer,
    LogitsModule,
    explain,
    register,
    resolve_explainer,
)
from ffidelity.explainers.degrade import degrade
from ffidelity.explainers.methods import (
    deeplift,
    gradcam,
    integrated_gradients,
    last_conv,
    occlusion,
    random,
    saliency,
    sg_sq,
    smoothgrad,
)

__all__ = ["EXPLAINERS", "EXPLAINER_ALIASES", "Explainer", "LogitsModule", "deeplift", "degrade", "explain", "gradcam",
           "integrated_gradients", "last_conv", "occlusion", "random", "register", "resolve_explainer", "saliency",
           "sg_sq", "smoothgrad"]
