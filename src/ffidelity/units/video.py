"""Units of video-shaped inputs: the tubes a video transformer tokenises, and arbitrary groups of elements.

``VideoUnits`` makes a unit one token of a ViViT/VideoMAE-style model: a ``tubelet`` x ``patch`` x ``patch``
tube of ``(B, T, C, H, W)`` inputs with all its channels. Units are numbered in the model's token order
(frame-pair, then row, then column), so unit ``u`` is token ``u`` of the encoder.

``GroupUnits`` makes a unit any set of elements named by an integer label map, e.g. "every pixel of the fused
clip that came from the audio" vs "... from the video" for a modality ablation. The map is shared by every
input, or given per input; per-input maps are found again from the input values themselves (a fingerprint of
each row), so they stay right however the engine slices, repeats and reorders the inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch

from ffidelity.units.base import Reference, Units, _check_batch
from ffidelity.units.grid import GridUnits


class VideoUnits(GridUnits):
    """A unit is one tube of ``tubelet`` frames x ``patch`` x ``patch`` pixels of ``(B, T, C, H, W)`` inputs.

    With VideoMAE's ``tubelet_size`` and ``patch_size`` a unit is exactly one encoder token, numbered as the
    encoder numbers its tokens. Tubes at the far edges are smaller when an axis is not a multiple of its size.

    Args:
        tubelet: frames per tube.
        patch: tube height and width in pixels.
        reference: what a removed tube becomes (default 0.0: the mean colour of normalised frames); see
            ``GridUnits``.
    """

    def __init__(self, tubelet: int = 2, patch: int = 16, reference: Reference = 0.0) -> None:
        if int(tubelet) < 1 or int(patch) < 1:
            raise ValueError(f"tubelet and patch must be >= 1, got tubelet={tubelet}, patch={patch}")
        super().__init__(block=(int(tubelet), int(patch), int(patch)), channel_dim=2, reference=reference)
        object.__setattr__(self, "tubelet", int(tubelet))
        object.__setattr__(self, "patch", int(patch))

    def num_units(self, inputs: torch.Tensor) -> int:
        _check_batch(inputs, 5, "VideoUnits (batch, frames, channels, height, width)")
        return super().num_units(inputs)

    def describe(self) -> dict:
        return {**super().describe(), "tubelet": self.tubelet, "patch": self.patch}

    def __repr__(self) -> str:
        return f"VideoUnits(tubelet={self.tubelet}, patch={self.patch}, reference={self.reference!r})"


class GroupUnits(Units):
    """A unit is the set of elements sharing a label in an integer label map.

    Args:
        groups: integer labels over one input without its batch and channel axes (shared by every input), or
            ``(N, ...)`` labels, one map per input of ``inputs``. Labels ``0..G-1`` are units; ``-1`` marks
            elements that belong to no unit (never ranked, never removed).
        inputs: the ``N`` inputs the per-input maps belong to (required with per-input maps). Later calls find
            each row's map by matching the row's values against these inputs.
        channel_dim: the channel axis (all channels of an element are removed together); ``None`` for none.
        reference: the value (or a tensor broadcastable to one input) that removed elements become.
        names: optional group names, one per label (also fixes G when a label is absent from every map).
    """

    def __init__(self, groups: torch.Tensor, *, inputs: torch.Tensor | None = None, channel_dim: int | None = 1,
                 reference: float | torch.Tensor = 0.0, names: Sequence[str] | None = None) -> None:
        self.groups = groups
        self.inputs = inputs
        self.channel_dim = channel_dim
        self.reference = reference
        self.names = tuple(names) if names is not None else None
        self._check_groups()

    # -- set-up -----------------------------------------------------------------------------------------------
    def _check_groups(self) -> None:
        g = self.groups
        if not isinstance(g, torch.Tensor) or g.is_floating_point() or g.is_complex():
            raise TypeError(f"groups must be an integer tensor of labels, got {getattr(g, 'dtype', type(g))}")
        if g.numel() == 0:
            raise ValueError("groups is empty")
        if int(g.min()) < -1:
            raise ValueError(f"group labels must be >= -1 (-1 = no unit), got {int(g.min())}")
        n_groups = self.num_groups
        if n_groups < 1:
            raise ValueError("groups holds no unit: every label is -1")
        if self.names is not None and int(g.max()) >= len(self.names):
            raise ValueError(f"groups uses label {int(g.max())} but only {len(self.names)} names were given")
        if self.inputs is not None:
            if not isinstance(self.inputs, torch.Tensor):
                raise TypeError(f"inputs must be a tensor, got {type(self.inputs).__name__}")
            if g.shape[0] != self.inputs.shape[0]:
                raise ValueError(f"per-input groups need one map per input: got {g.shape[0]} maps for "
                                 f"{self.inputs.shape[0]} inputs")
            self._fp = _fingerprints(self.inputs)

    @property
    def num_groups(self) -> int:
        """G: the number of units (the largest label + 1, or the number of names)."""
        top = int(self.groups.max()) + 1
        return max(top, len(self.names)) if self.names is not None else top

    def _element_shape(self, inputs: torch.Tensor) -> tuple[int, ...]:
        shape = list(inputs.shape[1:])
        if self.channel_dim is not None:
            del shape[(self.channel_dim % inputs.ndim) - 1]
        return tuple(shape)

    def labels(self, inputs: torch.Tensor) -> torch.Tensor:
        """The label map of every input row: long ``(B, *element shape)``."""
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"GroupUnits expect a tensor input, got {type(inputs).__name__}")
        if self.channel_dim is not None and self.channel_dim % inputs.ndim == 0:
            raise ValueError(f"channel_dim {self.channel_dim} is the batch axis of inputs {tuple(inputs.shape)}")
        shape = self._element_shape(inputs)
        g = self.groups.to(inputs.device).long()
        if self.inputs is None:
            if tuple(g.shape) != shape:
                raise ValueError(f"the shared label map has shape {tuple(g.shape)} but inputs of shape "
                                 f"{tuple(inputs.shape)} need {shape} (the input without batch and channel axes)")
            return g.expand(inputs.shape[0], *shape)
        if tuple(g.shape[1:]) != shape:
            raise ValueError(f"the per-input label maps have shape {tuple(g.shape[1:])} but inputs of shape "
                             f"{tuple(inputs.shape)} need {shape}")
        return g[self._lookup(inputs).to(g.device)]

    def _lookup(self, inputs: torch.Tensor) -> torch.Tensor:
        """Index into ``self.inputs`` of every row of ``inputs`` (by value)."""
        if tuple(inputs.shape[1:]) != tuple(self.inputs.shape[1:]):
            raise ValueError(f"inputs of shape {tuple(inputs.shape)} do not match the {tuple(self.inputs.shape)} "
                             "inputs the per-input label maps were given for")
        fp = _fingerprints(inputs)
        dist = (fp[:, None, :] - self._fp[None, :, :]).abs().amax(-1)  # (B, N)
        best = dist.min(1)
        tol = 1e-6 * (1.0 + self._fp.abs().amax())
        if bool((best.values > tol).any()):
            bad = (best.values > tol).nonzero().flatten()[:5].tolist()
            raise ValueError(f"GroupUnits got input rows {bad} that are none of the inputs its per-input label "
                             "maps were given for; build it with GroupUnits(maps, inputs=<those inputs>)")
        return best.indices

    # -- protocol ---------------------------------------------------------------------------------------------
    def num_units(self, inputs: torch.Tensor) -> int:
        return self.num_groups

    def valid(self, inputs: torch.Tensor) -> torch.Tensor:
        lab = self.labels(inputs).reshape(inputs.shape[0], -1)
        present = torch.zeros(inputs.shape[0], self.num_groups + 1, dtype=torch.bool, device=inputs.device)
        present.scatter_(1, lab + 1, True)
        return present[:, 1:]

    def scores(self, attributions: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        b, g = inputs.shape[0], self.num_groups
        a = attributions.to(inputs.device).float()
        shape = self._element_shape(inputs)
        if a.shape == inputs.shape:
            if self.channel_dim is not None:
                a = a.sum(dim=self.channel_dim % inputs.ndim)
        elif tuple(a.shape) == (b, g):
            return a
        elif tuple(a.shape) != (b, *shape):
            raise ValueError(f"attributions of shape {tuple(a.shape)} do not match inputs of shape "
                             f"{tuple(inputs.shape)}: expected the input's shape, {(b, *shape)} or {(b, g)}")
        lab = self.labels(inputs).reshape(b, -1) + 1
        out = torch.zeros(b, g + 1, dtype=torch.float32, device=inputs.device)
        out.scatter_add_(1, lab, a.reshape(b, -1))
        return out[:, 1:]

    def expand(self, keep: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Expands a (B, G) unit mask to an element mask broadcastable to the inputs."""
        lab = self.labels(inputs)
        keep_ext = torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1).to(inputs.device)  # label -1 is kept
        el = keep_ext.gather(1, (lab + 1).reshape(lab.shape[0], -1)).reshape(lab.shape)
        if self.channel_dim is not None:
            el = el.unsqueeze(self.channel_dim % inputs.ndim)
        return el

    def remove(self, inputs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        mask = self.expand(keep.bool(), inputs)
        ref = self.reference
        if isinstance(ref, torch.Tensor):
            ref_t = ref.to(inputs.device, inputs.dtype)
        else:
            ref_t = torch.tensor(float(ref), device=inputs.device, dtype=inputs.dtype)
        return torch.where(mask, inputs, ref_t)

    def describe(self) -> dict:
        ref = self.reference if isinstance(self.reference, (int, float)) else type(self.reference).__name__
        return {"kind": type(self).__name__, "num_groups": self.num_groups, "names": list(self.names or ()),
                "per_input": self.inputs is not None, "channel_dim": self.channel_dim, "reference": ref}

    def __repr__(self) -> str:
        kind = f"per-input x {self.groups.shape[0]}" if self.inputs is not None else "shared"
        return f"GroupUnits({self.num_groups} groups, {kind}, names={self.names})"


@lru_cache(maxsize=8)
def _projection(d: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0x6A09E667)
    return torch.randn(d, 2, generator=gen, dtype=torch.float64)


def _fingerprints(x: torch.Tensor) -> torch.Tensor:
    """Two fixed random projections of every row: equal rows give equal prints, different rows (almost
    surely) different ones."""
    flat = x.detach().reshape(x.shape[0], -1).to("cpu", torch.float64)
    return flat @ _projection(flat.shape[1]) / math.sqrt(max(1, flat.shape[1]))
