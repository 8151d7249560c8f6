"""One call that keeps glibc from handing big buffers back to the kernel after every forward pass.

With glibc's default malloc settings, a small model's multi-MB activations are allocated with ``mmap`` and
returned to the kernel when freed, so every batch page-faults its buffers in again (measured on a tiny CNN:
about 5,000 page faults per batch of 512; raw throughput swings by 2x with what ran before in the process).
Raising the mmap and trim thresholds keeps those buffers in the heap. The same effect as the environment
variables ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``, but applied from inside a running process
(through ``mallopt``), so a library call or a command line can do it.
"""

from __future__ import annotations

import ctypes
import platform
import sys

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_applied: dict[str, int] = {}
#: the tuned thresholds (bytes), also what ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` get in benchmarks
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20


def tune_allocator(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Raises glibc malloc's mmap and trim thresholds for this process; returns whether it was applied.

    A no-op returning False off Linux/glibc (macOS, Windows, musl). Memory that the process frees stays
    reserved up to ``trim_threshold`` instead of going back to the system, which is the point; peak memory
    does not grow. Called by the ``ffidelity`` and ``multimae-der`` commands at start.

    Args:
        mmap_threshold: allocations at least this large (bytes) use ``mmap``; glibc's dynamic default starts
            at 128 kB.
        trim_threshold: free memory at the top of the heap kept before returning it to the kernel (bytes).
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    ok = libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok
    if ok:
        _applied.update(mmap_threshold=int(mmap_threshold), trim_threshold=int(trim_threshold))
    return ok
