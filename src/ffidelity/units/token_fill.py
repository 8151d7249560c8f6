"""Filling in token space: the same removal as filling a unit's pixels, computed from two embeddings per input.

A ViT or VideoMAE embeds each patch (or tube) on its own: the patch projection's kernel equals its stride, and
the position embedding depends only on the token's place. So the tokens of an input whose removed units are
filled with a reference are the input's own tokens where kept and the tokens of the *fully filled* input where
removed. ``TokenFill(units)`` computes both embeddings once per distinct input of a chunk and feeds the encoder a
selection of them, instead of building every masked copy in pixels and embedding it again. The numbers are
those of filling (equal up to floating-point rounding); what is saved is writing each masked copy (0.8 MB per
copy of a 16-frame 64x64 clip) and its patch projection (a fifth of the tiny VideoMAE's forward pass).

It applies where unit ``u`` is token ``u`` of the model (``VideoUnits(tubelet, patch)`` or
``ImageUnits(patch=...)`` with the model's sizes) and the reference does not depend on which units are removed
(a number, ``"mean"`` or a tensor; an imputing callable does). The model is found as for token dropping
(:func:`ffidelity.units.token_drop.token_model`). F-Fidelity's fine-tuning uses the wrapped units: random
filling in pixels is the same removal.
"""

from __future__ import annotations

import torch
from torch import nn

from ffidelity.units.base import InModelUnits
from ffidelity.units.grid import GridUnits
from ffidelity.units.token_drop import token_model


class TokenFill(InModelUnits):
    """Units filled with their reference, computed in the model's token space (see the module's text).

    Args:
        units: grid units whose unit ``u`` is token ``u`` of the model, with a reference that is a number,
            ``"mean"`` or a tensor. Their scores, validity and reference are used unchanged.
    """


    def __init__(self, units: GridUnits) -> None:
        if not isinstance(units, GridUnits):
            raise TypeError(f"TokenFill wraps grid units (VideoUnits, ImageUnits) whose unit u is token u, got "
                            f"{type(units).__name__}")
        ref = units.reference
        if callable(ref) and not isinstance(ref, torch.Tensor):
            raise ValueError("TokenFill needs a reference that does not depend on which units are removed (a number, "
                             "'mean' or a tensor); an imputing callable fills from the kept pixels: use the units "
                             "themselves")
        self.units = units

    def remove(self, inputs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The filled inputs in pixels (what the model sees, built explicitly): the wrapped units' removal."""
        return self.units.remove(inputs, keep)

    def forward_removed(self, model: nn.Module, inputs: torch.Tensor, rows: torch.Tensor, keep: torch.Tensor
                        ) -> torch.Tensor:
        """Logits of ``model`` on input ``inputs[rows[r]]`` with the units where ``keep[r]`` is False filled.

        Args:
            model: a ViT or VideoMAE classifier, or a wrapper exposing one as ``token_model``.
            inputs: the distinct inputs ``(U, ...)``; their two embeddings are computed once.
            rows: long ``(R,)``, the input of each masked copy.
            keep: bool ``(R, D)``, the units each copy keeps.
        """
        tm = token_model(model)
        if keep.ndim != 2 or keep.shape[0] != rows.shape[0]:
            raise ValueError(f"keep must be (copies, units) for {rows.shape[0]} copies, got {tuple(keep.shape)}")
        kept = tm.embed(inputs)  # (U, D, H)
        if kept.shape[1] != keep.shape[1]:
            raise ValueError(f"the model has {kept.shape[1]} tokens but the units give {keep.shape[1]}: unit u must "
                             "be token u (VideoUnits / ImageUnits with the model's patch and tubelet sizes)")
        none = torch.zeros(inputs.shape[0], keep.shape[1], dtype=torch.bool, device=inputs.device)
        filled = tm.embed(self.units.remove(inputs, none))  # every unit filled
        rows = rows.to(kept.device)
        tokens = torch.where(keep.to(kept.device)[:, :, None], kept[rows], filled[rows])
        return tm.encode(tokens)

    def describe(self) -> dict:
        return {"kind": "TokenFill", "removal": "fill", "units": self.units.describe()}

    def __repr__(self) -> str:
        return f"TokenFill({self.units!r})"
