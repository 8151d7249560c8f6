"""How the engine feeds masked copies to the model: chunk sizes, their calibration, and masking in a thread.

``batch_size="auto"`` times the sizes in :data:`AUTO_BATCH_SIZES` on the evaluation's own first chunks (no copy
is wasted) and keeps the fastest per masked copy for the rest. The remaining chunks are built in a background
thread while the model runs, when masking costs a fair share of the forward pass.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import torch

from ffidelity.metrics.masking import Chunk, MaskedCopies

log = logging.getLogger(__name__)

#: chunk sizes ``batch_size="auto"`` tries, each on two real chunks of the evaluation (none is wasted work)
AUTO_BATCH_SIZES: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
#: largest masked batch ``"auto"`` may hold per buffer (three buffers exist: two masked, one of inputs)
_AUTO_BUFFER_BYTES = 256 * 2**20
#: batch size of plain (unmasked) forward passes under ``"auto"``
PLAIN_BATCH = 256
#: share of an evaluation's masked copies that ``"auto"`` may spend on timed chunks
_AUTO_BUDGET = 0.1
#: calibration stops at the first size this much slower per copy than the best so far
_AUTO_STOP = 1.1
#: the size ``"auto"`` uses when the evaluation is too small to calibrate (most models peak at 32-128)
_AUTO_SMALL = 64


def run_chunks(copies: MaskedCopies, consume: Callable[[Chunk], None], batch_size: int | str, label: str = ""
               ) -> tuple[int, list[tuple[int, float]]]:
    """Builds every chunk of ``copies`` in order and hands each to ``consume``.

    Args:
        copies: the evaluation's masked copies.
        consume: runs the model on one built chunk and records its scores.
        batch_size: copies per chunk, or ``"auto"``.
        label: names the evaluation in the log line of the chosen size.

    Returns:
        The chunk size used after calibration, and ``(copies, seconds)`` of every timed chunk.
    """
    total = copies.total
    if batch_size == "auto":  # sizes whose masked batch fits the memory bound
        fits = [b for b in AUTO_BATCH_SIZES if b * copies.row_bytes <= _AUTO_BUFFER_BYTES] or [AUTO_BATCH_SIZES[0]]
        candidates = sorted({*(b for b in fits if b < total), min(total, fits[-1])})
    else:
        candidates = [int(batch_size)]
    rows = min(candidates[-1], total)
    copies.allocate(rows)
    bounds: list[tuple[int, int]] = []  # (start, stop) of each chunk, in order

    def build(chunk: int) -> Chunk:
        return copies.build(*bounds[chunk], slot=chunk % 2)

    # the first chunks run inline and are timed. With several candidate sizes (batch_size "auto") each
    # runs on two chunks after a warm-up chunk, within a tenth of the evaluation's copies, and the fastest
    # per masked copy is kept (an evaluation too small for that runs at 64). Masking in a
    # background thread pays off only when it costs a fair share of the forward pass (small models);
    # otherwise the extra thread only disturbs the model's thread pool.
    per_copy: dict[int, tuple[float, float, float]] = {}  # size -> (s per copy, t_build, t_model)
    calibration: list[tuple[int, float]] = []  # (copies, seconds) of every timed chunk
    done = 0

    def timed_chunk(size: int) -> None:
        nonlocal done
        bounds.append((done, min(done + size, total)))
        t0 = time.perf_counter()
        with _single_thread():
            item = build(len(bounds) - 1)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        consume(item)
        t_model = time.perf_counter() - t0
        c = bounds[-1][1] - done
        done = bounds[-1][1]
        calibration.append((c, t_build + t_model))
        if (t_build + t_model) / c < per_copy.get(size, (math.inf,))[0]:
            per_copy[size] = ((t_build + t_model) / c, t_build, t_model)

    # the sizes whose two chunks fit, after a warm-up chunk, in the copies the timed chunks may take
    budget, used, timed = _AUTO_BUDGET * total, candidates[0], []
    for size in candidates if len(candidates) > 1 else ():
        if used + 2 * size > budget:
            break
        used += 2 * size
        timed.append(size)
    if len(timed) >= 2:  # ascending; stop at the first size clearly slower per copy than the best so far
        timed_chunk(candidates[0])
        per_copy.clear()  # the warm-up chunk pays for first-call costs: not a measurement
        for size in timed:
            timed_chunk(size)
            timed_chunk(size)
            if per_copy[size][0] > _AUTO_STOP * min(v[0] for v in per_copy.values()):
                break
        chosen = min(per_copy, key=lambda b: per_copy[b][0]) if per_copy else min(_AUTO_SMALL, rows)
        if len(per_copy) > 1:
            log.info("%s: batch size %d chosen (ms per masked copy: %s)", label, chosen,
                     ", ".join(f"{b} -> {v[0] * 1e3:.3f}" for b, v in sorted(per_copy.items())))
    else:  # a fixed size, or an evaluation too small for calibration to pay off
        chosen = candidates[0] if len(candidates) == 1 else min(_AUTO_SMALL, rows)
        timed_chunk(chosen)  # inline and timed: decides whether masking gets its own thread
    _, t_build, t_model = per_copy.get(chosen, (0.0, 0.0, 1.0))
    calibrated = len(bounds)
    bounds.extend((a, min(a + chosen, total)) for a in range(done, total, chosen))
    threaded = len(bounds) - calibrated > 2 and t_build > 0.2 * t_model
    with _prefetched(build, len(bounds), start=calibrated, threaded=threaded) as batches:
        for item in batches:
            consume(item)
    return chosen, calibration


@contextmanager
def _single_thread() -> Iterator[None]:
    """Runs the enclosed torch ops on one thread, then restores the thread count.

    Mask building is a handful of memory-bound ops on a few hundred kB; splitting them over a thread pool
    saves little, and on a busy machine every parallel region waits for a descheduled thread (measured:
    0.04 ms on one thread, 20 ms on two with the cores shared by other processes).
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@contextmanager
def _prefetched(build: Any, n: int, start: int = 0, threaded: bool = True) -> Iterator[Iterator[Any]]:
    """``build(start), ..., build(n - 1)`` in order, each built in a background thread while the caller uses the
    last (``threaded=False``: built inline, single-threaded, when asked for).

    Masking is single-threaded, memory-bound work; the model's forward pass uses the thread pool. Overlapping
    the two hides most of the masking cost on small models. At most two built chunks exist at any time (the one
    in use and the next), which is what the engine's two output buffers allow: chunk ``k + 2`` is built only
    after the caller has asked for chunk ``k + 1``, that is, finished with chunk ``k``. The order of the chunks,
    and so every random draw, is the same as in a plain loop. Errors in the thread are raised in the caller.
    One chunk runs inline, without a thread.
    """
    if not threaded or n - start <= 1:

        def inline() -> Iterator[Any]:
            for k in range(start, n):
                with _single_thread():
                    item = build(k)
                yield item

        yield inline()
        return
    import queue
    import threading

    slots = threading.Semaphore(2)  # two buffers: chunk k + 2 waits until the caller is done with chunk k
    ready: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    inference = torch.is_inference_mode_enabled()  # thread-local in torch: carried over by hand

    def work() -> None:
        torch.set_num_threads(1)  # per thread: the caller's pool is untouched
        try:
            with torch.inference_mode(inference), torch.no_grad():
                for k in range(start, n):
                    slots.acquire()
                    if stop.is_set():
                        return
                    ready.put(("ok", build(k)))
        except BaseException as exc:  # handed to the caller, which raises it
            ready.put(("error", exc))

    thread = threading.Thread(target=work, name="ffidelity-masking", daemon=True)
    thread.start()

    def items() -> Iterator[Any]:
        for _ in range(start, n):
            kind, item = ready.get()
            if kind == "error":
                raise item
            yield item
            slots.release()  # the caller is done with this chunk's buffer

    try:
        yield items()
    finally:
        stop.set()
        slots.release()
        while thread.is_alive():  # unblock a thread waiting to hand over a chunk nobody will take
            with suppress(queue.Empty):
                ready.get(timeout=0.05)
        thread.join()


