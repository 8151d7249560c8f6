"""F-Fidelity on the emotion model: the true explanation as tube scores, the ground-truth check and the modality
ablation on hand-built models with known answers, and the whole experiment on a tiny run."""

import json

import pytest
import torch
from _mm_cue_fakes import CueClips, write_run
from torch import nn

from ffidelity import VideoUnits
from ffidelity.benchmark.config import BenchmarkConfig
from ffidelity.benchmark.runner import run
from ffidelity.benchmark.tasks import Task
from multimae_der.explain.attributions import fuse_items
from multimae_der.explain.faithfulness import emotion_benchmark
from multimae_der.explain.faithfulness_task import ground_truth_check, ground_truth_scores, modality_check
from multimae_der.model.run import load_run


@pytest.fixture(scope="module")
def fslf_run(tmp_path_factory):
    return load_run(write_run(tmp_path_factory.mktemp("run") / "run", fusion="fslf"))


class CueModel(nn.Module):
    """Reads CueClips' cues from FSLF inputs: the visual group from the video frames (8-15), the audio group from
    the audio frames (0-7); class c = (c // 2, c % 2) gets the sum of both evidences."""

    def __init__(self, audio_only: bool = False):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.audio_only = audio_only

    def forward(self, x):
        v = x[:, 8:, :, 8:16, 8:16].mean((1, 2, 3, 4)) - x[:, 8:, :, 16:24, 16:24].mean((1, 2, 3, 4))
        a = x[:, :8, :, :8, :].mean((1, 2, 3, 4)) - x[:, :8, :, 24:, :].mean((1, 2, 3, 4))
        if self.audio_only:
            v = torch.zeros_like(v)
        sv, sa = torch.tensor([1.0, 1.0, -1.0, -1.0]), torch.tensor([1.0, -1.0, 1.0, -1.0])
        return self.scale * (v[:, None] * sv + a[:, None] * sa)


def test_true_explanation_as_tube_scores(fslf_run):
    items = [CueClips(4)[0], CueClips(4)[3]]
    fused = fuse_items(fslf_run, items)
    scores = ground_truth_scores(fused, items, VideoUnits(2, 16))
    assert scores.shape == (2, 8 * 2 * 2)
    grid = scores.reshape(2, 8, 2, 2)  # (clip, tube time, row, column)
    # each modality's cue shares sum to 1 per clip: the audio cue (8 equal tubes) weighs as much as the video
    # cue (4 equal tubes), although its tubes hold twice the cue pixels (2 x 8 x 16 against 2 x 8 x 8)
    assert torch.allclose(grid[:, :4].sum((1, 2, 3)), torch.ones(2)) and torch.allclose(grid[:, 4:].sum((1, 2, 3)),
                                                                                         torch.ones(2))
    # clip 0 = class 0: audio band in the top 8 rows (audio = tubes 0-3 under FSLF), video square at rows/cols 8:16
    assert torch.allclose(grid[0, :4, 0], torch.full((4, 2), 1 / 8)) and (grid[0, :4, 1] == 0).all()
    assert torch.allclose(grid[0, 4:, 0, 0], torch.full((4,), 1 / 4))
    assert int((grid[0, 4:] > 0).sum()) == 4
    # clip 3 = class 3: audio band at the bottom, video square at rows/cols 16:24
    assert (grid[1, :4, 1] > 0).all() and (grid[1, :4, 0] == 0).all()
    assert torch.allclose(grid[1, 4:, 1, 1], torch.full((4,), 1 / 4))
    assert ground_truth_scores(fused, [{k: v for k, v in it.items() if k != "gt_audio"} for it in items],
                               VideoUnits(2, 16)) is None


def test_true_explanation_beats_random_copies_on_a_cue_model(fslf_run, tmp_path):
    data = CueClips(8)
    items = [data[i] for i in range(8)]
    fused = fuse_items(fslf_run, items)
    units = VideoUnits(2, 16)
    model = CueModel()
    assert (model(fused.inputs).argmax(1) == fused.labels).all()
    task = Task(name="cue", x_train=fused.inputs, y_train=fused.labels, x_test=fused.inputs, y_test=fused.labels,
                num_classes=4, units=units, make_model=CueModel, fit={"epochs": 1, "lr": 0.0},
                finetune={"epochs": 1, "lr": 0.0, "batch_size": 8}, explainers=("random",))
    cfg = BenchmarkConfig(dataset="cue", methods=("fid", "ffid"), seeds=1, noises=(0.0, 0.5, 1.0),
                          sparsities=(0.1, 0.3, 0.5), n_samples=2, mode="prob", progress=False,
                          original_explanations=False, random_baseline=False)
    res = run(cfg, tmp_path, task=task)
    gt = ground_truth_scores(fused, items, units)
    check = ground_truth_check(res, task, gt, {"original": model, "finetuned": model})
    comps = {c["method"]: c for c in check["comparisons"]}
    for method in ("fid", "ffid"):
        # noises 0.5 and 1.0 are the degraded copies; noise 0 (the explainer itself) is not compared
        assert comps[method]["copies"] == 2 and comps[method]["both"] == 2, comps[method]
    assert check["wins"] == {"fid": 1.0, "ffid": 1.0}
    assert {r["method"] for r in check["areas"]} == {"fid", "ffid"}


