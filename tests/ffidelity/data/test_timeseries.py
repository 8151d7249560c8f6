"""Time-series data (synthetic sets, PAM and Boiler files), sequence models and explainers on (B, T, F)."""

import pickle

import numpy as np
import pytest
import torch
from timex_files import write_boiler, write_pam

from ffidelity import SequenceUnits, explain
from ffidelity.benchmark.tasks import TASKS, get_task
from ffidelity.data.timeseries import boiler, freqshapes, pad_sequences, pam, seqcomb
from ffidelity.models.sequence import LSTMClassifier, TransformerClassifier


# -- synthetic sets ------------------------------------------------------------------------------------------------
def test_seqcomb_is_seeded_and_ground_truth_marks_the_ramps():
    a, b, c = seqcomb(40, 20, length=60, seed=1), seqcomb(40, 20, length=60, seed=1), seqcomb(40, 20, 60, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.gt_test, b.gt_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.x_train.shape == (40, 60, 1) and a.gt_train.shape == (40, 60)
    n_gt = a.gt_train.sum(1)
    null = a.y_train == 0
    assert (n_gt[null] == 0).all()
    assert ((n_gt[~null] >= 20) & (n_gt[~null] <= 38)).all()  # two ramps of 10-19 steps
    # ramps span -2.5..2.5: their steps reach far beyond the noise around them on average
    x = a.x_train[..., 0].abs()
    assert x[a.gt_train].mean() > 2 * x[~a.gt_train].mean()
    # class 2 ramps rise, class 1 ramps fall
    for cls, sign in ((2, 1.0), (1, -1.0)):
        i = int(((a.y_train == cls)).nonzero()[0])
        steps = a.gt_train[i].nonzero().flatten()
        first = steps[steps < 30]
        assert sign * (a.x_train[i, first[-1], 0] - a.x_train[i, first[0], 0]) > 2


def test_freqshapes_spikes_follow_class_period_and_direction():
    s = freqshapes(40, 8, length=50, noise=0.0, seed=0)
    for i in range(40):
        y = int(s.y_train[i])
        steps = s.gt_train[i].nonzero().flatten()
        centres = steps[1::3]
        assert len(steps) % 3 == 0 and len(steps) >= 6
        assert set(torch.diff(centres).tolist()) == {10 if y < 2 else 17}
        vals = s.x_train[i, steps, 0]
        assert ((vals > 1.5) if y % 2 == 1 else (vals < -1.5)).all()
        assert (s.x_train[i, ~s.gt_train[i], 0] == 0).all()


def test_pad_sequences_and_errors():
    x = pad_sequences([torch.ones(3), torch.ones(1)], pad_value=-9.0)
    assert x[:, :, 0].tolist() == [[1, 1, 1], [1, -9, -9]]
    with pytest.raises(ValueError, match="number of features"):
        pad_sequences([torch.ones(3, 2), torch.ones(3, 1)])


# -- PAM (TimeX / Raindrop layout) ----------------------------------------------------------------------------------
def test_pam_loader_reads_the_timex_layout(tmp_path):
    x, y = write_pam(tmp_path / "PAMAP2data")
    s = pam(tmp_path, split=1)
    assert s.x_train.shape == (14, 12, 4) and s.x_test.shape == (4, 12, 4) and s.x_val.shape == (2, 12, 4)
    assert s.num_classes == 8 and s.y_test.tolist() == y[16:].tolist()
    # missing readings stay 0; observed ones are z-scored with training statistics
    train = x[:14]
    obs = train[..., 1]
    expected = (x[16, 3, 1] - obs.mean()) / obs.std()
    assert s.x_test[0, 3, 1].item() == pytest.approx(expected, rel=1e-4)
    assert torch.equal(s.x_train[..., 0] == 0, torch.from_numpy(train[..., 0] == 0))
    assert pam(tmp_path, stride=4, limit=5).x_train.shape == (5, 3, 4)


class Planted:
    pass


def test_non_tensor_pam_and_boiler_files_give_clear_errors(tmp_path):
    root = tmp_path / "PAMAP2data"
    write_pam(root)
    objs = np.empty(2, dtype=object)
    objs[0], objs[1] = {"arr": 1}, Planted()
    np.save(root / "processed_data" / "PTdict_list.npy", objs, allow_pickle=True)
    with pytest.raises(ValueError, match=r"PTdict_list.npy: holds Python objects"):
        pam(tmp_path)
    # a split file smuggling a non-array object is refused by the restricted unpickler
    write_pam(tmp_path / "p2" / "PAMAP2data")
    bad = np.empty(3, dtype=object)
    bad[0], bad[1], bad[2] = np.arange(3), Planted(), np.arange(2)
    np.save(tmp_path / "p2" / "PAMAP2data" / "splits" / "PAMAP2_split_1.npy", bad, allow_pickle=True)
    with pytest.raises(ValueError, match=r"PAMAP2_split_1\.npy: not an array of index arrays"):
        pam(tmp_path / "p2")
    with pytest.raises(FileNotFoundError, match=r"PAMAP2_split_3\.npy"):
        pam(tmp_path / "p2", split=3)


def test_boiler_loader_reads_torch_tensors(tmp_path):
    x, y = write_boiler(tmp_path / "Boiler")
    s = boiler(tmp_path)
    assert s.x_train.shape == (20, 36, 5) and s.x_test.shape == (6, 36, 5) and s.num_classes == 2
    assert s.y_test.tolist() == y[24:].tolist()
    assert s.x_train.mean(dim=(0, 1)).abs().max() < 1e-4  # standardised with training statistics
    raw = boiler(tmp_path, standardize=False)
    assert torch.allclose(raw.x_test[0], x[:, 24])  # (T, N, F) on disk -> (N, T, F)


def test_boiler_refuses_pickled_objects_and_non_tensors(tmp_path):
    root = tmp_path / "b"
    write_boiler(root)
    with open(root / "xfull.pt", "wb") as fh:  # a pickle that would build an arbitrary object
        pickle.dump(Planted(), fh)
    with pytest.raises(ValueError, match=r"xfull.pt: not a plain torch-saved tensor file"):
        boiler(root)
    torch.save({"x": [1, 2, 3]}, root / "xfull.pt")
    with pytest.raises(ValueError, match=r"xfull.pt: expected the \(T, N, F\) inputs as a tensor, found dict"):
        boiler(root)
    write_boiler(root)
    torch.save(torch.arange(5), root / "split=1.pt")
    with pytest.raises(ValueError, match=r"split=1\.pt: expected 3 index arrays"):
        boiler(root)
    torch.save((torch.arange(3), torch.arange(3), torch.tensor([99])), root / "split=1.pt")
    with pytest.raises(ValueError, match="outside the 30 samples"):
        boiler(root)


def test_real_tasks_need_a_root_and_build_from_files(tmp_path):
    for name in ("pam", "boiler"):
        with pytest.raises(ValueError, match="needs --root"):
            get_task(name)
    write_boiler(tmp_path)
    task = get_task("boiler", root=tmp_path, quick=True)
    assert isinstance(task.units, SequenceUnits) and task.x_train.shape[1:] == (36, 5)
    assert task.make_model()(task.x_test[:2]).shape == (2, 2)


# -- models and explainers on (B, T, F) -------------------------------------------------------------------------------
def test_models_ignore_padding():
    torch.manual_seed(0)
    seqs = [torch.randn(7, 3), torch.randn(4, 3)]
    padded = pad_sequences(seqs, pad_value=-99.0)
    for model in (LSTMClassifier(3, 4, hidden=8, pad_value=-99.0),
                  TransformerClassifier(3, 4, d_model=8, nhead=2, num_layers=1, dropout=0.0, pad_value=-99.0)):
        model.eval()
        with torch.no_grad():
            both = model(padded)
            alone = model(seqs[1][None])
        assert torch.allclose(both[1], alone[0], atol=1e-5)


@pytest.mark.parametrize("name", ["saliency", "integrated_gradients", "sg_sq", "occlusion", "random"])
def test_generic_explainers_work_on_time_series(name):
    torch.manual_seed(0)
    model = LSTMClassifier(2, 3, hidden=8)
    x = torch.randn(4, 9, 2)
    kwargs = {"occlusion": {"channel_dim": 2, "window": 3}, "sg_sq": {"n_steps": 4, "nt_samples": 2},
              "integrated_gradients": {"n_steps": 4}}.get(name, {})
    attr = explain(name, model, x, torch.tensor([0, 1, 2, 0]), **kwargs)
    assert attr.shape == x.shape and torch.isfinite(attr).all()
    scores = SequenceUnits().scores(attr, x)
    assert scores.shape == (4, 9)
    if name == "occlusion":  # windows of 3 steps span both features: constant within a window, varying across
        assert torch.allclose(attr[:, 0:3, 0], attr[:, 0:1, 0].expand(-1, 3))
        assert torch.allclose(attr[..., 0], attr[..., 1])
        assert not torch.allclose(attr[:, 0, 0], attr[:, 3, 0])


def test_gradcam_on_an_lstm_says_it_does_not_apply():
    with pytest.raises(ValueError, match="does not apply to recurrent models"):
        explain("gradcam", LSTMClassifier(2, 3, hidden=8), torch.randn(2, 5, 2), 0)


def test_synthetic_tasks_are_registered_with_ground_truth():
    for name in ("seqcomb", "freqshapes", "seqcomb-transformer", "freqshapes-transformer"):
        assert name in TASKS
    task = get_task("freqshapes-transformer", quick=True, seed=0)
    assert task.ground_truth.shape == (task.x_test.shape[0], task.x_test.shape[1])
    assert task.make_model()(task.x_test[:3]).shape == (3, 4)
    assert "gradcam" not in task.explainers and task.explainer_kwargs["occlusion"]["channel_dim"] == 2
