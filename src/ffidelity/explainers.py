"""Explainers: one verb over Captum, a registry of methods, and the paper's degraded copies.

``explain(name, model, inputs, target)`` returns attributions in the input's shape (Captum's convention) for
every registered method; a new method is one function decorated with ``@register("name")``. Inputs are
processed in chunks of ``batch_size`` so memory stays bounded; integrated-gradient methods always pass
``internal_batch_size`` to Captum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from captum.attr import (
    DeepLift,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from ffidelity.engine import logits_of, model_device, seeded_generator
from ffidelity.registry import Registry

Explainer = Callable[..., torch.Tensor]
EXPLAINERS: Registry[Explainer] = Registry("explainer")
"""Every registered explainer by name (``EXPLAINERS.names()``); ``@register("name")`` adds one."""
register = EXPLAINERS.register


class LogitsModule(nn.Module):
    """Wraps a model so that it returns plain logits (Captum needs a tensor)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(*x))


#: short names accepted wherever an explainer is named (the CLIs' ``--explainers``)
EXPLAINER_ALIASES: dict[str, str] = {"ig": "integrated_gradients", "sg": "smoothgrad", "grad": "saliency"}


def resolve_explainer(name: str, aliases: dict[str, str] | None = None) -> str:
    """The registered name of ``name``, ``aliases`` (default :data:`EXPLAINER_ALIASES`) resolved; an unknown name
    raises ``ValueError`` listing the known ones."""
    aliases = EXPLAINER_ALIASES if aliases is None else aliases
    key = aliases.get(name.strip().lower(), name.strip().lower())
    if key not in EXPLAINERS:
        known = sorted({*EXPLAINERS.names(), *aliases})
        raise ValueError(f"unknown explainer {name!r}; known: {', '.join(known)}")
    return key


def explain(
    name: str,
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor | int | None = None,
    *,
    batch_size: int = 64,
    progress: bool = False,
    **kwargs: Any,
) -> torch.Tensor:
    """Attributions of ``model``'s score for ``target`` on ``inputs`` by the registered method ``name``.

    Args:
        name: a registered method (``EXPLAINERS.names()``).
        model: the classifier; put in eval mode for the call and restored afterwards.
        inputs: (N, ...) inputs.
        target: class per input (N,), one class for all, or ``None`` for the predicted class.
        batch_size: inputs per Captum call.
        progress: show a progress bar over chunks.
        **kwargs: method options (``n_steps``, ``nt_samples``, ``layer``, ``seed`` ...).

    Returns:
        A detached CPU tensor of attributions.
    """
    fn = EXPLAINERS.get(name)
    if inputs.shape[0] == 0:
        raise ValueError("inputs are empty")
    device = model_device(model)
    was_training = model.training
    wrapped = LogitsModule(model).eval()
    try:
        if target is None:
            with torch.inference_mode():
                target = torch.cat([wrapped(inputs[s : s + batch_size].to(device)).argmax(-1).cpu()
                                    for s in range(0, inputs.shape[0], batch_size)])
        target_t = torch.as_tensor(target).long()
        if target_t.ndim == 0:
            target_t = target_t.expand(inputs.shape[0])
        if target_t.shape[0] != inputs.shape[0]:
            raise ValueError(f"target has {target_t.shape[0]} entries for {inputs.shape[0]} inputs")
        from ffidelity.progress import progress_bar

        out = []
        with progress_bar(inputs.shape[0], f"explain: {name}", progress) as advance:
            for start in range(0, inputs.shape[0], batch_size):
                xb = inputs[start : start + batch_size].to(device)
                tb = target_t[start : start + batch_size].to(device)
                extra = dict(kwargs)
                if "seed" in extra:
                    extra["seed"] = int(extra["seed"]) + start
                attr = fn(wrapped, xb, tb, **extra)
                out.append(attr.detach().float().cpu())
                advance(xb.shape[0])
    finally:
        model.train(was_training)
    return torch.cat(out)


