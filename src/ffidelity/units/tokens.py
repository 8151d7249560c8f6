"""Units of text: one token of a sequence of token ids, masked or deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ffidelity.units.base import Units, _check_batch
from ffidelity.units.sequence import _check_not_ragged


@dataclass(frozen=True)
class TokenUnits(Units):
    """A unit is one token of a (B, L) LongTensor of token ids; padding and special tokens are never units.

    The model derives its attention mask from the padding ids, so every removal keeps the ids and the mask
    consistent: ``"mask"`` replaces a removed token by ``mask_token_id`` (the sequence keeps its length);
    ``"delete"`` drops the token and shifts the rest left, filling the end with ``pad_token_id`` (the sequence
    gets shorter, as if the word had never been written).

    Args:
        mask_token_id: the id a masked token becomes (BERT's ``[MASK]`` is 103).
        pad_token_id: the padding id (never a unit, never removed).
        special_token_ids: ids that are never units and never removed (e.g. ``[CLS]``, ``[SEP]``).
        removal: ``"mask"`` or ``"delete"``.
        vocab_size: when given, ids outside ``[0, vocab_size)`` raise a clear error.
    """

    mask_token_id: int = 103
    pad_token_id: int = 0
    special_token_ids: tuple[int, ...] = (101, 102)
    removal: str = "mask"
    vocab_size: int | None = None

    def __post_init__(self) -> None:
        if self.removal not in ("mask", "delete"):
            raise ValueError(f"removal must be 'mask' or 'delete', got {self.removal!r}")
        object.__setattr__(self, "special_token_ids", tuple(int(i) for i in self.special_token_ids))
        ids = [self.mask_token_id, self.pad_token_id, *self.special_token_ids]
        if self.vocab_size is not None and any(not 0 <= int(i) < self.vocab_size for i in ids):
            raise ValueError(f"token ids {ids} must lie in [0, {self.vocab_size}) (vocab_size)")
        if self.removal == "mask" and self.mask_token_id == self.pad_token_id:
            raise ValueError("mask_token_id equals pad_token_id: a masked token would turn into padding; use "
                             "removal='delete' for that")

    def _check(self, inputs: torch.Tensor) -> None:
        _check_not_ragged(inputs, "TokenUnits")
        _check_batch(inputs, 2, "TokenUnits (batch, tokens)")
        if inputs.is_floating_point() or inputs.dtype == torch.bool or inputs.is_complex():
            raise TypeError(f"TokenUnits expect integer token ids, got dtype {inputs.dtype}")
        check_token_ids(inputs, self.vocab_size)

    def num_units(self, inputs: torch.Tensor) -> int:
        self._check(inputs)
        return int(inputs.shape[1])

    def valid(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        ok = inputs != self.pad_token_id
        for sid in self.special_token_ids:
            ok &= inputs != sid
        return ok

    def scores(self, attributions: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        b, length = inputs.shape
        a = attributions.to(inputs.device).float()
        if a.ndim == 3 and tuple(a.shape[:2]) == (b, length):
            return a.sum(dim=2)  # (B, L, E) embedding attributions: one score per token
        if tuple(a.shape) == (b, length):
            return a
        raise ValueError(
            f"attributions of shape {tuple(a.shape)} do not match token ids of shape {(b, length)}: expected "
            f"{(b, length)} or {(b, length)} + (embedding size,)"
        )

    def remove(self, inputs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        valid = self.valid(inputs)
        drop = ~keep.to(inputs.device) & valid  # padding and special tokens are never removed
        if self.removal == "mask":
            return inputs.masked_fill(drop, int(self.mask_token_id))
        stays = ~drop & (inputs != self.pad_token_id)
        # stable sort: surviving tokens first in their order, then everything else (to be overwritten by pads)
        order = torch.sort((~stays).to(torch.uint8), dim=1, stable=True).indices
        shifted = inputs.gather(1, order)
        n_stay = stays.sum(dim=1, keepdim=True)
        pos = torch.arange(inputs.shape[1], device=inputs.device)[None, :]
        return shifted.masked_fill(pos >= n_stay, int(self.pad_token_id))

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "mask_token_id": int(self.mask_token_id),
                "pad_token_id": int(self.pad_token_id), "special_token_ids": list(self.special_token_ids),
                "removal": self.removal, "vocab_size": self.vocab_size}


def check_token_ids(ids: torch.Tensor, vocab_size: int | None, where: str = "token ids") -> None:
    """Raises a clear ``ValueError`` when ids are negative or (with ``vocab_size``) outside the vocabulary."""
    if ids.numel() == 0:
        return
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or (vocab_size is not None and hi >= vocab_size):
        bad = ((ids < 0) | (ids >= (vocab_size if vocab_size is not None else hi + 1))).nonzero()[:5].tolist()
        limit = f"[0, {vocab_size})" if vocab_size is not None else "non-negative"
        raise ValueError(f"{where} out of the vocabulary: ids must be {limit}, got values from {lo} to {hi} "
                         f"(first bad (row, position): {bad})")
