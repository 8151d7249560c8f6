"""``tune_allocator``: applied on Linux/glibc, a clean no-op elsewhere."""

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
