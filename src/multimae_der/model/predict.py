"""Emotion predictions for one clip or a few: from a video file, or from an already-preprocessed item."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from multimae_der.model.fusion import normalize
from multimae_der.model.run import Run, load_run


@dataclass(frozen=True)
class Prediction:
    """The predicted emotion, its index and the class probabilities (softmax of the logits)."""

    emotion: str
    label: int
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"emotion": self.emotion, "label": self.label, "probabilities": self.probabilities}


def _as_run(run: Run | str | Path) -> Run:
    return run if isinstance(run, Run) else load_run(run)


@torch.inference_mode()
def predict_clips(run: Run | str | Path, clips: Sequence[dict[str, Any]]) -> list[Prediction]:
    """Predictions for preprocessed items (dicts with uint8 ``video`` (T,3,S,S) and ``audio`` (N,3,S,S)),
    fused with the run's strategy and scored in one batch."""
    run = _as_run(run)
    if not clips:
        return []
    for c in clips:
        missing = {"video", "audio"} - set(c)
        if missing:
            raise ValueError(f"clip {c.get('path', '?')} lacks {', '.join(sorted(missing))}")
    batch = run.collate()(list(clips))
    device = next(run.model.parameters()).device
    probs = run.model.eval()(pixel_values=normalize(batch["frames"].to(device))).logits.float().softmax(-1).cpu()
    names = run.class_names
    return [Prediction(names[int(p.argmax())], int(p.argmax()), {n: float(v) for n, v in zip(names, p, strict=True)})
            for p in probs]


def predict_clip(run: Run | str | Path, clip: dict[str, Any]) -> Prediction:
    """The prediction for one preprocessed item."""
    return predict_clips(run, [clip])[0]


def predict_file(run: Run | str | Path, path: str | Path) -> Prediction:
    """Preprocesses a video file exactly as the run's training data was (the run's recorded
    :class:`~multimae_der.data.prepare.PrepareConfig`), fuses it and predicts its emotion.

    Raises:
        FileNotFoundError: no such file; MediaError (a ValueError): undecodable, or no audio track.
    """
    from multimae_der.data.prepare import preprocess_clip  # the data side; imported only when needed

    run = _as_run(run)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    data = preprocess_clip(path, run.preprocessing, gt_path=False)
    clip = {key: torch.as_tensor(data[key]) for key in ("video", "audio")}  # the contract's uint8 tensors
    clip["path"] = str(path)
    return predict_clip(run, clip)
