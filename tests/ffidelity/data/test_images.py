"""Image data: digits (embedded) and CIFAR batches read without unpickling arbitrary objects."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from ffidelity.data.images import cifar, digits


def test_digits_split_is_fixed_by_seed_and_standardised() -> None:
    a, b, c = digits(seed=0), digits(seed=0), digits(seed=1)
    assert a.x_train.shape[1:] == (1, 32, 32) and a.num_classes == 10
    assert len(a.y_train) + len(a.y_test) == 1797
    assert (a.x_test == b.x_test).all() and not (a.y_test == c.y_test).all()
    assert abs(float(a.x_train.mean())) < 1e-4 and abs(float(a.x_train.std()) - 1) < 1e-2


def _write_cifar10(folder, n=6) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))


def test_cifar10_reads_python_batches(tmp_path) -> None:
    _write_cifar10(tmp_path / "cifar-10-batches-py")
    split = cifar(tmp_path, 10)
    assert split.x_train.shape == (30, 3, 32, 32) and split.x_test.shape == (6, 3, 32, 32)
    assert split.classes[3] == "c3"


def test_cifar100_reads_train_and_test(tmp_path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 8), ("test", 4)):
        d = {"data": np.zeros((n, 3072), np.uint8), "fine_labels": list(range(n)), "coarse_labels": [0] * n}
        (folder / name).write_bytes(pickle.dumps(d))
    split = cifar(folder, 100)
    assert split.x_train.shape[0] == 8 and split.num_classes == 100


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_a_planted_pickle_never_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder)
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}))
    with pytest.raises(ValueError, match=r"data_batch_1: refusing to load (posix|os)\.system"):
        cifar(tmp_path, 10)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_cifar_errors_name_the_file(tmp_path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder)
    (folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        cifar(tmp_path, 10)
    (folder / "test_batch").write_bytes(b"\x80\x04truncated")
    with pytest.raises(ValueError, match="test_batch"):
        cifar(tmp_path, 10)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"test_batch: expected data \(N, 3072\)"):
        cifar(tmp_path, 10)
