"""In-memory clips with SynthAV-style ground truth: the class is a (visual cue, audio cue) pair, and the cue
pixels are saved as ``gt_video`` / ``gt_audio``; plus a tiny run folder written without training."""

from pathlib import Path

import torch
from torch.utils.data import Dataset


class CueClips(Dataset):
    """Clip ``i`` has class ``i % 4`` = (visual group ``c // 2``, audio group ``c % 2``).

    The visual cue is a bright square in the top-left (group 0) or bottom-right (group 1) quarter of every video
    frame; the audio cue a bright band over the top (group 0) or bottom (group 1) quarter of rows of every audio
    picture. Background: dim uniform noise.
    """

    class_names = ("c0", "c1", "c2", "c3")

    def __init__(self, n: int = 16, size: int = 32, frames: int = 16, seed: int = 0) -> None:
        self.n, self.size, self.frames, self.seed = n, size, frames, seed
        self.labels = [i % 4 for i in range(n)]
        self.actors = [f"{i % 4:02d}" for i in range(n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n:
            raise IndexError(i)
        g = torch.Generator().manual_seed(self.seed * 1000 + i)
        s, q = self.size, self.size // 4
        c = self.labels[i]
        video = torch.randint(0, 60, (self.frames, 3, s, s), generator=g, dtype=torch.uint8)
        audio = torch.randint(0, 60, (self.frames, 3, s, s), generator=g, dtype=torch.uint8)
        gt_v = torch.zeros(self.frames, s, s, dtype=torch.bool)
        gt_a = torch.zeros(self.frames, s, s, dtype=torch.bool)
        if c // 2 == 0:
            gt_v[:, q:2 * q, q:2 * q] = True
        else:
            gt_v[:, 2 * q:3 * q, 2 * q:3 * q] = True
        if c % 2 == 0:
            gt_a[:, :q, :] = True
        else:
            gt_a[:, -q:, :] = True
        video[gt_v[:, None].expand_as(video)] = 230
        audio[gt_a[:, None].expand_as(audio)] = 230
        return {"video": video, "audio": audio, "label": c, "actor": self.actors[i], "path": f"/fake/cue_{i:03d}.mp4",
                "emotion": self.class_names[c], "gt_video": gt_v, "gt_audio": gt_a}


def write_run(path: Path, *, fusion: str = "fslf", size: int = 32, layers: int = 1, seed: int = 0) -> Path:
    """A run folder holding a randomly initialised tiny classifier (no training)."""
    from multimae_der.model.run import save_weights, write_run_config
    from multimae_der.model.videomae import build_classifier, make_config

    torch.manual_seed(seed)
    names = list(CueClips.class_names)
    cfg = make_config("tiny", image_size=size, num_hidden_layers=layers, class_names=names)
    path.mkdir(parents=True, exist_ok=True)
    write_run_config(path, {"kind": "classifier", "class_names": names, "model": cfg.to_dict(),
                            "fusion": {"strategy": fusion, "num_frames": 16, "seed": 0, "options": {}},
                            "preprocessing": {"image_size": size}, "training": {}})
    save_weights(build_classifier(cfg), path / "model.safetensors")
    return path
