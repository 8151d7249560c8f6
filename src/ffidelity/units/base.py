"""The protocol of an input's removable units: what a unit is, and how a unit is removed.

The engine never looks at pixels, time steps or tokens itself: it asks a ``Units`` object

* how many units each input has and which of them may be removed (``valid``),
* how an attribution map reduces to one score per unit (``scores``),
* how to build the inputs with some units removed (``remove``).

Grids of pixels, patches and video tubes (:mod:`ffidelity.units.grid`), time steps
(:mod:`ffidelity.units.sequence`), tokens (:mod:`ffidelity.units.tokens`) and label groups
(:mod:`ffidelity.units.video`) follow this protocol.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

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
    #: transformer's sequence (:class:`ffidelity.units.token_drop.TokenDrop`), rather than in the input (``remove``)
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


class InModelUnits(Units):
    """Units removed inside the model (``forward_removed``) that wrap other units for what a unit is: the
    number of units, their validity and their scores are the wrapped ``units``' own."""

    removes_in_model = True
    units: Units

    def num_units(self, inputs: torch.Tensor) -> int:
        return self.units.num_units(inputs)

    def valid(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.units.valid(inputs)

    def scores(self, attributions: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self.units.scores(attributions, inputs)


def _check_batch(inputs: torch.Tensor, n_dims: int, what: str) -> None:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{what} expect a torch.Tensor input, got {type(inputs).__name__}")
    if inputs.ndim != n_dims:
        raise ValueError(f"{what} expect inputs with {n_dims} dimensions, got shape {tuple(inputs.shape)}")
