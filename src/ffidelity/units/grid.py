"""Units on grids: pixels or square patches of images (``ImageUnits``), blocks over any trailing axes
(``GridUnits``, e.g. video tubes), and the vectorised fill that removes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ffidelity.units.base import Reference, Units, _check_batch


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
        channel = None if self.channel_dim is None else self.channel_dim % inputs.ndim
        blocked = set([a for a in range(1, inputs.ndim) if a != channel][-self._n_spatial :])
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
