"""Explanations of the emotion model: source <-> fused mapping for every fusion strategy, modality units, the
ViT Grad-CAM and tube occlusion, and the per-clip pictures / JSON / HTML."""

import json

import pytest
import torch
from _mm_cue_fakes import CueClips, write_run

from ffidelity import VideoUnits
from multimae_der.explain.attributions import (
    EmotionLogits,
    attribute,
    explain_clips,
    fuse_items,
    resolve_explainer,
    summarize,
    vit_gradcam,
)
from multimae_der.explain.provenance import (
    modality_labels,
    modality_share,
    modality_units,
    project_to_fused,
    region_mass,
    source_maps,
)
from multimae_der.model.fusion import FUSIONS, fuse
from multimae_der.model.run import load_run

STRATEGIES = ("cfas", "sfas", "ffls", "fslf", "ofos", "rfas", "video", "audio")


def _clip(t=6, n=5, s=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (t, 3, s, s), generator=g, dtype=torch.uint8),
            torch.randint(0, 256, (n, 3, s, s), generator=g, dtype=torch.uint8))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_projecting_the_sources_gives_the_fused_frames(strategy):
    video, audio = _clip()
    frames, layout = fuse(strategy, video, audio, num_frames=8, clip_id=3)
    proj = project_to_fused(layout, {"video": video.float(), "audio": audio.float()})
    assert proj.shape == frames.shape
    assert (proj - frames.float()).abs().max() <= 0.5 + 1e-4  # only the fusion's uint8 rounding differs


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_attribution_goes_back_to_the_right_source(strategy):
    video, audio = _clip()
    _, layout = fuse(strategy, video, audio, num_frames=8, clip_id=3)
    num = {"video": 6, "audio": 5}
    attr = torch.randn(8, 3, 16, 16)
    maps = source_maps(layout, attr, num)
    assert sum(float(v.sum()) for v in maps.values()) == pytest.approx(float(attr.abs().sum()), rel=1e-5)
    # a single hot fused pixel lands on the source frame and pixel(s) the layout says
    f = 5
    piece = layout.frames[f][-1]
    t, _b, left, _r = piece.out_box
    hot = torch.zeros(8, 16, 16)
    hot[f, t, left] = 1.0
    maps = source_maps(layout, hot, num)
    got = maps[piece.modality][piece.index]
    st, _sb, sl, _sr = piece.src_box
    assert float(got.sum()) == pytest.approx(piece.weight)
    assert float(got[st, sl]) > 0 and float(maps[piece.modality].sum()) == pytest.approx(piece.weight)
    share = modality_share(maps)
    assert share[piece.modality] == pytest.approx(1.0 if piece.weight == 1 else 0.5)


def test_fslf_and_cfas_shares_follow_their_geometry():
    video, audio = _clip(t=8, n=8)
    num = {"video": 8, "audio": 8}
    _, fslf = fuse("fslf", video, audio, num_frames=8)
    attr = torch.zeros(8, 3, 16, 16)
    attr[:4] = 1.0  # FSLF: the first half of the frames is audio
    assert modality_share(source_maps(fslf, attr, num)) == {"video": 0.0, "audio": 1.0}
    _, cfas = fuse("cfas", video, audio, num_frames=8)
    attr = torch.zeros(8, 3, 16, 16)
    attr[:, :, :8] = 1.0  # CFAS: the top half of every frame is the video frame
    maps = source_maps(cfas, attr, num)
    assert modality_share(maps) == {"video": 1.0, "audio": 0.0}
    assert torch.allclose(maps["video"][0], torch.full((16, 16), 3.0 / 2))  # spread over the 2 rows it averaged


def test_region_mass_and_modality_labels():
    m = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 8, 8)
    r = region_mass(m, (2, 4))
    assert r.shape == (2, 2, 4) and torch.equal(r[1, 0, 0], m[1, :4, :2].sum())
    assert float(r.sum()) == float(m.sum())
    video, audio = _clip(t=8, n=8)
    _, fslf = fuse("fslf", video, audio, num_frames=8)
    lab = modality_labels(fslf)
    assert (lab[:4] == 1).all() and (lab[4:] == 0).all()
    _, sfas = fuse("sfas", video, audio, num_frames=8)
    with pytest.raises(ValueError, match="mixes video and audio"):
        modality_labels(sfas)
    # RFAS: per-clip orders -> per-input label maps, found again from the fused inputs
    v2, a2 = torch.stack([video, video]), torch.stack([audio, audio])
    frames, layouts = FUSIONS.get("rfas")(v2, a2, 8, [1, 2])
    x = frames.float()
    units = modality_units(layouts, x)
    assert units.labels(x[[1]])[0].tolist() == modality_labels(layouts[1]).tolist()
    with pytest.raises(ValueError, match="need their fused inputs"):
        modality_units(layouts)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return load_run(write_run(tmp_path_factory.mktemp("run") / "run", fusion="ofos"))


