"""The input-level explainers of the registry: gradients, integrated gradients, SmoothGrad, DeepLift,
Grad-CAM, occlusion and the random baseline, each one Captum call.
"""

from __future__ import annotations

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

from ffidelity.explainers.core import register
from ffidelity.utils.seeding import seeded_generator


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
