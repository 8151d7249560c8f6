"""Fusion strategies, frame by frame, with exact pixel checks; layouts map every fused pixel to its source."""

import pytest
import torch

from multimae_der.model.collate import FusionCollate
from multimae_der.model.fusion import (
    FUSIONS,
    MEAN,
    STD,
    denormalize,
    evenly_spaced,
    fuse,
    fuse_batch,
    normalize,
    rfas_permutation,
)

S = 8
T = 16


def tagged_clip(t: int = T, n: int = T, size: int = S) -> tuple[torch.Tensor, torch.Tensor]:
    """Video frame k is filled with value k + 1 and audio frame k with 100 + k, so every pixel tells its source."""
    video = (torch.arange(t, dtype=torch.uint8) + 1).view(t, 1, 1, 1).expand(t, 3, size, size).clone()
    audio = (torch.arange(n, dtype=torch.uint8) + 100).view(n, 1, 1, 1).expand(n, 3, size, size).clone()
    return video, audio


def source_value(modality: str, index: int) -> int:
    return index + 1 if modality == "video" else index + 100


EXPECTED_ORDER = {  # with 16 source frames per modality: (modality, source index) per fused frame
    "ffls": [("video", 2 * i + 1) for i in range(8)] + [("audio", 2 * i + 1) for i in range(8)],
    "fslf": [("audio", 2 * i + 1) for i in range(8)] + [("video", 2 * i + 1) for i in range(8)],
    "ofos": [p for i in range(8) for p in (("video", 2 * i + 1), ("audio", 2 * i + 1))],
    "video": [("video", i) for i in range(16)],
    "audio": [("audio", i) for i in range(16)],
}


def test_registry_has_all_strategies():
    assert FUSIONS.names() == sorted(["cfas", "sfas", "ffls", "fslf", "ofos", "rfas", "video", "audio"])