def test_vit_gradcam_is_the_token_cam_and_sums_back_per_tube(tiny_run):
    data = CueClips(2)
    x = fuse_items(tiny_run, [data[0], data[1]]).inputs
    model = EmotionLogits(tiny_run.model).eval()
    target = torch.tensor([1, 2])
    cam = vit_gradcam(model, x, target)
    assert cam.shape == x.shape and (cam >= 0).all()
    # by hand: tokens of the last block, gradient-weighted
    acts = []
    h = tiny_run.model.videomae.encoder.layer[-1].register_forward_hook(
        lambda m, i, o: acts.append(o[0] if isinstance(o, tuple) else o))
    logits = model(x)
    h.remove()
    g = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), acts[0])[0]
    expected = torch.relu((g.mean(1, keepdim=True) * acts[0]).sum(-1)).detach()
    units = VideoUnits(tubelet=2, patch=16)
    assert torch.allclose(units.scores(cam, x), expected, atol=1e-5, rtol=1e-4)
    from multimae_der.model.videomae import freeze_backbone

    freeze_backbone(tiny_run.model)  # a linear-probe run: no parameter gradient reaches the encoder
    try:
        assert torch.allclose(vit_gradcam(model, x, target), cam, atol=1e-6)
    finally:
        freeze_backbone(tiny_run.model, False)
    assert resolve_explainer("gradcam") == "vit_gradcam" and resolve_explainer("IG") == "integrated_gradients"
    with pytest.raises(ValueError, match="unknown explainer"):
        resolve_explainer("lime")
    with pytest.raises(ValueError, match="VideoMAE"):
        vit_gradcam(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 3 * 32 * 32, 4)), x, target)


def test_occlusion_uses_tube_windows(tiny_run):
    data = CueClips(1)
    x = fuse_items(tiny_run, [data[0]]).inputs
    attr = attribute(tiny_run.model, x, "occlusion", torch.tensor([0]))
    tubes = attr.reshape(1, 8, 2, 3, 2, 16, 2, 16)  # (B, t, 2, C, h, 16, w, 16)
    assert torch.allclose(tubes, tubes[:, :, :1, :1, :, :1, :, :1].expand_as(tubes), atol=1e-6)
    assert attr.abs().sum() > 0


def test_summarize_reports_shares_timeline_regions_and_cue_overlap(tiny_run):
    data = CueClips(1)
    it = data[0]
    fused = fuse_items(tiny_run, [it])
    attr = torch.zeros_like(fused.inputs[0])
    attr[0] = 1.0  # OFOS frame 0 = video frame 0 (of 16; 8 used)
    e = summarize(fused.layouts[0], attr, fused.num_sources[0], explainer="x", target=0, predicted=0,
                  probability=0.5, gt={"video": it["gt_video"], "audio": it["gt_audio"]})
    assert e.share == {"video": 1.0, "audio": 0.0}
    assert e.timeline["video"].argmax().item() == fused.layouts[0].sources("video")[0]
    assert e.used["video"] == sorted(set(fused.layouts[0].sources("video")) - {-1}) and len(e.used["audio"]) == 8
    cue_fraction = float(it["gt_video"][e.used["video"][0]].float().mean())
    assert e.gt_overlap["video"] == pytest.approx(cue_fraction, rel=1e-5)
    assert e.gt_area["video"] == pytest.approx(float(it["gt_video"][e.used["video"]].float().mean()))
    assert e.gt_area["video"] == pytest.approx(1 / 16)  # an 8x8 square in every 32x32 frame
    assert e.regions["video"].shape == (16, 4, 4)


def test_explain_clips_writes_pictures_json_and_html(tiny_run, tmp_path):
    data = CueClips(4)
    summary = explain_clips(tiny_run, data, [0, 3], tmp_path, ["ig", "saliency", "gradcam", "random"],
                            options={"ig": {"n_steps": 4}})
    assert [c["index"] for c in summary["clips"]] == [0, 3]
    saved = json.loads((tmp_path / "explanations.json").read_text())
    assert saved["explainers"] == ["integrated_gradients", "saliency", "vit_gradcam", "random"]
    for clip in saved["clips"]:
        for name, e in clip["explanations"].items():
            assert sum(e["share"].values()) == pytest.approx(1.0)
            for kind in ("strip", "timeline", "gif"):
                assert (tmp_path / e["files"][kind]).stat().st_size > 0, (name, kind)
    html = (tmp_path / "index.html").read_text()
    assert "vit_gradcam_strip.png" in html and "Mean modality share" in html
    from PIL import Image

    gif = Image.open(tmp_path / saved["clips"][0]["explanations"]["saliency"]["files"]["gif"])
    assert gif.n_frames == 8  # OFOS uses 8 video frames and 8 audio windows: one step per pair
    with pytest.raises(ValueError, match="out of range"):
        explain_clips(tiny_run, data, [7], tmp_path, ["saliency"])