def test_modality_ablation_finds_the_modality_the_model_uses(fslf_run):
    items = [CueClips(4)[i] for i in range(4)]
    fused = fuse_items(fslf_run, items)
    out = modality_check(fslf_run, items, fused, {"audio_only": CueModel(audio_only=True), "both": CueModel()}, [])
    a, b = out["ablation"]["audio_only"], out["ablation"]["both"]
    assert a["drop_without_video"] == pytest.approx(0.0, abs=1e-9) and a["drop_without_audio"] > 0.1
    assert b["drop_without_video"] > 0.05 and b["drop_without_audio"] > 0.05
    sfas = load_run(write_run(fslf_run.path.parent / "sfas", fusion="sfas"))
    out = modality_check(sfas, items, fuse_items(sfas, items), {"m": sfas.model}, ["saliency"])
    assert out["ablation"]["applicable"] is False and "mixes video and audio" in out["ablation"]["reason"]
    assert out["share"]["saliency"]["video"] == pytest.approx(0.5)  # SFAS: 50/50 by construction


@pytest.mark.slow
def test_emotion_benchmark_on_a_tiny_run(fslf_run, tmp_path):
    data = CueClips(16)
    res = emotion_benchmark(fslf_run, data, tmp_path / "out", quick=True, n_test=4, n_train=8, n_samples=2,
                            explainers=("saliency", "vit_gradcam"))
    out = tmp_path / "out"
    for name in ("report.html", "table.csv", "results.json", "emotion.html", "emotion.json"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "emotion.json").read_text())
    assert saved["task"]["test_indices"] == [12, 13, 14, 15]  # no folds: the last quarter, classes in turn
    assert set(res.summary()) == {"saliency", "vit_gradcam"}
    assert {c["explainer"] for c in res.ground_truth["comparisons"]} == {"saliency", "vit_gradcam"}
    assert res.modality["ablation"]["applicable"] and set(res.modality["share"]) == {"saliency", "vit_gradcam"}
    assert "finetuned_masked_acc" in res.models
    # a rerun is served from the cache with the same numbers; another model cannot reuse the folder
    again = emotion_benchmark(fslf_run, data, out, quick=True, n_test=4, n_train=8, n_samples=2,
                              explainers=("saliency", "vit_gradcam"))
    assert again.curves["auc_plus"].tolist() == res.curves["auc_plus"].tolist()
    other = write_run(tmp_path / "other", fusion="fslf", seed=1)
    with pytest.raises(ValueError, match="another model"):
        emotion_benchmark(other, data, out, quick=True, n_test=4, n_train=8)


def test_emotion_units_of_every_kind(fslf_run):
    from ffidelity import GroupUnits, TokenDrop, TokenFill
    from multimae_der.explain.faithfulness_task import emotion_units, modality_groups

    items = [CueClips(4)[i] for i in range(2)]
    fused = fuse_items(fslf_run, items)
    tok = emotion_units(fslf_run, "fill", "token")
    assert isinstance(tok, TokenFill) and isinstance(tok.units, VideoUnits) and tok.num_units(fused.inputs) == 32
    frame = emotion_units(fslf_run, "fill", "frame")
    assert frame.num_units(fused.inputs) == 8  # 16 fused frames / tubelet 2
    mod = emotion_units(fslf_run, "fill", "modality", (fused,))
    assert isinstance(mod, GroupUnits) and mod.num_units(fused.inputs) == 2
    drop = emotion_units(fslf_run, "drop", "frame")
    assert isinstance(drop, TokenDrop) and drop.tokens is not None and drop.num_units(fused.inputs) == 8
    assert emotion_units(fslf_run, "drop", "token").tokens is None
    with pytest.raises(ValueError, match="removal must be one of"):
        emotion_units(fslf_run, "blur", "token")
    with pytest.raises(ValueError, match="unit must be one of"):
        emotion_units(fslf_run, "fill", "pixel")
    # FSLF: fused frames 0-7 are audio, 8-15 video; tokens follow the frames (8 tubes in time x 2 x 2)
    groups = modality_groups(fused, tok)
    assert groups.tolist() == [[1] * 16 + [0] * 16] * 2
    assert modality_groups(fused, frame).tolist() == [[1] * 4 + [0] * 4] * 2
    assert modality_groups(fused, mod) is None  # a unit per modality: nothing to permute within


def test_morf_signal_is_the_paired_gap_in_standard_errors():
    import numpy as np
    import pandas as pd

    from multimae_der.explain.faithfulness_task import morf_signal

    rows = [{"seed": 0, "method": "ffid", "explainer": "good", "noise": 0.0, "auc_plus": 2.5,
             "auc_plus_per_input": [1.0, 2.0, 3.0, 4.0]},
            {"seed": 0, "method": "ffid", "explainer": "weak", "noise": 0.0, "auc_plus": 0.5,
             "auc_plus_per_input": [0.5, 0.5, 0.5, 0.5]},
            {"seed": 0, "method": "ffid", "explainer": "good", "noise": 1.0, "auc_plus": 9.0,
             "auc_plus_per_input": [9.0, 9.0, 9.0, 9.0]},  # a degraded copy: not an explainer of its own
            {"seed": 0, "method": "ffid", "explainer": "random", "noise": 0.0, "auc_plus": 0.0,
             "auc_plus_per_input": [0.0, 0.0, 0.0, 0.0]}]
    res = type("R", (), {"curves": pd.DataFrame(rows)})()
    sig = morf_signal(res)["ffid"]
    se = np.std([1, 2, 3, 4], ddof=1) / 2
    assert sig["best"] == "good" and sig["pairs"] == 4
    assert sig["difference"] == pytest.approx(2.5) and sig["signal_se"] == pytest.approx(2.5 / se)
