"""Units of time series: one time step (or a window of steps) with all its features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ffidelity.units.base import Units, _check_batch
from ffidelity.units.grid import _block_sum


def _check_not_ragged(inputs: object, what: str) -> None:
    """Ragged batches (lists of sequences of different lengths, nested tensors) get a clear error."""
    if isinstance(inputs, (list, tuple)):
        lengths = sorted({int(getattr(s, "shape", [len(s)])[0]) for s in inputs})
        raise TypeError(
            f"{what} expect one padded tensor, got a {type(inputs).__name__} of {len(inputs)} sequences "
            f"(lengths {lengths[:5]}{' ...' if len(lengths) > 5 else ''}); pad them with "
            "ffidelity.data.timeseries.pad_sequences and mark the padding (SequenceUnits(pad_value=...) or "
            "TokenUnits(pad_token_id=...))"
        )
    if isinstance(inputs, torch.Tensor) and inputs.is_nested:
        raise TypeError(
            f"{what} cannot rank units of a nested (ragged) tensor without a padding mask; convert it with "
            "ffidelity.data.timeseries.pad_sequences and mark the padding (SequenceUnits(pad_value=...))"
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
