"""Token dropping: remove a unit by leaving its token out of a transformer's sequence.

Filling removed pixels with a reference value shows the model inputs it never saw in training. A masked
autoencoder such as VideoMAE was pre-trained to see only a subset of its tokens, so for such a model a removed
unit can instead be *dropped*: the token embeddings (patch projection plus position) are computed for the whole
input and the removed ones are left out before the encoder runs. The input stays in distribution by
construction, and every masked forward gets cheaper as more is removed (attention and MLP run on fewer tokens).

``TokenDrop(units)`` wraps units whose unit ``u`` is token ``u`` of the model (``VideoUnits`` with the model's
``tubelet_size`` and ``patch_size``); Fidelity, R-Fidelity and F-Fidelity (including its fine-tuning on random
removals) use it through the same engine as any other units. Copies that keep different numbers of tokens are
grouped by that number, so each group is one batched encoder call; the token embeddings of an input are
computed once per chunk, not once per masked copy.

The model is found by type in :data:`TOKEN_MODELS`: a Hugging Face ``VideoMAEForVideoClassification`` or
``ViTForImageClassification`` (or a subclass), or a wrapper module exposing one as ``token_model`` whose forward
is ``token_model(pixel_values=x).logits``. For a ViT the units are ``ImageUnits(patch=config.patch_size)``. A new family is one registered function returning its :class:`TokenModel`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ffidelity.units.base import InModelUnits, Units
from ffidelity.units.grid import GridUnits
from ffidelity.utils.modelio import logits_of
from ffidelity.utils.registry import Registry


@dataclass(frozen=True)
class TokenModel:
    """How to run one classifier on a subset of its tokens.

    Attributes:
        embed: inputs ``(B, ...)`` -> token embeddings ``(B, D, H)`` with positions added, token ``u`` = unit ``u``.
        encode: the kept tokens ``(B, m, H)`` (in token order) -> logits ``(B, classes)``.
    """

    embed: Callable[[torch.Tensor], torch.Tensor]
    encode: Callable[[torch.Tensor], torch.Tensor]


#: model family -> function(model) returning its TokenModel, or None when the model is not of that family.
TOKEN_MODELS: Registry[Callable[[nn.Module], TokenModel | None]] = Registry("token model")


@TOKEN_MODELS.register("videomae")
def _videomae(model: nn.Module) -> TokenModel | None:
    """VideoMAE classification: embeddings -> encoder -> (layernorm) -> mean-pool + fc_norm, or first token."""
    from transformers import VideoMAEForVideoClassification

    if not isinstance(model, VideoMAEForVideoClassification):
        return None
    body = model.videomae

    def encode(tokens: torch.Tensor) -> torch.Tensor:
        h = body.encoder(tokens).last_hidden_state
        if body.layernorm is not None:
            h = body.layernorm(h)
        pooled = model.fc_norm(h.mean(1)) if model.fc_norm is not None else h[:, 0]
        return model.classifier(pooled)

    return TokenModel(embed=lambda x: body.embeddings(x, None), encode=encode)


@TOKEN_MODELS.register("vit")
def _vit(model: nn.Module) -> TokenModel | None:
    """ViT image classification: patch embeddings (+ positions) -> [CLS] + kept patches -> encoder -> CLS head.

    Token ``u`` is patch ``u`` in row-major order, as ``ImageUnits(patch=config.patch_size)`` numbers them; the
    CLS token (with its position) is always kept.
    """
    from transformers import ViTForImageClassification

    if not isinstance(model, ViTForImageClassification):
        return None
    body = model.vit

    def encode(tokens: torch.Tensor) -> torch.Tensor:
        emb = body.embeddings
        h = torch.cat([(emb.cls_token + emb.position_embeddings[:, :1]).expand(tokens.shape[0], -1, -1), tokens], 1)
        for layer in body.layers:  # no mask needed: every token in the sequence is kept
            h = layer(h, None)
        return model.classifier(body.layernorm(h)[:, 0])

    return TokenModel(embed=lambda x: body.embeddings(x)[:, 1:], encode=encode)


def token_model(model: nn.Module) -> TokenModel:
    """The :class:`TokenModel` of ``model`` (or of its ``token_model`` attribute), with a clear error otherwise."""
    for candidate in (model, getattr(model, "token_model", None)):
        if isinstance(candidate, nn.Module):
            for name in TOKEN_MODELS.names():
                found = TOKEN_MODELS.get(name)(candidate)
                if found is not None:
                    return found
    raise TypeError(f"token dropping needs a transformer whose tokens are the units ({', '.join(TOKEN_MODELS.names())}"
                    f"), or a wrapper exposing one as `token_model`; got {type(model).__name__}. Use the units "
                    "without TokenDrop to remove by filling instead")


class TokenDrop(InModelUnits):
    """Units removed by dropping their tokens from the model's sequence instead of filling their pixels.

    Args:
        units: the units, unit ``u`` being token ``u`` of the model (e.g. ``VideoUnits(tubelet, patch)`` with
            the model's sizes), or, with ``tokens``, any units made of whole tokens (a frame pair, a modality).
            Their scores and validity are used unchanged; their reference value is used only for a copy with
            every token removed (a transformer cannot run on an empty sequence, so such a copy is the fully
            filled input instead).
        tokens: the model's tokens as units (``VideoUnits(tubelet, patch)``) when ``units`` are larger: a token
            is dropped when any of its elements belongs to a removed unit.
    """

    def __init__(self, units: Units, tokens: Units | None = None) -> None:
        for u in (units, tokens):
            if getattr(u, "removes_in_model", False):
                raise ValueError("TokenDrop wraps fill-based units, not another TokenDrop")
        self.units = units
        self.tokens = tokens

    def token_keep(self, inputs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The tokens kept ``(R, tokens)`` by unit keep masks ``keep`` ``(R, D)`` of inputs ``(R, ...)``."""
        if self.tokens is None:
            return keep
        expand = getattr(self.units, "expand", None)
        if expand is None:
            raise TypeError(f"{type(self.units).__name__} cannot map its units to tokens (it has no `expand`)")
        mask = expand(keep.bool(), inputs)
        if isinstance(self.units, GridUnits):  # (R, 1, *spatial): already without the channel axis
            removed = (~mask.squeeze(1)).float()
        else:  # broadcastable to the inputs
            removed = (~mask).expand(inputs.shape).float()
        return self.tokens.scores(removed, inputs) == 0

    def remove(self, inputs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        raise TypeError("TokenDrop removes units inside the model (forward_removed); there is no removed input "
                        "to build. Use the wrapped units (TokenDrop.units) for removal by filling")

    def forward_removed(self, model: nn.Module, inputs: torch.Tensor, rows: torch.Tensor, keep: torch.Tensor
                        ) -> torch.Tensor:
        """Logits of ``model`` on input ``inputs[rows[r]]`` with the tokens where ``keep[r]`` is False dropped.

        Args:
            model: the classifier (see :func:`token_model`).
            inputs: the distinct inputs ``(U, ...)``; their embeddings are computed once.
            rows: long ``(R,)``, the input of each masked copy.
            keep: bool ``(R, D)``, the tokens each copy keeps.
        """
        tm = token_model(model)
        if keep.ndim != 2 or keep.shape[0] != rows.shape[0]:
            raise ValueError(f"keep must be (copies, units) for {rows.shape[0]} copies, got {tuple(keep.shape)}")
        unit_keep = keep
        if self.tokens is not None:
            keep = self.token_keep(inputs[rows], keep)
        emb = tm.embed(inputs)  # (U, D, H)
        if emb.shape[1] != keep.shape[1]:
            raise ValueError(f"the model has {emb.shape[1]} tokens but the units give {keep.shape[1]}: unit u must be "
                             "token u (VideoUnits with the model's tubelet_size and patch_size)")
        keep = keep.to(emb.device)
        rows = rows.to(emb.device)
        counts = keep.sum(1)
        out: torch.Tensor | None = None
        for m in torch.unique(counts).tolist():
            sel = (counts == m).nonzero().flatten()
            if m == 0:  # nothing left to encode: the model sees the fully filled input
                filled = self.units.remove(inputs[rows[sel]], unit_keep.to(emb.device)[sel])
                logits = logits_of(model(filled))
            else:
                tokens = emb[rows[sel]][keep[sel]].reshape(sel.numel(), m, emb.shape[2])
                logits = tm.encode(tokens)
            if out is None:
                out = logits.new_empty((rows.shape[0], logits.shape[1]))
            out[sel] = logits
        assert out is not None
        return out

    def describe(self) -> dict:
        return {"kind": "TokenDrop", "removal": "drop", "units": self.units.describe(),
                "tokens": None if self.tokens is None else self.tokens.describe()}

    def __repr__(self) -> str:
        return f"TokenDrop({self.units!r}, tokens={self.tokens!r})"


def random_drop_forward(model: nn.Module, units: Units, x: torch.Tensor, beta: float,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Logits with exactly ``floor(beta * D)`` random valid tokens of every input dropped (fine-tuning, checks)."""
    from ffidelity.units.random import random_removal

    keep = random_removal(x, units, beta, generator)
    rows = torch.arange(x.shape[0], device=x.device)
    return units.forward_removed(model, x, rows, keep)  # type: ignore[attr-defined]


class RandomTokenDropping(nn.Module):
    """Wraps a model for fine-tuning with token dropping: in training mode every forward drops exactly
    ``floor(beta * D)`` random tokens of each input (from torch's global generator, which the trainer reseeds
    every step); in eval mode it is the plain model."""

    def __init__(self, model: nn.Module, units: TokenDrop, beta: float) -> None:
        super().__init__()
        self.model = model
        self.units = units
        self.beta = float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return random_drop_forward(self.model, self.units, x, self.beta)
        return logits_of(self.model(x))