# -- gradient methods ---------------------------------------------------------------------------------------
@register("saliency")
def saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor, abs: bool = True) -> torch.Tensor:
    """Absolute input gradient (Simonyan et al. 2014)."""
    return Saliency(model).attribute(x.detach().requires_grad_(), target=target, abs=abs)


@register("integrated_gradients")
def integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor, n_steps: int = 50,
                         internal_batch_size: int = 256, baseline: float = 0.0) -> torch.Tensor:
    """Integrated Gradients from a constant baseline (Sundararajan et al. 2017)."""
    return IntegratedGradients(model).attribute(x, baselines=baseline, target=target, n_steps=n_steps,
                                                internal_batch_size=internal_batch_size)


@register("smoothgrad")
def smoothgrad(model: nn.Module, x: torch.Tensor, target: torch.Tensor, nt_samples: int = 10,
               stdevs: float = 0.15, seed: int = 0) -> torch.Tensor:
    """Saliency averaged over Gaussian-noised copies (Smilkov et al. 2017)."""
    torch.manual_seed(seed)
    return NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=nt_samples, stdevs=stdevs,
                                                  nt_samples_batch_size=nt_samples, target=target)


@register("sg_sq")
def sg_sq(model: nn.Module, x: torch.Tensor, target: torch.Tensor, nt_samples: int = 10, stdevs: float = 0.15,
          n_steps: int = 50, internal_batch_size: int = 256, seed: int = 0) -> torch.Tensor:
    """SmoothGrad-squared over Integrated Gradients, the F-Fidelity paper's main explainer.

    ``internal_batch_size`` bounds how many interpolated inputs Captum holds at once.
    """
    torch.manual_seed(seed)
    per_call = max(1, min(nt_samples, internal_batch_size // max(1, x.shape[0])))  # noisy copies per IG call
    return NoiseTunnel(IntegratedGradients(model)).attribute(
        x, nt_type="smoothgrad_sq", nt_samples=nt_samples, stdevs=stdevs, nt_samples_batch_size=per_call,
        target=target, n_steps=n_steps, internal_batch_size=internal_batch_size)


@register("deeplift")
def deeplift(model: nn.Module, x: torch.Tensor, target: torch.Tensor, baseline: float = 0.0) -> torch.Tensor:
    """DeepLIFT rescale rule against a constant baseline (Shrikumar et al. 2017)."""
    return DeepLift(model).attribute(x, baselines=baseline, target=target)


def last_conv(model: nn.Module) -> nn.Module:
    """The last convolution of ``model``: GradCAM's default layer (the last conv block)."""
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    if not convs:
        if any(isinstance(m, nn.RNNBase) for m in model.modules()):
            raise ValueError("gradcam does not apply to recurrent models (LSTM/GRU): it weights convolutional "
                             "feature maps, which an RNN does not have; use saliency, integrated_gradients, "
                             "sg_sq or occlusion")
        raise ValueError("gradcam needs a convolutional layer; pass layer=... for this model")
    return convs[-1]


@register("gradcam")
def gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: nn.Module | None = None
            ) -> torch.Tensor:
    """Grad-CAM on the last conv block, ReLU'd and upsampled to the input (Selvaraju et al. 2017)."""
    cam = LayerGradCam(model, layer or last_conv(model)).attribute(x, target=target, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
    return (cam / x.shape[1]).expand_as(x).contiguous()


# -- perturbation methods ------------------------------------------------------------------------------------
@register("occlusion")
def occlusion(model: nn.Module, x: torch.Tensor, target: torch.Tensor, window: int | tuple[int, ...] = 4,
              stride: int | tuple[int, ...] | None = None, baseline: float = 0.0, channel_dim: int = 1
              ) -> torch.Tensor:
    """Score drop when a sliding window is replaced by the baseline (Zeiler and Fergus 2014).

    The window always spans every channel; ``channel_dim`` says which axis holds them (1 for (B, C, H, W)
    images, 2 or -1 for (B, T, F) time series, whose window then slides over time).
    """
    cdim = channel_dim % x.ndim
    if cdim == 0:
        raise ValueError("channel_dim cannot be the batch axis")
    spatial = x.ndim - 2
    win = (window,) * spatial if isinstance(window, int) else tuple(window)
    st = win if stride is None else ((stride,) * spatial if isinstance(stride, int) else tuple(stride))
    if len(win) != spatial or len(st) != spatial:
        raise ValueError(f"window and stride need {spatial} sizes for inputs of shape {tuple(x.shape)}")
    c = x.shape[cdim]
    shapes, strides = list(win), list(st)
    shapes.insert(cdim - 1, c)
    strides.insert(cdim - 1, c)
    return Occlusion(model).attribute(x, sliding_window_shapes=tuple(shapes), strides=tuple(strides),
                                      target=target, baselines=baseline, perturbations_per_eval=16)


@register("random")
def random(model: nn.Module, x: torch.Tensor, target: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Uniform random scores: the baseline every report shows."""
    return torch.rand(x.shape, generator=seeded_generator(seed, 0x5A5A)).to(x.device)


# -- degraded explainers ----------------------------------------------------------------------------------------
def degrade(attributions: torch.Tensor, noise: float, seed: int = 0, groups: torch.Tensor | None = None
            ) -> torch.Tensor:
    """Permutes the scores of a random ``noise`` fraction of units among themselves, per input.

    The score histogram is kept while the ranking is corrupted; ``noise = 1`` shuffles every score. Every
    element after the batch axis is a unit, so reduce attributions to unit scores first (``units.scores``)
    when units span channels or patches.

    Args:
        attributions: (N, ...) scores.
        noise: fraction of units whose scores are permuted, in [0, 1].
        seed: seeds which units are chosen and how they are permuted.
        groups: optional integer labels ``(N, D)`` (or ``(D,)`` for all inputs) over the flattened units: scores
            are then permuted only among units of the same group, a ``noise`` fraction of each group. With the
            modalities of a multimodal input as groups, every copy keeps the explainer's balance between the
            modalities (how many of its top units are video, how many audio) and loses only which units within
            a modality rank first.
    """
    if not 0 <= noise <= 1:
        raise ValueError(f"noise must lie in [0, 1], got {noise}")
    if groups is not None:
        return _degrade_within(attributions, noise, seed, groups)
    flat = attributions.reshape(attributions.shape[0], -1)
    n, d = flat.shape
    m = int(noise * d + 1e-9)
    if m < 2:
        return attributions.clone()
    gen = seeded_generator(seed, 0xDE6)
    chosen = torch.rand(n, d, generator=gen).argsort(dim=1)[:, :m]  # (n, m) units to permute
    shuffle = torch.rand(n, m, generator=gen).argsort(dim=1)
    src = chosen.gather(1, shuffle)
    out = flat.clone()
    out.scatter_(1, chosen.to(flat.device), flat.gather(1, src.to(flat.device)))
    return out.reshape(attributions.shape)


def _degrade_within(attributions: torch.Tensor, noise: float, seed: int, groups: torch.Tensor) -> torch.Tensor:
    flat = attributions.reshape(attributions.shape[0], -1)
    n, d = flat.shape
    g = torch.as_tensor(groups).long()
    if g.ndim == 1 and g.shape[0] == d:
        g = g.expand(n, d)
    if tuple(g.shape) != (n, d):
        raise ValueError(f"groups must have shape ({n}, {d}) or ({d},) to match the attributions, got "
                         f"{tuple(groups.shape)}")
    gen = seeded_generator(seed, 0xDE7)
    out = flat.clone()
    for i in range(n):  # a few groups per input: cheap next to any forward pass
        for label in torch.unique(g[i]).tolist():
            members = (g[i] == label).nonzero().flatten()
            m = int(noise * members.numel() + 1e-9)
            if m < 2:
                continue
            chosen = members[torch.randperm(members.numel(), generator=gen)[:m]]
            src = chosen[torch.randperm(m, generator=gen)]
            out[i, chosen.to(flat.device)] = flat[i, src.to(flat.device)]
    return out.reshape(attributions.shape)
