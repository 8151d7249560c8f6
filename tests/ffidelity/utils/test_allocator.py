"""``tune_allocator``: applied on Linux/glibc, a clean no-op elsewhere; ``auto_tune_allocator``: once, unless the user chose."""

import platform
import sys

import pytest

from ffidelity.utils import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_applies_on_glibc() -> None:
    assert allocator.tune_allocator() is True
    assert allocator._applied == {"mmap_threshold": 32 << 20, "trim_threshold": 256 << 20}
    assert allocator.tune_allocator(16 << 20, 64 << 20) is True  # idempotent, and new values take
    assert allocator._applied["mmap_threshold"] == 16 << 20
    allocator.tune_allocator()


def test_is_a_no_op_off_glibc(monkeypatch) -> None:
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert allocator.tune_allocator() is False
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.tune_allocator() is False


@pytest.fixture
def fresh_process(monkeypatch) -> list[int]:
    """``auto_tune_allocator`` as in a process where nothing tuned yet; records the calls to ``tune_allocator``."""
    calls: list[int] = []
    monkeypatch.setattr(allocator, "_auto", {})
    monkeypatch.setattr(allocator, "_applied", {})
    monkeypatch.setattr(allocator, "tune_allocator", lambda: calls.append(1) or True)
    for key in (allocator.OPT_OUT, *allocator._USER_SETTINGS, "GLIBC_TUNABLES"):
        monkeypatch.delenv(key, raising=False)
    return calls


def test_auto_tunes_once_per_process(fresh_process) -> None:
    assert allocator.auto_tune_allocator() is True
    assert allocator.auto_tune_allocator() is True
    assert fresh_process == [1]


@pytest.mark.parametrize("env", [{"FFIDELITY_DEFAULT_MALLOC": "1"}, {"MALLOC_MMAP_THRESHOLD_": "65536"},
                                 {"MALLOC_TRIM_THRESHOLD_": "0"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}])
def test_auto_leaves_the_users_choice(fresh_process, monkeypatch, env) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert allocator.auto_tune_allocator() is False
    assert fresh_process == []


def test_auto_keeps_an_explicit_call(fresh_process, monkeypatch) -> None:
    monkeypatch.setattr(allocator, "_applied", {"mmap_threshold": 1 << 20, "trim_threshold": 1 << 20})
    assert allocator.auto_tune_allocator() is True
    assert fresh_process == []  # the user's own thresholds stay


def test_the_engine_tunes_at_its_first_evaluation(fresh_process, monkeypatch) -> None:
    import torch

    from ffidelity import Fidelity, RFidelity

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    x, a = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    RFidelity(n_samples=2, sparsities=[0.5], progress=False).evaluate(model, x, None, a)
    Fidelity(sparsities=[0.5], progress=False).evaluate(model, x, None, a)
    assert fresh_process == [1]
    monkeypatch.setattr(allocator, "_auto", {})
    monkeypatch.setenv(allocator.OPT_OUT, "1")
    Fidelity(sparsities=[0.5], progress=False).evaluate(model, x, None, a)
    assert fresh_process == [1]
