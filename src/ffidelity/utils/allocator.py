"""One call that keeps glibc from handing big buffers back to the kernel after every forward pass.

With glibc's default malloc settings, a small model's multi-MB activations are allocated with ``mmap`` and
returned to the kernel when freed, so every batch page-faults its buffers in again (measured on a tiny CNN:
about 5,000 page faults per batch of 512; raw throughput swings by 2x with what ran before in the process).
Raising the mmap and trim thresholds keeps those buffers in the heap. The same effect as the environment
variables ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``, but applied from inside a running process
(through ``mallopt``), so a library call or a command line can do it.

The engine applies it by default at its first evaluation in a process (:func:`auto_tune_allocator`): measured in
fresh processes (``make bench``, five runs, each the median of three pairs), the first R-Fidelity evaluation ran
1.07-1.47x faster with it on a plain conv net, 0.94-1.16x on ResNet-9 and 1.05-1.20x on a small ViT (up to 345
page faults per masked copy without it, 4-7 with it). ``FFIDELITY_DEFAULT_MALLOC=1`` keeps glibc's own settings, and
thresholds the user set through the environment are never overridden.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

__all__ = ["auto_tune_allocator", "tune_allocator"]

log = logging.getLogger(__name__)
#: set to any non-empty value, keeps glibc's own malloc settings (no tuning by the engine or the commands)
OPT_OUT = "FFIDELITY_DEFAULT_MALLOC"
#: environment variables through which a user sets glibc's malloc thresholds; glibc reads them at start
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_auto: dict[str, bool] = {}  # the outcome of auto_tune_allocator, decided once per process

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
    does not grow. The engine and the commands call it through :func:`auto_tune_allocator`.

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


def auto_tune_allocator() -> bool:
    """The library's default: :func:`tune_allocator` once per process, unless the user chose otherwise.

    Called at the start of every evaluation of the engine (Fidelity, R-/F-Fidelity, ROAD) and by the commands;
    only the first call does anything. Skipped, leaving glibc's settings as they are, when ``OPT_OUT``
    (``FFIDELITY_DEFAULT_MALLOC``) is set, when the process got its thresholds from the environment
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or malloc tunables in ``GLIBC_TUNABLES``), or when
    :func:`tune_allocator` was already called.

    Returns:
        Whether this process runs with thresholds tuned by this module.
    """
    if "done" not in _auto:
        user_set = any(os.environ.get(k) for k in _USER_SETTINGS) or "malloc" in os.environ.get("GLIBC_TUNABLES", "")
        if os.environ.get(OPT_OUT) or user_set or _applied:
            _auto["done"] = bool(_applied)
        else:
            _auto["done"] = tune_allocator()
            if _auto["done"]:
                log.info("glibc malloc thresholds raised (mmap %d MB, trim %d MB); %s=1 keeps glibc's defaults",
                         MMAP_THRESHOLD >> 20, TRIM_THRESHOLD >> 20, OPT_OUT)
    return _auto["done"]
