"""What a "unit" of an input is, and how a unit is removed.

The engine never looks at pixels, time steps or tokens itself: it asks a ``Units`` object

* how many units each input has and which of them may be removed (``valid``),
* how an attribution map reduces to one score per unit (``scores``),
* how to build the inputs with some units removed (``remove``).

``ImageUnits`` (pixels or square patches, all channels together) and ``GridUnits`` (blocks over any number of
trailing axes, e.g. video tubes) live here; sequence and token units follow the same protocol.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Reference = float | str | torch.Tensor | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Units:
    """Protocol of an input's removable units. Subclasses override the four methods below."""

    def num_units(self, inputs: torch.Tensor) -> int:
        """The number of unit slots D of every input in the batch (padding slots included)."""
        raise NotImplementedError

    def valid(self, inputs: torch.Tensor) -> torch.Tensor:
        """Boolean (B, D): which slots are real units that may be ranked and removed."""
        return torch.ones(inputs.shape[0], self.num_units(inputs), dtype=torch.bool, device=inputs.device)

    def scores(self, attributions: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Reduces attributions to float (B, D) scores, one per unit."""
        raise NotImplementedError

    def remove(self, inputs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Returns ``inputs`` with every unit where ``keep`` (B, D) is False replaced by the reference.

        ``inputs`` may be a broadcast view (the engine passes one input expanded over its masked copies), so
        implementations return a new tensor and never write into ``inputs``.
        """
        raise NotImplementedError

    def remove_into(self, inputs: torch.Tensor, keep: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``remove``, allowed to write its result into ``out`` (a buffer shaped and typed like ``inputs``).

        The engine calls this with one buffer reused by every chunk: a fresh multi-MB tensor per chunk costs a
        page fault per 4 kB. Returns the result, which is ``out`` or a new tensor; the default returns
        ``remove(inputs, keep)``.
        """
        return self.remove(inputs, keep)

    #: True when units are removed inside the model (``forward_removed``), e.g. tokens dropped from a
    #: transformer's sequence (:class:`ffidelity.token_drop.TokenDrop`), rather than in the input (``remove``)
    removes_in_model: bool = False

    def forward_removed(self, model: torch.nn.Module, inputs: torch.Tensor, rows: torch.Tensor,
                        keep: torch.Tensor) -> torch.Tensor:
        """The model's output on ``inputs[rows[r]]`` with the units where ``keep[r]`` is False removed.

        The default builds the removed inputs with ``remove``; units that remove inside the model override it.
        """
        return model(self.remove(inputs[rows], keep))

    def describe(self) -> dict:
        """A JSON-able description saved with every result."""
        return {"kind": type(self).__name__}


def _check_batch(inputs: torch.Tensor, n_dims: int, what: str) -> None:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{what} expect a torch.Tensor input, got {type(inputs).__name__}")
    if inputs.ndim != n_dims:
        raise ValueError(f"{what} expect inputs with {n_dims} dimensions, got shape {tuple(inputs.shape)}")


@dataclass(frozen=True)
class GridUnits(Units):
    """Units are blocks of a regular grid over the trailing axes of ``(B, ..., *spatial)`` inputs.

    Args:
        block: block size along each of the ``len(block)`` trailing axes; blocks at the far edge may be smaller
            when an axis is not a multiple of its block size.
        channel_dim: the axis holding channels (summed over for scores, removed together); ``None`` when the
            input has no channel axis.
        reference: what a removed unit becomes: a number (0.0 = the mean after standardisation), ``"mean"``
            (each input's own per-channel mean), a tensor broadcastable to one input, or a callable
            ``f(inputs, keep_elementwise) -> filled inputs`` (imputation).
    """

    block: tuple[int, ...] = (1, 1)
    channel_dim: int | None = 1
    reference: Reference = 0.0

    def __post_init__(self) -> None:
        if any(int(b) < 1 for b in self.block):
            raise ValueError(f"block sizes must be >= 1, got {self.block}")
        if isinstance(self.reference, str) and self.reference != "mean":
            raise ValueError(f"reference must be a number, 'mean', a tensor or a callable, got {self.reference!r}")

    # -- geometry -------------------------------------------------------------------------------------------
    @property
    def _n_spatial(self) -> int:
        return len(self.block)

    def spatial(self, inputs: torch.Tensor) -> tuple[int, ...]:
        """The sizes of the blocked axes: the trailing axes once the channel axis is set aside."""
        shape = list(inputs.shape)
        if self.channel_dim is not None:
            del shape[self.channel_dim]
        if len(shape) < 1 + self._n_spatial:
            raise ValueError(f"{type(self).__name__} with {self._n_spatial} blocked axes cannot take inputs of "
                             f"shape {tuple(inputs.shape)}")
        return tuple(shape[len(shape) - self._n_spatial :])

    def grid(self, inputs: torch.Tensor) -> tuple[int, ...]:
        """Number of blocks along each blocked axis."""
        spatial = self.spatial(inputs)
        return tuple(math.ceil(n / b) for n, b in zip(spatial, self.block, strict=True))

    def num_units(self, inputs: torch.Tensor) -> int:
        return math.prod(self.grid(inputs))

    def _to_cs(self, x: torch.Tensor) -> torch.Tensor:
        """Views ``x`` as (B, C, *spatial), folding any axes between batch and spatial into C."""
        if self.channel_dim is None:
            lead = x.shape[: x.ndim - self._n_spatial]
            return x.reshape(lead[0], -1, *x.shape[x.ndim - self._n_spatial :])
        x = x.movedim(self.channel_dim, 1)
        return x.reshape(x.shape[0], -1, *x.shape[x.ndim - self._n_spatial :])

    # -- protocol -------------------------------------------------------------------------------------------
    def scores(self, attributions: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        b = inputs.shape[0]
        grid = self.grid(inputs)
        d = math.prod(grid)
        attributions = attributions.to(inputs.device)
        if attributions.shape == inputs.shape:
            a = self._to_cs(attributions).float().sum(dim=1)  # (B, *spatial)
            pooled = _block_sum(a, self.block)
            return pooled.reshape(b, d)
        if tuple(attributions.shape) == (b, *grid) or tuple(attributions.shape) == (b, d):
            return attributions.float().reshape(b, d)
        spatial = self.spatial(inputs)
        if tuple(attributions.shape) == (b, *spatial):  # already summed over channels
            return _block_sum(attributions.float(), self.block).reshape(b, d)
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} do not match inputs of shape "
            f"{tuple(inputs.shape)}: expected the input's shape, {(b, *spatial)}, the unit grid {(b, *grid)} "
            f"or {(b, d)}"
        )

    def expand(self, keep: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Expands a (B, D) unit mask to (B, 1, *spatial) over elements."""
        grid = self.grid(inputs)
        spatial = self.spatial(inputs)
        m = keep.reshape(keep.shape[0], *grid)
        for axis, bsz in enumerate(self.block):
            if bsz > 1:
                m = m.repeat_interleave(bsz, dim=1 + axis)
        slices = (slice(None), *tuple(slice(0, n) for n in spatial))
        return m[slices].unsqueeze(1)

    def remove(self, inputs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        mask_cs = self.expand(keep, inputs)  # (B, 1, *spatial)
        x_cs = self._to_cs(inputs)
        ref = self.reference
        if callable(ref) and not isinstance(ref, torch.Tensor):
            out_cs = ref(x_cs, mask_cs.expand_as(x_cs))
        else:
            if isinstance(ref, str):  # "mean": each input's own per-channel mean
                ref_cs = x_cs.mean(dim=tuple(range(2, x_cs.ndim)), keepdim=True)
            elif isinstance(ref, torch.Tensor):
                ref_cs = self._to_cs(ref.to(inputs.device, inputs.dtype).expand_as(inputs[:1]))
            else:
                return fill_removed(inputs, self._native_mask(keep, inputs), float(ref))
            out_cs = torch.where(mask_cs, x_cs, ref_cs)
        return self._from_cs(out_cs, inputs)

    def remove_into(self, inputs: torch.Tensor, keep: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        ref = self.reference
        if isinstance(ref, (str, torch.Tensor)) or callable(ref) or not out.is_contiguous():
            return self.remove(inputs, keep)
        # the element mask in the inputs' own layout (1 on every axis that is neither batch nor blocked), so
        # that inputs and ``out`` are read and written in memory order, whatever the channel axis
        fill_removed(inputs, self._native_mask(keep, inputs), float(ref), out=out)
        return out

    def _native_mask(self, keep: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """``expand(keep)`` reshaped to broadcast against ``inputs`` as they are laid out (no axis moved)."""
        mask = self.expand(keep, inputs).squeeze(1)  # (B, *spatial)
        axes = [a for a in range(1, inputs.ndim) if a != (self.channel_dim % inputs.ndim
                                                          if self.channel_dim is not None else None)]
        blocked = set(axes[len(axes) - self._n_spatial :])
        shape = [mask.shape[0], *(inputs.shape[a] if a in blocked else 1 for a in range(1, inputs.ndim))]
        return mask.reshape(shape)

    def _from_cs(self, x_cs: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.channel_dim is None:
            return x_cs.reshape(like.shape)
        moved = like.movedim(self.channel_dim, 1)
        return x_cs.reshape(moved.shape).movedim(1, self.channel_dim)

    def describe(self) -> dict:
        ref = self.reference
        ref_desc = ref if isinstance(ref, (int, float, str)) else type(ref).__name__
        return {"kind": type(self).__name__, "block": list(self.block), "channel_dim": self.channel_dim,
                "reference": ref_desc}


_BITS = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16,
         torch.bfloat16: torch.int16}


def fill_removed(x: torch.Tensor, keep: torch.Tensor, value: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.where(keep, x, value)`` for a number ``value``, bit for bit, in one vectorised pass on the CPU.

    ``keep`` broadcasts to ``x``. On the CPU ``torch.where`` runs element by element; selecting through the
    floats' bit patterns as integers (``bits * keep``, plus ``value``'s bits where removed) is vectorised, ~15x
    faster on the engine's masked batches, and gives the same bits (signed zeros and NaN payloads included).
    Other devices and dtypes use ``torch.where``. ``out`` (contiguous, shaped like the broadcast result) receives
    the result when given.
    """
    bits = _BITS.get(x.dtype)
    fill = torch.tensor(value, dtype=x.dtype, device=x.device)
    if bits is None or x.device.type != "cpu":
        return torch.where(keep, x, fill) if out is None else torch.where(keep, x, fill, out=out)
    # integer product: the bit pattern where kept, 0 (= +0.0) where removed
    res = torch.mul(x.view(bits), keep, out=None if out is None else out.view(bits))
    fill_bits = fill.view(bits)
    if int(fill_bits) != 0:
        res += fill_bits * ~keep  # the two terms never overlap: no carry
    return res.view(x.dtype)


def _block_sum(a: torch.Tensor, block: Sequence[int]) -> torch.Tensor:
    """Sums (B, *spatial) over non-overlapping blocks, padding the far edges with zeros."""
    if all(b == 1 for b in block):
        return a
    pads: list[int] = []
    for n, bsz in reversed(list(zip(a.shape[1:], block, strict=True))):
        pads += [0, (-n) % bsz]
    a = F.pad(a, pads)
    shape = [a.shape[0]]
    for n, bsz in zip(a.shape[1:], block, strict=True):
        shape += [n // bsz, bsz]
    a = a.reshape(shape)
    return a.sum(dim=tuple(range(2, len(shape), 2)))


class ImageUnits(GridUnits):
    """A unit is one pixel position with all its channels, or a ``patch`` x ``patch`` block of them.

    Inputs are (B, C, H, W). ``reference`` is what a removed pixel becomes (default 0.0: the mean colour of
    standardised images).
    """

    def __init__(self, patch: int = 1, reference: Reference = 0.0) -> None:
        if int(patch) < 1:
            raise ValueError(f"patch must be >= 1, got {patch}")
        super().__init__(block=(int(patch), int(patch)), channel_dim=1, reference=reference)
        object.__setattr__(self, "patch", int(patch))

    def num_units(self, inputs: torch.Tensor) -> int:
        _check_batch(inputs, 4, "ImageUnits")
        return super().num_units(inputs)

    def __repr__(self) -> str:
        return f"ImageUnits(patch={self.patch}, reference={self.reference!r})"


# -- sequences ----------------------------------------------------------------------------------------------------
def _check_not_ragged(inputs: object, what: str) -> None:
    """Ragged batches (lists of sequences of different lengths, nested tensors) get a clear error."""
    if isinstance(inputs, (list, tuple)):
        lengths = sorted({int(getattr(s, "shape", [len(s)])[0]) for s in inputs})
        raise TypeError(
            f"{what} expect one padded tensor, got a {type(inputs).__name__} of {len(inputs)} sequences "
            f"(lengths {lengths[:5]}{' ...' if len(lengths) > 5 else ''}); pad them with "
            "ffidelity.timeseries.pad_sequences and mark the padding (SequenceUnits(pad_value=...) or "
            "TokenUnits(pad_token_id=...))"
        )
    if isinstance(inputs, torch.Tensor) and inputs.is_nested:
        raise TypeError(
            f"{what} cannot rank units of a nested (ragged) tensor without a padding mask; convert it with "
            "ffidelity.timeseries.pad_sequences and mark the padding (SequenceUnits(pad_value=...))"
        )


@dataclass(frozen=True)
class SequenceUnits(Units):
    """A unit is one time step with all its features (or ``window`` consecutive steps) of (B, T, F) inputs.

    Removal replaces the step's features by a reference: ``"zero"`` (0.0: the training mean after
    standardisation), ``"mean"`` (each input's own per-feature mean over its real time steps), or a number.

    Padded sets: when sequences of different lengths are padded to one tensor, pass ``pad_value``: a step whose
    features all equal ``pad_value`` (NaN allowed) is padding. Padding steps are never ranked, never removed,
    do not count in D, and are left out of the ``"mean"`` reference. The mask travels with the data (it is
    read from the values), so it stays right however the engine slices and reorders the inputs.

    Args:
        reference: ``"zero"``, ``"mean"`` or a number.
        window: consecutive time steps per unit (the last unit may be shorter).
        pad_value: the value that marks padded steps, or ``None`` when every step is real.
    """

    reference: str | float = "zero"
    window: int = 1
    pad_value: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.reference, str):
            if self.reference not in ("zero", "mean"):
                raise ValueError(f"reference must be 'zero', 'mean' or a number, got {self.reference!r}")
        elif not isinstance(self.reference, (int, float)) or isinstance(self.reference, bool):
            raise TypeError(f"reference must be 'zero', 'mean' or a number, got {type(self.reference).__name__}")
        if int(self.window) < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")

    def _check(self, inputs: torch.Tensor) -> None:
        _check_not_ragged(inputs, "SequenceUnits")
        _check_batch(inputs, 3, "SequenceUnits (batch, time, features)")

    def num_units(self, inputs: torch.Tensor) -> int:
        self._check(inputs)
        return math.ceil(inputs.shape[1] / int(self.window))

    def real_steps(self, inputs: torch.Tensor) -> torch.Tensor:
        """Boolean (B, T): which time steps are real (not padding)."""
        self._check(inputs)
        if self.pad_value is None:
            return torch.ones(inputs.shape[:2], dtype=torch.bool, device=inputs.device)
        if math.isnan(float(self.pad_value)):
            return ~torch.isnan(inputs).all(dim=2)
        return ~(inputs == float(self.pad_value)).all(dim=2)

    def valid(self, inputs: torch.Tensor) -> torch.Tensor:
        real = self.real_steps(inputs)
        w = int(self.window)
        if w == 1:
            return real
        pad = (-real.shape[1]) % w
        padded = F.pad(real, (0, pad), value=False)
        return padded.reshape(real.shape[0], -1, w).any(dim=2)

    def scores(self, attributions: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        b, t = inputs.shape[:2]
        d = self.num_units(inputs)
        a = attributions.to(inputs.device).float()
        if tuple(a.shape) == tuple(inputs.shape):
            a = a.sum(dim=2)  # (B, T): all features of a step together
        elif tuple(a.shape) == (b, d) and d != t:
            return a
        elif tuple(a.shape) != (b, t):
            raise ValueError(
                f"attributions of shape {tuple(a.shape)} do not match sequences of shape {tuple(inputs.shape)}: "
                f"expected {tuple(inputs.shape)}, {(b, t)} (one score per step) or {(b, d)} (one per unit)"
            )
        return _block_sum(torch.nan_to_num(a), (int(self.window),)).reshape(b, d)

    def expand(self, keep: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Expands a (B, D) unit mask to (B, T) over time steps."""
        return keep.repeat_interleave(int(self.window), dim=1)[:, : inputs.shape[1]]

    def reference_values(self, inputs: torch.Tensor) -> torch.Tensor:
        """The replacement of every step, broadcastable to the inputs: (1, 1, 1) or (B, 1, F)."""
        if self.reference == "mean":
            real = self.real_steps(inputs)[..., None]
            filled = torch.where(real, inputs, torch.zeros((), dtype=inputs.dtype, device=inputs.device))
            return filled.sum(dim=1, keepdim=True) / real.sum(dim=1, keepdim=True).clamp(min=1)
        value = 0.0 if self.reference == "zero" else float(self.reference)
        return torch.full((1, 1, 1), value, dtype=inputs.dtype, device=inputs.device)

    def remove(self, inputs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        keep_steps = self.expand(keep.to(inputs.device), inputs) | ~self.real_steps(inputs)
        return torch.where(keep_steps[..., None], inputs, self.reference_values(inputs))

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "reference": self.reference, "window": int(self.window),
                "pad_value": self.pad_value}


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
