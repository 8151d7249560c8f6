"""Early fusion of a clip's video frames and audio images into the one frame sequence the encoder sees.

MultiMAE-DER feeds a single VideoMAE encoder with 16 frames built from the video frames ``V_k`` and the audio
"frames" ``A_k`` (images of the spectral features of audio window ``k``). The six strategies of the paper and
two unimodal baselines are registered in :data:`FUSIONS`; each works on uint8 tensors of shape
``(B, T, 3, S, S)`` (video) and ``(B, N, 3, S, S)`` (audio) and returns the fused uint8 frames
``(B, F, 3, S, S)`` plus, per clip, a :class:`FusionLayout` telling for every output frame and pixel region
which modality, source frame and source region it came from, so attributions can be mapped back to sources.

| name  | frame sequence (F = num_frames, H = F / 2)                                   |
|-------|-------------------------------------------------------------------------------|
| cfas  | frame k = V_k stacked on top of A_k (2S x S), resized to S x S (row pairs averaged) |
| sfas  | frame k = round((V_k + A_k) / 2) (or min(V_k + A_k, 255)); never the uint8 wrap-around |
| ffls  | V_1..V_H, A_1..A_H                                                           |
| fslf  | A_1..A_H, V_1..V_H                                                           |
| ofos  | V_1, A_1, ..., V_H, A_H                                                      |
| rfas  | the OFOS frames in a random order, one permutation per clip, from (seed, clip id) |
| video | V_1..V_F                                                                     |
| audio | A_1..A_F                                                                     |

When a modality has more (or fewer) source frames than a strategy needs, evenly spaced ones are taken: source
index ``floor((2i + 1) * T / (2n))`` for ``i < n`` (segment centres; the identity when ``n == T``).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ffidelity.utils.registry import Registry

#: ImageNet channel means and the single standard deviation used for all channels (the paper's normalisation).
MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
STD: float = 0.225

MODALITIES: tuple[str, str] = ("video", "audio")

Box = tuple[int, int, int, int]  # (top, bottom, left, right), half-open, in pixels


@dataclass(frozen=True)
class Piece:
    """One source contribution to a fused frame.

    Attributes:
        modality: ``"video"`` or ``"audio"``.
        index: index of the source frame in the clip's ``video`` / ``audio`` tensor.
        out_box: the region of the fused frame it fills, ``(top, bottom, left, right)``.
        src_box: the region of the source frame it comes from (resized into ``out_box`` when sizes differ).
        weight: the share of each fused pixel in ``out_box`` credited to this source (0.5 for either SFAS
            sum, else 1); the shares of the pieces covering a pixel add up to 1.
    """

    modality: str
    index: int
    out_box: Box
    src_box: Box
    weight: float = 1.0


@dataclass(frozen=True)
class FusionLayout:
    """Provenance of every fused frame: ``frames[f]`` lists the :class:`Piece` s that make up frame ``f``."""

    strategy: str
    size: int
    frames: tuple[tuple[Piece, ...], ...]

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def sources(self, modality: str) -> list[int]:
        """Source frame index per output frame for ``modality`` (``-1`` where the frame has none of it)."""
        return [next((p.index for p in pieces if p.modality == modality), -1) for pieces in self.frames]

    def modality_mask(self, modality: str) -> torch.Tensor:
        """A float ``(F, S, S)`` map of how much of each fused pixel comes from ``modality`` (0..1)."""
        mask = torch.zeros(self.num_frames, self.size, self.size)
        for f, pieces in enumerate(self.frames):
            for p in pieces:
                if p.modality == modality:
                    t, b, left, r = p.out_box
                    mask[f, t:b, left:r] += p.weight
        return mask

    def backproject(self, attribution: torch.Tensor, num_sources: Mapping[str, int]) -> dict[str, torch.Tensor]:
        """Maps an attribution on the fused frames back onto the source frames.

        Each fused pixel's attribution is shared among its sources by their weights, and a
        resized region spreads evenly over the source pixels it was made of, so totals are conserved.

        Args:
            attribution: ``(F, C, S, S)`` (or ``(F, S, S)``) attribution of the fused frames.
            num_sources: number of source frames per modality, e.g. ``{"video": 16, "audio": 16}``.

        Returns:
            ``{modality: (num_sources[modality], C, S, S)}`` tensors (``(n, S, S)`` for 3-D input).
        """
        squeeze = attribution.dim() == 3
        attr = attribution.unsqueeze(1) if squeeze else attribution
        if attr.shape[0] != self.num_frames or attr.shape[-1] != self.size or attr.shape[-2] != self.size:
            raise ValueError(f"attribution of shape {tuple(attribution.shape)} does not match the layout "
                             f"({self.num_frames} frames of {self.size}x{self.size})")
        out = {m: attr.new_zeros((num_sources[m], *attr.shape[1:])) for m in MODALITIES if m in num_sources}
        for f, pieces in enumerate(self.frames):
            for p in pieces:
                if p.modality not in out:
                    continue
                t, b, left, r = p.out_box
                st, sb, sl, sr = p.src_box
                region = attr[f, :, t:b, left:r] * p.weight
                fy, fx = (sb - st) // (b - t), (sr - sl) // (r - left)
                # a block of fy x fx source pixels was averaged into each output pixel: share evenly
                region = region.repeat_interleave(fy, dim=-2).repeat_interleave(fx, dim=-1) / (fy * fx)
                out[p.modality][p.index, :, st:sb, sl:sr] += region
        return {m: (v.squeeze(1) if squeeze else v) for m, v in out.items()}


class FusionFn(Protocol):
    """A fusion strategy: ``(video, audio, num_frames, clip_seeds, **options) -> (frames, layouts)``."""

    def __call__(self, video: torch.Tensor, audio: torch.Tensor, num_frames: int,
                 clip_seeds: Sequence[int] | None, **options: Any) -> tuple[torch.Tensor, list[FusionLayout]]: ...


FUSIONS: Registry[FusionFn] = Registry("fusion strategy")

#: the paper's table order (weakest to strongest), then the unimodal baselines.
PAPER_ORDER: tuple[str, ...] = ("rfas", "sfas", "ofos", "cfas", "ffls", "fslf", "video", "audio")


def display_name(strategy: str) -> str:
    """A strategy as tables print it: ``FSLF``, or ``video only`` / ``audio only`` for the unimodal baselines."""
    return f"{strategy} only" if strategy in MODALITIES else strategy.upper()


def evenly_spaced(available: int, needed: int) -> list[int]:
    """Indices of ``needed`` evenly spaced frames out of ``available`` (segment centres)."""
    if available < 1 or needed < 1:
        raise ValueError(f"need at least one source frame and one output frame, got {available} and {needed}")
    return [((2 * i + 1) * available) // (2 * needed) for i in range(needed)]


def _full(size: int) -> Box:
    return (0, size, 0, size)


def _whole(modality: str, index: int, size: int, weight: float = 1.0) -> Piece:
    return Piece(modality, index, _full(size), _full(size), weight)


def _sequence(name: str, video: torch.Tensor, audio: torch.Tensor, order: Sequence[tuple[str, int]]
              ) -> tuple[torch.Tensor, FusionLayout]:
    """Gathers whole frames ``[(modality, source index), ...]`` into a batch ``(B, F, 3, S, S)``."""
    size = video.shape[-1]
    src = {"video": video, "audio": audio}
    frames = torch.stack([src[m][:, i] for m, i in order], dim=1)
    layout = FusionLayout(name, size, tuple((_whole(m, i, size),) for m, i in order))
    return frames, layout


def _half(num_frames: int, name: str) -> int:
    if num_frames % 2:
        raise ValueError(f"{name} needs an even number of frames, got {num_frames}")
    return num_frames // 2


@FUSIONS.register("video")
def video_only(video: torch.Tensor, audio: torch.Tensor, num_frames: int, clip_seeds: Sequence[int] | None = None
               ) -> tuple[torch.Tensor, list[FusionLayout]]:
    """Unimodal baseline: ``num_frames`` evenly spaced video frames."""
    frames, layout = _sequence("video", video, audio,
                               [("video", i) for i in evenly_spaced(video.shape[1], num_frames)])
    return frames, [layout] * video.shape[0]


@FUSIONS.register("audio")
def audio_only(video: torch.Tensor, audio: torch.Tensor, num_frames: int, clip_seeds: Sequence[int] | None = None
               ) -> tuple[torch.Tensor, list[FusionLayout]]:
    """Unimodal baseline: ``num_frames`` evenly spaced audio images."""
    frames, layout = _sequence("audio", video, audio,
                               [("audio", i) for i in evenly_spaced(audio.shape[1], num_frames)])
    return frames, [layout] * video.shape[0]


@FUSIONS.register("ffls")
def ffls(video: torch.Tensor, audio: torch.Tensor, num_frames: int, clip_seeds: Sequence[int] | None = None
         ) -> tuple[torch.Tensor, list[FusionLayout]]:
    """First Facial, Later Spectrogram: ``V_1..V_H, A_1..A_H``."""
    h = _half(num_frames, "ffls")
    order = [("video", i) for i in evenly_spaced(video.shape[1], h)]
    order += [("audio", i) for i in evenly_spaced(audio.shape[1], h)]
    frames, layout = _sequence("ffls", video, audio, order)
    return frames, [layout] * video.shape[0]


@FUSIONS.register("fslf")
def fslf(video: torch.Tensor, audio: torch.Tensor, num_frames: int, clip_seeds: Sequence[int] | None = None
         ) -> tuple[torch.Tensor, list[FusionLayout]]:
    """First Spectrogram, Later Facial: ``A_1..A_H, V_1..V_H`` (the paper's best)."""
    h = _half(num_frames, "fslf")
    order = [("audio", i) for i in evenly_spaced(audio.shape[1], h)]
    order += [("video", i) for i in evenly_spaced(video.shape[1], h)]
    frames, layout = _sequence("fslf", video, audio, order)
    return frames, [layout] * video.shape[0]


def _ofos_order(video: torch.Tensor, audio: torch.Tensor, num_frames: int, name: str) -> list[tuple[str, int]]:
    h = _half(num_frames, name)
    vs, as_ = evenly_spaced(video.shape[1], h), evenly_spaced(audio.shape[1], h)
    return [pair for v, a in zip(vs, as_, strict=True) for pair in (("video", v), ("audio", a))]


@FUSIONS.register("ofos")
def ofos(video: torch.Tensor, audio: torch.Tensor, num_frames: int, clip_seeds: Sequence[int] | None = None
         ) -> tuple[torch.Tensor, list[FusionLayout]]:
    """One Facial, One Spectrogram: ``V_1, A_1, ..., V_H, A_H``."""
    frames, layout = _sequence("ofos", video, audio, _ofos_order(video, audio, num_frames, "ofos"))
    return frames, [layout] * video.shape[0]


def rfas_permutation(num_frames: int, clip_seed: int) -> list[int]:
    """The RFAS frame order of one clip: a permutation of the OFOS positions drawn from ``clip_seed``."""
    gen = torch.Generator().manual_seed(int(clip_seed))
    return torch.randperm(num_frames, generator=gen).tolist()


@FUSIONS.register("rfas")
def rfas(video: torch.Tensor, audio: torch.Tensor, num_frames: int, clip_seeds: Sequence[int] | None = None
         ) -> tuple[torch.Tensor, list[FusionLayout]]:
    """Random of Facial And Spectrogram: the OFOS frames in a per-clip seeded random order."""
    if clip_seeds is None or len(clip_seeds) != video.shape[0]:
        raise ValueError("rfas needs one seed per clip (clip_seeds)")
    base = _ofos_order(video, audio, num_frames, "rfas")
    frames, layouts = [], []
    for b, s in enumerate(clip_seeds):
        order = [base[j] for j in rfas_permutation(num_frames, s)]
        f, layout = _sequence("rfas", video[b:b + 1], audio[b:b + 1], order)
        frames.append(f)
        layouts.append(layout)
    return torch.cat(frames), layouts


@FUSIONS.register("cfas")
def cfas(video: torch.Tensor, audio: torch.Tensor, num_frames: int, clip_seeds: Sequence[int] | None = None
         ) -> tuple[torch.Tensor, list[FusionLayout]]:
    """Combine Facial And Spectrogram: ``V_k`` on top of ``A_k`` (2S x S), resized to S x S.

    The 2:1 vertical resize averages row pairs (rounding half up), which is what area and bilinear
    (half-pixel centres) interpolation both do at exactly half size; so the top half of each fused frame comes
    from the video frame only and the bottom half from the audio image only.
    """
    size = video.shape[-1]
    if size % 2:
        raise ValueError(f"cfas needs an even image size, got {size}")
    vi, ai = evenly_spaced(video.shape[1], num_frames), evenly_spaced(audio.shape[1], num_frames)
    stacked = torch.cat([video[:, vi], audio[:, ai]], dim=-2).to(torch.int16)  # (B, F, 3, 2S, S)
    pairs = stacked.unflatten(-2, (size, 2)).sum(-2)  # (B, F, 3, S, S): row 2i + row 2i+1
    frames = torch.div(pairs + 1, 2, rounding_mode="floor").to(torch.uint8)
    h = size // 2
    layout = FusionLayout("cfas", size, tuple(
        (Piece("video", v, (0, h, 0, size), _full(size)), Piece("audio", a, (h, size, 0, size), _full(size)))
        for v, a in zip(vi, ai, strict=True)))
    return frames, [layout] * video.shape[0]


@FUSIONS.register("sfas")
def sfas(video: torch.Tensor, audio: torch.Tensor, num_frames: int, clip_seeds: Sequence[int] | None = None,
         mode: str = "mean") -> tuple[torch.Tensor, list[FusionLayout]]:
    """Sum of Facial And Spectrogram, without the official code's uint8 wrap-around.

    Args:
        mode: ``"mean"`` (default): ``round((V_k + A_k) / 2)``, keeping both modalities' full range;
            ``"clip"``: ``min(V_k + A_k, 255)``.
    """
    size = video.shape[-1]
    vi, ai = evenly_spaced(video.shape[1], num_frames), evenly_spaced(audio.shape[1], num_frames)
    total = video[:, vi].to(torch.int16) + audio[:, ai].to(torch.int16)
    if mode == "mean":
        frames, w = torch.div(total + 1, 2, rounding_mode="floor").to(torch.uint8), 0.5
    elif mode == "clip":
        frames, w = total.clamp(max=255).to(torch.uint8), 0.5
    else:
        raise ValueError(f"sfas mode must be 'mean' or 'clip', got {mode!r}")
    layout = FusionLayout("sfas", size, tuple((_whole("video", v, size, w), _whole("audio", a, size, w))
                                              for v, a in zip(vi, ai, strict=True)))
    return frames, [layout] * video.shape[0]


def clip_seed(seed: int, clip_id: int | str) -> int:
    """A per-clip seed from a run seed and a clip id (an index, or a path hashed with CRC-32)."""
    key = zlib.crc32(clip_id.encode("utf-8")) if isinstance(clip_id, str) else int(clip_id)
    return (int(seed) * 1_000_003 + int(key)) % (2**63 - 1)


def _check(video: torch.Tensor, audio: torch.Tensor) -> None:
    for name, t in (("video", video), ("audio", audio)):
        if not isinstance(t, torch.Tensor) or t.dim() != 5 or t.shape[2] != 3 or t.shape[-1] != t.shape[-2]:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a (B, T, 3, S, S) tensor, got {shape}")
        if t.dtype != torch.uint8:
            raise ValueError(f"{name} must be uint8 pixels, got {t.dtype}")
    if video.shape[0] != audio.shape[0] or video.shape[-1] != audio.shape[-1]:
        raise ValueError(f"video {tuple(video.shape)} and audio {tuple(audio.shape)} disagree on batch size or "
                         "image size")


def fuse_batch(strategy: str, video: torch.Tensor, audio: torch.Tensor, *, num_frames: int = 16,
               seed: int = 0, clip_ids: Sequence[int | str] | None = None, **options: Any
               ) -> tuple[torch.Tensor, list[FusionLayout]]:
    """Fuses a batch of clips.

    Args:
        strategy: a name in :data:`FUSIONS` (case-insensitive).
        video: uint8 ``(B, T, 3, S, S)``; audio: uint8 ``(B, N, 3, S, S)``.
        num_frames: frames the model takes (16).
        seed, clip_ids: RFAS draws clip ``b``'s order from ``clip_seed(seed, clip_ids[b])`` (default ids:
            ``0..B-1``), so the same clip always gets the same order.
        options: strategy options (``mode`` for SFAS).

    Returns:
        uint8 frames ``(B, num_frames, 3, S, S)`` and one :class:`FusionLayout` per clip.
    """
    _check(video, audio)
    fn = FUSIONS.get(strategy)
    ids = list(range(video.shape[0])) if clip_ids is None else list(clip_ids)
    if len(ids) != video.shape[0]:
        raise ValueError(f"got {len(ids)} clip ids for {video.shape[0]} clips")
    return fn(video, audio, num_frames, [clip_seed(seed, i) for i in ids], **options)


def fuse(strategy: str, video: torch.Tensor, audio: torch.Tensor, *, num_frames: int = 16, seed: int = 0,
         clip_id: int | str = 0, **options: Any) -> tuple[torch.Tensor, FusionLayout]:
    """Fuses one clip: uint8 ``(T, 3, S, S)`` video and ``(N, 3, S, S)`` audio -> ``(num_frames, 3, S, S)``."""
    frames, layouts = fuse_batch(strategy, video.unsqueeze(0), audio.unsqueeze(0), num_frames=num_frames,
                                 seed=seed, clip_ids=[clip_id], **options)
    return frames[0], layouts[0]


def normalize(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` -> float32: ``/255``, minus the ImageNet mean, divided by 0.225."""
    if frames.shape[-3] != 3:
        raise ValueError(f"expected 3 channels in dim -3, got shape {tuple(frames.shape)}")
    mean = torch.tensor(MEAN, dtype=torch.float32, device=frames.device).view(3, 1, 1)
    return (frames.float() / 255.0 - mean) / STD


def denormalize(pixels: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`, as floats in [0, 1]."""
    mean = torch.tensor(MEAN, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    return pixels * STD + mean
