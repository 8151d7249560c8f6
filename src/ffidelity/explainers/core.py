"""Explainers: one verb over Captum, a registry of methods, and the names users type.

``explain(name, model, inputs, target)`` returns attributions in the input's shape (Captum's convention) for
every registered method; a new method is one function decorated with ``@register("name")``. Inputs are
processed in chunks of ``batch_size`` so memory stays bounded; integrated-gradient methods always pass
``internal_batch_size`` to Captum. The methods themselves live in :mod:`ffidelity.explainers.methods` and
:mod:`ffidelity.explainers.text`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ffidelity.utils.modelio import logits_of, model_device
from ffidelity.utils.registry import Registry

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
        from ffidelity.utils.progress import progress_bar

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
