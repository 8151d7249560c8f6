"""SynthAV's ``cue_share``: the class shows in one span of the clip; elsewhere face and voice are at rest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from multimae_der.data.synthav import synthesize
from multimae_der.data.synthav_render import ClipSpec, cue_span, make_actor, render_clip


def _spec(visual: int, audio: int, share: float, seed: int = 5) -> ClipSpec:
    return ClipSpec(make_actor(0, 1), visual, audio, 1.0, seed, duration=1.0, fps=20, size=48, cue_share=share)


def test_full_share_is_the_old_clip_bit_for_bit():
    a = render_clip(_spec(2, 3, 1.0))
    b = render_clip(ClipSpec(make_actor(0, 1), 2, 3, 1.0, 5, duration=1.0, fps=20, size=48))
    for field in ("frames", "audio", "video_mask", "audio_mask"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_ground_truth_and_cue_stay_inside_one_span():
    spec = _spec(2, 1, 0.25)
    start, end = cue_span(spec)
    assert end - start == pytest.approx(0.25) and start >= 0.0 and end <= 1.0
    clip = render_clip(spec)
    t = np.arange(len(clip.frames)) / spec.fps
    inside = (t >= start) & (t < end)
    assert clip.video_mask[inside].any(axis=(1, 2)).all() and not clip.video_mask[~inside].any()
    rows = np.arange(clip.audio_mask.shape[0]) * clip.audio_hop
    assert not clip.audio_mask[(rows < start) | (rows >= end)].any() and clip.audio_mask.any()
    # outside the span the face is the rest face: the same frames as a rest-group clip with the same nuisances
    rest = render_clip(_spec(0, 0, 0.25))
    assert np.array_equal(clip.frames[~inside], rest.frames[~inside])
    assert not np.array_equal(clip.frames[inside], rest.frames[inside])


def test_synthesize_records_and_checks_the_share(tmp_path):
    synthesize(tmp_path / "s", "ravdess", actors=1, clips_per_actor=1, duration=0.5, size=32, cue_share=0.5)
    assert json.loads((tmp_path / "s" / "synthav.json").read_text())["cue_share"] == 0.5
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="cue_share must lie in"):
            synthesize(tmp_path / "t", "ravdess", actors=1, clips_per_actor=1, cue_share=bad)
