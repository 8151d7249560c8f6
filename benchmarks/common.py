"""Shared pieces of the benchmarks: sizes per profile, targets, timing, machine facts and child processes.

Machines are shared and noisy, so every benchmark compares within one run: ratios against a reference
measured right beside it, repeated, keeping the median (and the best) of the ratios.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ffidelity.utils.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD
from ffidelity.utils.registry import Registry

REPO = Path(__file__).resolve().parents[1]


# -- profiles -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """Sizes of one benchmark run. ``full`` is what the targets are stated for; ``quick`` is a ~1 minute smoke
    run; ``smoke`` is the test's tiny version (seconds)."""

    name: str
    repeats: int  # repeats of every ratio measurement (median and best reported)
    min_time: float  # seconds per raw-throughput measurement
    # engine throughput
    resnet_width: int  # ResNet-9 width (64 = the paper's model)
    n_samples: int
    n_sparsities: int
    resnet_inputs: int  # inputs per R-/F-Fid evaluation on ResNet-9
    tiny_inputs: int
    fid_inputs: int  # inputs per plain-Fidelity evaluation
    baseline_sparsities: int  # sparsities the official-way R-/F-Fid loop runs (its rate is per sparsity)
    batch_sizes: tuple[int, ...]
    # memory and scaling
    memory_samples: tuple[int, int]
    memory_inputs: int
    scaling_inputs: tuple[int, ...]
    scaling_samples: tuple[int, ...]
    # explainers
    explain_inputs: int
    explain_steps: int
    explain_nt: int
    explain_width: int
    # emotion
    hd_clips: int
    hd_size: tuple[int, int]  # (width, height) of the "720p" clips
    clip_seconds: float
    train_clips: int
    train_batch: int
    predict_configs: tuple[str, ...]


PROFILES: dict[str, Profile] = {
    "full": Profile("full", repeats=2, min_time=1.0, resnet_width=64, n_samples=50, n_sparsities=19,
                    resnet_inputs=1, tiny_inputs=8, fid_inputs=8, baseline_sparsities=2,
                    batch_sizes=(32, 64, 128, 256, 512), memory_samples=(50, 500), memory_inputs=2,
                    scaling_inputs=(1, 2, 4, 8), scaling_samples=(10, 20, 40, 80), explain_inputs=4,
                    explain_steps=50, explain_nt=10, explain_width=16, hd_clips=4, hd_size=(1280, 720),
                    clip_seconds=3.0, train_clips=64, train_batch=16, predict_configs=("tiny", "base")),
    "quick": Profile("quick", repeats=1, min_time=0.3, resnet_width=16, n_samples=10, n_sparsities=5,
                     resnet_inputs=1, tiny_inputs=4, fid_inputs=4, baseline_sparsities=2,
                     batch_sizes=(64, 256), memory_samples=(10, 100), memory_inputs=1,
                     scaling_inputs=(1, 2, 4), scaling_samples=(5, 10, 20), explain_inputs=2, explain_steps=16,
                     explain_nt=4, explain_width=8, hd_clips=1, hd_size=(640, 360), clip_seconds=2.0,
                     train_clips=16, train_batch=4, predict_configs=("tiny",)),
    "smoke": Profile("smoke", repeats=1, min_time=0.05, resnet_width=4, n_samples=2, n_sparsities=2,
                     resnet_inputs=1, tiny_inputs=2, fid_inputs=2, baseline_sparsities=1,
                     batch_sizes=(32,), memory_samples=(2, 8), memory_inputs=1, scaling_inputs=(1, 2),
                     scaling_samples=(2, 4), explain_inputs=1, explain_steps=4, explain_nt=2, explain_width=4,
                     hd_clips=1, hd_size=(128, 72), clip_seconds=1.0, train_clips=4, train_batch=2,
                     predict_configs=("tiny",)),
}


# -- results ----------------------------------------------------------------------------------------------------
@dataclass
class Target:
    """One stated target: ``value op threshold`` (``op`` is ``>=``, ``<=``, ``>`` or ``<``).

    ``threshold`` None means the number is reported without a target.
    """

    name: str
    value: float | None
    threshold: float | None = None
    op: str = ">="
    unit: str = ""
    note: str = ""
    skipped: bool = False

    @property
    def met(self) -> bool | None:
        if self.threshold is None or self.skipped:
            return None
        if self.value is None:
            return False
        return {">=": self.value >= self.threshold, "<=": self.value <= self.threshold,
                ">": self.value > self.threshold, "<": self.value < self.threshold}[self.op]

    @property
    def status(self) -> str:
        if self.skipped:
            return "SKIPPED"
        return {True: "MET", False: "NOT MET", None: "reported"}[self.met]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met, "status": self.status}


@dataclass
class BenchResult:
    """What one benchmark hands back: its targets, its numbers and its figures (PNG files in ``out``)."""

    name: str
    title: str
    targets: list[Target] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file name, caption)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"] = [t.to_dict() for t in self.targets]
        return d


@dataclass
class Context:
    """What every benchmark receives: the profile, the output folders and the torch thread counts to try."""

    profile: Profile
    out: Path
    raw: Path  # bulky, git-ignored files (clips, caches, run folders)
    threads: tuple[int, ...]
    log: Callable[[str], None] = print
    best_threads: int = 1  # the thread count that ran a gradient step fastest at the start (probe_threads)


Benchmark = Callable[[Context], BenchResult]
BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
#: the order in which ``run`` executes them (and the summary lists them)
ORDER: list[str] = []


