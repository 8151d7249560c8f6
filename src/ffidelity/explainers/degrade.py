"""The paper's degraded explainers: a fraction of each explanation's unit scores permuted among themselves,
so that the true ranking of explainers (less noise is better) is known.
"""

from __future__ import annotations

import torch

from ffidelity.utils.seeding import seeded_generator


def degrade(attributions: torch.Tensor, noise: float, seed: int = 0, groups: torch.Tensor | None = None
            ) -> torch.Tensor:
    """Permutes the scores of a random ``noise`` fraction of units among themselves, per input.

    The score histogram is kept while the ranking is corrupted; ``noise = 1`` shuffles every score. Every
    element after the batch axis is a unit, so reduce attributions to unit scores first (``units.scores``)
    when units span channels or patches.

    Args:
        attributions: (N, ...) scores.
        noise: fraction of units whose scores are permuted, in [0, 1].
        seed: seeds which units are chosen and how they are permuted.
        groups: optional integer labels ``(N, D)`` (or ``(D,)`` for all inputs) over the flattened units: scores
            are then permuted only among units of the same group, a ``noise`` fraction of each group. With the
            modalities of a multimodal input as groups, every copy keeps the explainer's balance between the
            modalities (how many of its top units are video, how many audio) and loses only which units within
            a modality rank first.
    """
    if not 0 <= noise <= 1:
        raise ValueError(f"noise must lie in [0, 1], got {noise}")
    if groups is not None:
        return _degrade_within(attributions, noise, seed, groups)
    flat = attributions.reshape(attributions.shape[0], -1)
    n, d = flat.shape
    m = int(noise * d + 1e-9)
    if m < 2:
        return attributions.clone()
    gen = seeded_generator(seed, 0xDE6)
    chosen = torch.rand(n, d, generator=gen).argsort(dim=1)[:, :m]  # (n, m) units to permute
    shuffle = torch.rand(n, m, generator=gen).argsort(dim=1)
    src = chosen.gather(1, shuffle)
    out = flat.clone()
    out.scatter_(1, chosen.to(flat.device), flat.gather(1, src.to(flat.device)))
    return out.reshape(attributions.shape)


def _degrade_within(attributions: torch.Tensor, noise: float, seed: int, groups: torch.Tensor) -> torch.Tensor:
    flat = attributions.reshape(attributions.shape[0], -1)
    n, d = flat.shape
    g = torch.as_tensor(groups).long()
    if g.ndim == 1 and g.shape[0] == d:
        g = g.expand(n, d)
    if tuple(g.shape) != (n, d):
        raise ValueError(f"groups must have shape ({n}, {d}) or ({d},) to match the attributions, got "
                         f"{tuple(groups.shape)}")
    gen = seeded_generator(seed, 0xDE7)
    out = flat.clone()
    for i in range(n):  # a few groups per input: cheap next to any forward pass
        for label in torch.unique(g[i]).tolist():
            members = (g[i] == label).nonzero().flatten()
            m = int(noise * members.numel() + 1e-9)
            if m < 2:
                continue
            chosen = members[torch.randperm(members.numel(), generator=gen)[:m]]
            src = chosen[torch.randperm(m, generator=gen)]
            out[i, chosen.to(flat.device)] = flat[i, src.to(flat.device)]
    return out.reshape(attributions.shape)
