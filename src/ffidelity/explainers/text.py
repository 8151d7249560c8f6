"""Explainers for token-id inputs, through the model's embedding layer.

Gradients do not flow into integer token ids, so text methods attribute at the embedding layer's output and
return (B, L, E) attributions (``TokenUnits.scores`` sums them to one score per token) or (B, L):

* ``layer_ig``: Integrated Gradients in embedding space from a baseline sentence in which every real token is
  the ``[MASK]`` token (padding and special tokens kept), the same reference ``TokenUnits`` removes to;
* ``layer_gradient_x_input``: gradient times embedding;
* ``layer_saliency``: L2 norm of the gradient at each token's embedding, (B, L).

The embedding layer is ``layer=...`` when given, else the model's ``input_embeddings()`` or
``get_input_embeddings()``, else its only ``nn.Embedding``. The baseline's ids come from keyword arguments or
the model's ``pad_token_id`` / ``mask_token_id`` / ``special_token_ids`` attributes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients
from torch import nn

from ffidelity.explainers.core import register


def _inner(model: nn.Module) -> nn.Module:
    """The user's model inside ``explain``'s logits wrapper."""
    return getattr(model, "model", model)


def embedding_layer(model: nn.Module, layer: nn.Module | None = None) -> nn.Module:
    """The layer whose output the text explainers attribute to (see the module docstring)."""
    if layer is not None:
        return layer
    inner = _inner(model)
    for attr in ("input_embeddings", "get_input_embeddings"):
        fn = getattr(inner, attr, None)
        if callable(fn):
            emb = fn()
            if isinstance(emb, nn.Module):
                return emb
    embeddings = [m for m in inner.modules() if isinstance(m, nn.Embedding)]
    if len(embeddings) == 1:
        return embeddings[0]
    raise ValueError(f"cannot find the embedding layer of {type(inner).__name__} "
                     f"({len(embeddings)} nn.Embedding modules); pass layer=... or define input_embeddings()")


def baseline_ids(model: nn.Module, ids: torch.Tensor, baseline_token_id: int | None = None,
                 pad_token_id: int | None = None, special_token_ids: Sequence[int] | None = None) -> torch.Tensor:
    """``ids`` with every real token replaced by ``baseline_token_id`` (default: the model's mask token)."""
    inner = _inner(model)
    base = baseline_token_id if baseline_token_id is not None else getattr(inner, "mask_token_id", None)
    pad = pad_token_id if pad_token_id is not None else getattr(inner, "pad_token_id", None)
    specials = special_token_ids if special_token_ids is not None else getattr(inner, "special_token_ids", ())
    if base is None or pad is None:
        raise ValueError(f"{type(inner).__name__} does not say which ids are mask and padding; pass "
                         "baseline_token_id=... and pad_token_id=... (and special_token_ids=...)")
    keep = ids == int(pad)
    for sid in specials:
        keep |= ids == int(sid)
    return torch.where(keep, ids, torch.full_like(ids, int(base)))


def _check_ids(x: torch.Tensor, name: str) -> None:
    if x.is_floating_point() or x.dtype == torch.bool or x.ndim != 2:
        raise TypeError(f"{name} explains (batch, tokens) integer token ids through the embedding layer; got "
                        f"dtype {x.dtype} shape {tuple(x.shape)} (use saliency, integrated_gradients ... for "
                        "float inputs)")


@register("layer_ig")
def layer_ig(model: nn.Module, x: torch.Tensor, target: torch.Tensor, n_steps: int = 50,
             internal_batch_size: int = 256, layer: nn.Module | None = None, baseline_token_id: int | None = None,
             pad_token_id: int | None = None, special_token_ids: Sequence[int] | None = None) -> torch.Tensor:
    """Integrated Gradients on the embedding layer from an all-``[MASK]`` sentence: (B, L, E)."""
    _check_ids(x, "layer_ig")
    ref = baseline_ids(model, x, baseline_token_id, pad_token_id, special_token_ids)
    lig = LayerIntegratedGradients(model, embedding_layer(model, layer))
    return lig.attribute(x, baselines=ref, target=target, n_steps=n_steps, internal_batch_size=internal_batch_size)


@register("layer_gradient_x_input")
def layer_gradient_x_input(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                           layer: nn.Module | None = None) -> torch.Tensor:
    """Gradient times embedding at every token: (B, L, E)."""
    _check_ids(x, "layer_gradient_x_input")
    return LayerGradientXActivation(model, embedding_layer(model, layer)).attribute(x, target=target)


@register("layer_saliency")
def layer_saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                   layer: nn.Module | None = None) -> torch.Tensor:
    """L2 norm of the gradient at every token's embedding: (B, L)."""
    _check_ids(x, "layer_saliency")
    grads = LayerGradientXActivation(model, embedding_layer(model, layer), multiply_by_inputs=False).attribute(
        x, target=target)
    return grads.norm(dim=-1)