def register(name: str) -> Callable[[Benchmark], Benchmark]:
    def deco(fn: Benchmark) -> Benchmark:
        ORDER.append(name)
        return BENCHMARKS.register(name)(fn)

    return deco


# -- timing -----------------------------------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def clocked(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall-clock seconds, CPU seconds of this process, result) of one call.

    On a shared machine the wall clock also counts the time other processes hold the cores; the process's
    CPU time counts only its own work (with one torch thread it is the cleaner measure of work done).
    """
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def per_second(fn: Callable[[], float]) -> float:
    """``fn()`` returns a count of work done; the count per wall-clock second of the call."""
    t0 = time.perf_counter()
    count = fn()
    return count / (time.perf_counter() - t0)


def summarize(values: list[float]) -> dict[str, float]:
    """Median, best (max), min and count of repeated measurements of a rate or ratio."""
    return {"median": float(statistics.median(values)), "best": float(max(values)), "min": float(min(values)),
            "n": len(values)}


def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on POSIX
        return []


@dataclass
class threads:
    """Sets torch's intra-op thread count for the block and restores it."""

    n: int

    def __enter__(self) -> None:
        self._old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self._old)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB: ``VmHWM`` of /proc/self/status, else ``ru_maxrss``.

    ``ru_maxrss`` of a child started by a large process begins at the parent's size (Linux folds the forked
    memory's high-water mark into it at exec) and survives :func:`reset_peak_rss`; ``VmHWM`` is the
    process's own and is reset by it.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Resets this process's peak RSS to its current RSS (Linux ``clear_refs``); False where unsupported.

    After the reset, ``peak_rss_mb`` reports the peak of the work that follows, not of imports or set-up.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_mb() -> float:
    """This process's current resident set size in MB (from /proc; the peak when /proc is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        return peak_rss_mb()


def probe_threads(counts: tuple[int, ...], repeats: int = 3) -> tuple[int, dict[int, float]]:
    """The torch thread count that runs a small training step (ResNet-9 width 16, batch 32) fastest now.

    On a machine whose cores are shared with other busy processes, every parallel region waits for a
    descheduled thread: a many-op step can run 40x slower on two threads than on one. Benchmarks that do not
    calibrate their own thread count use this one.
    """
    from ffidelity.models.image import ResNet9

    torch.manual_seed(0)
    model = ResNet9(3, 10, 16)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    seconds: dict[int, float] = {}
    for n in counts:
        with threads(n):
            torch.nn.functional.cross_entropy(model(x), y).backward()  # warm-up
            seconds[n] = min(timed(lambda: torch.nn.functional.cross_entropy(model(x), y).backward())
                             for _ in range(repeats))
    return min(seconds, key=seconds.__getitem__), seconds


# -- child processes -------------------------------------------------------------------------------------------
#: glibc malloc settings that stop the allocator from handing freed multi-MB activations back to the kernel
#: after every forward pass (each reuse then page-faults); see ``allocator_env``
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}


def allocator_env(allocator: str) -> dict[str, str | None]:
    """Environment changes for a child: ``"tuned"`` sets ``TUNED_MALLOC``; ``"default"`` removes them (the
    library's default: the engine tunes the allocator at its first evaluation); ``"glibc"`` also turns that off
    (``FFIDELITY_DEFAULT_MALLOC=1``), leaving glibc's own settings."""
    if allocator not in ("default", "tuned", "glibc"):
        raise ValueError(f"allocator must be 'default', 'tuned' or 'glibc', got {allocator!r}")
    env: dict[str, str | None] = {k: (v if allocator == "tuned" else None) for k, v in TUNED_MALLOC.items()}
    env["FFIDELITY_DEFAULT_MALLOC"] = "1" if allocator == "glibc" else None
    return env


def run_child(function: str, kwargs: dict[str, Any], timeout: float = 600,
              env_changes: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Runs ``benchmarks.child:<function>(**kwargs)`` in a fresh interpreter and returns its JSON answer.

    A fresh process gives a clean peak RSS (``ru_maxrss`` never goes down within a process) and a fresh
    allocator. ``env_changes`` sets (or, with ``None``, removes) environment variables for the child only.
    """
    env = dict(os.environ)
    for key, value in (env_changes or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    cmd = [sys.executable, "-m", "benchmarks.child", function, json.dumps(kwargs)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"child {function} failed (exit {proc.returncode}):\n{tail}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"child {function} printed no JSON answer; stderr: {proc.stderr[-500:]}")
    return json.loads(lines[-1])


# -- machine ----------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def uptime_text() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # pragma: no cover - no uptime binary
        return f"load average: {', '.join(str(v) for v in loadavg())}"


def machine_info() -> dict[str, Any]:
    """CPU, cores, torch threads, package versions and the load at the time of the call."""
    from ffidelity.utils.report import environment_info

    info = environment_info()
    for mod in ("av", "librosa", "matplotlib"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            info[mod] = None
    info.update(cpu_model=cpu_model(), cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
                torch_interop_threads=torch.get_num_interop_threads(), uptime=uptime_text(), loadavg=loadavg(),
                mkldnn=torch.backends.mkldnn.is_available(), parallel_info=_parallel_backend())
    try:
        with open("/proc/meminfo") as fh:
            info["mem_total_gb"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    return info


def _parallel_backend() -> str:
    text = torch.__config__.parallel_info()
    for line in text.splitlines():
        if line.startswith("ATen parallel backend"):
            return line.split(":", 1)[1].strip()
    return ""
