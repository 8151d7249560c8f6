"""Runs record the clips they trained on; explanations and faithfulness refuse to score those by default."""

from __future__ import annotations

import pytest
from torch.utils.data import Subset

from multimae_der.data.heldout import check_held_out, clip_ids, held_out_indices, training_clip_ids


class Indexed:
    """A data set with an index of entries (like ``ClipDataset``), without any media."""

    def __init__(self, n: int) -> None:
        self.entries = [{"clip_id": f"clip{i:02d}", "path": f"/d/Actor_0{i % 3}/c{i}.mp4"} for i in range(n)]
        self.actors = [f"0{i % 3}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.entries)


def test_training_ids_through_nested_subsets():
    data = Indexed(10)
    sub = Subset(Subset(data, [1, 3, 5, 7]), [0, 2])
    assert training_clip_ids(sub) == ["clip01", "clip05"]
    assert clip_ids(data, [9]) == ["clip09"]
    assert clip_ids([1, 2, 3]) is None  # no index: nothing to record


def test_held_out_by_recorded_clips_then_by_actors():
    data = Indexed(6)
    by_clips = {"data": {"train_clips": ["clip00", "clip01", "clip02", "clip03"]}}
    assert held_out_indices(by_clips, data) == [4, 5]
    by_actors = {"data": {"held_out_actors": ["02"]}}
    assert held_out_indices(by_actors, data) == [2, 5]
    assert held_out_indices({"data": {"fold": 1}}, data) is None


def test_check_refuses_training_clips_and_names_them():
    data = Indexed(6)
    cfg = {"data": {"train_clips": ["clip00", "clip01", "clip02", "clip03"]}}
    check_held_out(cfg, data, [4, 5])  # held-out: fine
    with pytest.raises(ValueError, match=r"2 of the 3 clips .*clip00, clip03.*--allow-train-clips"):
        check_held_out(cfg, data, [0, 3, 5])
    check_held_out(cfg, data, [0, 3, 5], allow=True)
    with pytest.raises(ValueError, match="actor 00"):
        check_held_out({"data": {"held_out_actors": ["02"]}}, data, [0, 2])
    check_held_out({"data": {}}, data, [0, 1])  # a run that records nothing cannot be checked