def test_evenly_spaced():
    assert evenly_spaced(16, 8) == [1, 3, 5, 7, 9, 11, 13, 15]
    assert evenly_spaced(16, 16) == list(range(16))
    assert evenly_spaced(8, 16) == [i // 2 for i in range(16)]  # fewer sources: each used twice
    assert evenly_spaced(30, 4) == [3, 11, 18, 26]


@pytest.mark.parametrize("name", sorted(EXPECTED_ORDER))
def test_sequence_strategies_frame_by_frame(name):
    video, audio = tagged_clip()
    frames, layout = fuse(name, video, audio, num_frames=16)
    assert frames.shape == (16, 3, S, S) and frames.dtype == torch.uint8
    for f, (modality, index) in enumerate(EXPECTED_ORDER[name]):
        assert torch.equal(frames[f], torch.full((3, S, S), source_value(modality, index), dtype=torch.uint8)), f
        (piece,) = layout.frames[f]
        assert (piece.modality, piece.index, piece.out_box, piece.src_box) == (modality, index, (0, S, 0, S),
                                                                               (0, S, 0, S))


def test_fslf_tubelets_are_pure():
    """With tubelet 2, FSLF's first 4 tubelets are pure audio and the last 4 pure video."""
    video, audio = tagged_clip()
    frames, layout = fuse("fslf", video, audio)
    mods = [layout.frames[f][0].modality for f in range(16)]
    assert mods == ["audio"] * 8 + ["video"] * 8
    assert (frames[:8] >= 100).all() and (frames[8:] < 100).all()


def test_cfas_top_video_bottom_audio_resized():
    video = torch.randint(0, 256, (T, 3, S, S), dtype=torch.uint8)
    audio = torch.randint(0, 256, (T, 3, S, S), dtype=torch.uint8)
    frames, layout = fuse("cfas", video, audio)
    assert frames.shape == (16, 3, S, S)
    for k in range(16):
        v, a = video[k].int(), audio[k].int()
        # row i of the top half averages video rows 2i and 2i+1 (rounding half up), bottom half the audio's
        top = (v[:, 0::2] + v[:, 1::2] + 1) // 2
        bottom = (a[:, 0::2] + a[:, 1::2] + 1) // 2
        assert torch.equal(frames[k, :, : S // 2].int(), top)
        assert torch.equal(frames[k, :, S // 2:].int(), bottom)
        vp, ap = layout.frames[k]
        assert (vp.modality, vp.index, vp.out_box, vp.src_box) == ("video", k, (0, S // 2, 0, S), (0, S, 0, S))
        assert (ap.modality, ap.index, ap.out_box, ap.src_box) == ("audio", k, (S // 2, S, 0, S), (0, S, 0, S))


def test_cfas_rejects_odd_size():
    video, audio = tagged_clip(size=7)
    with pytest.raises(ValueError, match="even image size"):
        fuse("cfas", video, audio)


def test_sfas_no_wraparound():
    video = torch.full((T, 3, S, S), 200, dtype=torch.uint8)
    audio = torch.full((T, 3, S, S), 100, dtype=torch.uint8)
    mean, _ = fuse("sfas", video, audio)
    clipped, layout = fuse("sfas", video, audio, mode="clip")
    assert (mean == 150).all()
    assert (clipped == 255).all()  # the official code's uint8 sum would give (200 + 100) % 256 = 44
    odd, _ = fuse("sfas", torch.full_like(video, 3), torch.full_like(audio, 0))
    assert (odd == 2).all()  # round half up
    assert {p.modality for p in layout.frames[0]} == {"video", "audio"}
    with pytest.raises(ValueError, match="mode"):
        fuse("sfas", video, audio, mode="wrap")


def test_sfas_frame_by_frame():
    video, audio = tagged_clip()
    frames, _ = fuse("sfas", video, audio)
    for k in range(16):
        assert (frames[k] == (k + 1 + 100 + k + 1) // 2).all()


def test_rfas_is_a_seeded_per_clip_permutation_of_ofos():
    video, audio = tagged_clip()
    ofos, _ = fuse("ofos", video, audio)
    a, la = fuse("rfas", video, audio, seed=3, clip_id=7)
    b, _ = fuse("rfas", video, audio, seed=3, clip_id=7)
    c, _ = fuse("rfas", video, audio, seed=3, clip_id=8)
    d, _ = fuse("rfas", video, audio, seed=4, clip_id=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)
    perm = rfas_permutation(16, __import__("multimae_der.model.fusion", fromlist=["clip_seed"]).clip_seed(3, 7))
    assert sorted(perm) == list(range(16)) and perm != list(range(16))
    for f, j in enumerate(perm):
        assert torch.equal(a[f], ofos[j])
        assert la.frames[f][0].modality == ("video" if j % 2 == 0 else "audio")


def test_rfas_batched_matches_single_clips():
    v1, a1 = tagged_clip()
    v2, a2 = v1.flip(0).contiguous(), a1.flip(0).contiguous()
    frames, layouts = fuse_batch("rfas", torch.stack([v1, v2]), torch.stack([a1, a2]), seed=1, clip_ids=[5, "x.mp4"])
    assert torch.equal(frames[0], fuse("rfas", v1, a1, seed=1, clip_id=5)[0])
    assert torch.equal(frames[1], fuse("rfas", v2, a2, seed=1, clip_id="x.mp4")[0])
    assert layouts[0] != layouts[1]


@pytest.mark.parametrize("name", FUSIONS.names())
def test_batched_equals_per_clip(name):
    gen = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (3, T, 3, S, S), dtype=torch.uint8, generator=gen)
    audio = torch.randint(0, 256, (3, T, 3, S, S), dtype=torch.uint8, generator=gen)
    frames, layouts = fuse_batch(name, video, audio, seed=2)
    assert frames.shape == (3, 16, 3, S, S) and len(layouts) == 3
    for b in range(3):
        single, layout = fuse(name, video[b], audio[b], seed=2, clip_id=b)
        assert torch.equal(frames[b], single)
        assert layouts[b] == layout


@pytest.mark.parametrize("name", FUSIONS.names())
def test_layout_reconstructs_every_pixel(name):
    """Rebuilding each fused frame from its layout's pieces gives the fused pixels exactly (sequence strategies)
    or within rounding (averages), and the modality masks sum to 1 everywhere."""
    gen = torch.Generator().manual_seed(1)
    video = torch.randint(0, 256, (T, 3, S, S), dtype=torch.uint8, generator=gen)
    audio = torch.randint(0, 256, (T, 3, S, S), dtype=torch.uint8, generator=gen)
    frames, layout = fuse(name, video, audio, seed=0)
    src = {"video": video.float(), "audio": audio.float()}
    rebuilt = torch.zeros(16, 3, S, S)
    for f, pieces in enumerate(layout.frames):
        for p in pieces:
            t, b, left, r = p.out_box
            st, sb, sl, sr = p.src_box
            region = src[p.modality][p.index][:, st:sb, sl:sr]
            region = torch.nn.functional.avg_pool2d(region[None], ((sb - st) // (b - t), (sr - sl) // (r - left)))[0]
            rebuilt[f, :, t:b, left:r] += p.weight * region
    assert (rebuilt - frames.float()).abs().max() <= 0.5
    total = layout.modality_mask("video") + layout.modality_mask("audio")
    assert torch.allclose(total, torch.ones(16, S, S))


@pytest.mark.parametrize("name", FUSIONS.names())
def test_backproject_conserves_and_locates(name):
    video, audio = tagged_clip()
    _, layout = fuse(name, video, audio, seed=0)
    attr = torch.rand(16, 3, S, S)
    back = layout.backproject(attr, {"video": T, "audio": T})
    assert torch.allclose(back["video"].sum() + back["audio"].sum(), attr.sum(), atol=1e-4)
    if name == "fslf":  # fused frame 0 is audio frame 1, fused frame 8 is video frame 1
        assert torch.allclose(back["audio"][1], attr[0])
        assert torch.allclose(back["video"][1], attr[8])
        assert back["video"][0].abs().sum() == 0
    if name == "cfas":  # top half of fused frame 3 spreads over all rows of video frame 3
        assert torch.allclose(back["video"][3][:, 0], attr[3, :, 0] / 2)
        assert torch.allclose(back["video"][3][:, 1], attr[3, :, 0] / 2)


def test_normalize_known_values():
    frames = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 2, 2)
    x = normalize(frames)
    for c in range(3):
        assert torch.allclose(x[0, c], torch.full((2, 2), (0 - MEAN[c]) / STD))
        assert torch.allclose(x[1, c], torch.full((2, 2), (1 - MEAN[c]) / STD))
    assert torch.allclose(denormalize(x), frames.float() / 255, atol=1e-6)


def test_bad_inputs_give_clear_errors():
    video, audio = tagged_clip()
    with pytest.raises(ValueError, match="uint8"):
        fuse("fslf", video.float(), audio)
    with pytest.raises(ValueError, match="disagree"):
        fuse("fslf", video, tagged_clip(size=4)[1])
    with pytest.raises(KeyError, match="known"):
        fuse("nope", video, audio)
    with pytest.raises(ValueError, match="even number"):
        fuse("ofos", video, audio, num_frames=15)


def test_collate_fuses_and_checks_size():
    video, audio = tagged_clip()
    items = [{"video": video, "audio": audio, "label": i, "actor": "a", "path": f"c{i}.mp4"} for i in range(3)]
    batch = FusionCollate("fslf", image_size=S)(items)
    assert batch["frames"].shape == (3, 16, 3, S, S) and batch["labels"].tolist() == [0, 1, 2]
    assert torch.equal(batch["frames"][0], fuse("fslf", video, audio)[0])
    with pytest.raises(ValueError, match="expects 16x16"):
        FusionCollate("fslf", image_size=16)(items)
    items[1] = {**items[1], "video": video[:8]}
    with pytest.raises(ValueError, match=r"c1\.mp4"):
        FusionCollate("fslf")(items)
