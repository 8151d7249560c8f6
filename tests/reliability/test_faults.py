"""Kill -9 at random points of the real CLI commands, rerun, and get the numbers of an uninterrupted run.

Each command runs as a subprocess (``python -m multimae_der ...`` / ``python -m ffidelity ...``) with a tiny
configuration. For every command: one uninterrupted reference run (timed), then in a second folder two attempts
killed with SIGKILL after a delay drawn from a seeded RNG (counted from the moment the command starts real work,
so kills land in decoding / training / evaluation rather than in ``import torch``), then a final rerun to
completion. The final outputs must equal the reference exactly, and no output file may be half-written.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from multimae_der.data.prepare import PrepareConfig, load_entry, prepare_dataset
from multimae_der.data.synthav import synthesize

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
PREP = ["--frames", "4", "--windows", "4"]
MODEL = ["--model", "tiny", "--image-size", "32", "--layers", "1", "--batch-size", "4", "--epochs", "6",
         "--seed", "3", "--no-progress", *PREP]
Watch = Callable[[float, Path], bool]  # (command start time, its log) -> has this point been reached?
Phase = tuple[Watch, Watch]  # a kill lands at a random time between these two points of the reference run


def _mm(*args: str) -> list[str]:
    return [sys.executable, "-m", "multimae_der", *args]


def _newer(folder: Path, pattern: str) -> Watch:
    """True once a file matching ``pattern`` was (re)written after the command started."""
    def reached(start: float, log: Path) -> bool:
        return any(p.stat().st_mtime >= start - 0.01 for p in folder.glob(pattern) if p.exists())
    return reached


def _printed(text: str) -> Watch:
    return lambda start, log: log.exists() and text in log.read_text(errors="replace")


def _run(cmd: list[str], log: Path, watches: list[Watch], kill: tuple[int, float] | None = None
         ) -> tuple[int, list[float | None]]:
    """Runs ``cmd``; with ``kill = (i, delay)`` SIGKILLs it ``delay`` s after ``watches[i]`` turns true.

    Returns the return code and the seconds from the start at which each watch turned true (``None``: never).
    """
    start = time.time()
    times: list[float | None] = [None] * len(watches)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=ENV)
        while proc.poll() is None:
            now = time.time()
            for i, watch in enumerate(watches):
                if times[i] is None and watch(start, log):
                    times[i] = now - start
            if kill is not None and times[kill[0]] is not None and now - start >= times[kill[0]] + kill[1]:
                os.kill(proc.pid, signal.SIGKILL)  # only the process this test started
                break
            time.sleep(0.02)
        rc = proc.wait()
    return rc, times


def _kill_trials(cmd_for: Callable[[Path], list[str]], phases_for: Callable[[Path], list[Phase]], tmp: Path,
                 seed: int, done: str) -> tuple[Path, Path]:
    """Reference run in ``tmp/ref``; one killed attempt per phase, then a completing rerun, in ``tmp/killed``.

    The reference run times each phase; attempt ``i`` is killed at a seeded-random instant inside phase ``i``.
    ``done`` is the glob of the command's final output: at least one kill must have left it unwritten (a kill
    that lands mid-work), or the test proves nothing.
    """
    ref, work = tmp / "ref", tmp / "killed"
    ref_phases = phases_for(ref)
    watches = [w for phase in ref_phases for w in phase]
    rc, times = _run(cmd_for(ref), tmp / "ref.log", watches)
    assert rc == 0, (tmp / "ref.log").read_text()[-3000:]
    assert None not in times, times
    rng = random.Random(seed)
    interrupted = 0
    # a phase can be shorter in an attempt than in the reference run (a quiet machine, a resumed run): when no
    # kill landed, the trials start again in a fresh folder with earlier kill instants
    for top in (0.95, 0.5, 0.2):
        if work.exists():
            shutil.rmtree(work)
        for i, phase in enumerate(phases_for(work)):
            t0, t1 = times[2 * i], times[2 * i + 1]
            log = tmp / f"killed{i}.log"
            rc, _ = _run(cmd_for(work), log, list(phase), kill=(0, rng.uniform(0.02, top) * max(t1 - t0, 0.1)))
            assert rc in (0, -signal.SIGKILL), log.read_text()[-3000:]
            interrupted += rc == -signal.SIGKILL and not list(work.glob(done))
            _assert_nothing_half_written(work)
        if interrupted:
            break
    assert interrupted >= 1, "no kill landed before the command finished its work"
    rc, _ = _run(cmd_for(work), tmp / "final.log", [])
    log = (tmp / "final.log").read_text()
    assert rc == 0, log[-3000:]
    assert "Traceback" not in log
    return ref, work


def _assert_nothing_half_written(folder: Path) -> None:
    """Every result, cache entry and checkpoint under its final name reads back completely."""
    for p in folder.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue  # hidden files are the temporary halves of atomic writes: never read by anything
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".safetensors":
            load_file(str(p))
        elif p.suffix == ".ckpt":
            torch.load(p, map_location="cpu", weights_only=True)
        elif p.suffix == ".npz" and p.parent.name == "clips":
            load_entry(p)


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory) -> tuple[Path, Path]:
    """A 16-clip SynthAV RAVDESS set and its prepared cache (the config ``MODEL`` asks for)."""
    root = tmp_path_factory.mktemp("faults") / "ravdess"
    synthesize(root, "ravdess", actors=4, clips_per_actor=4, duration=0.6, size=32, seed=5)
    cache = root.parent / "cache"
    prepare_dataset("ravdess", root, cache, PrepareConfig(num_frames=4, num_windows=4, image_size=32),
                    progress=False)
    return root, cache


def test_prepare_resumes_after_kill(ravdess, tmp_path):
    root, _ = ravdess

    def cmd(cache: Path) -> list[str]:
        return _mm("prepare", "--dataset", "ravdess", "--root", str(root), "--cache", str(cache), *PREP,
                   "--image-size", "32")

    def phases(cache: Path) -> list[Phase]:  # decoding: from the config file to the index, twice
        return [(_newer(cache, "config-*.json"), _newer(cache, "index-*.json"))] * 2

    ref, work = _kill_trials(cmd, phases, tmp_path, seed=11, done="index-*.json")
    (index_ref,), (index_work,) = list(ref.glob("index-*.json")), list(work.glob("index-*.json"))
    a, b = json.loads(index_ref.read_text()), json.loads(index_work.read_text())
    assert len(a["entries"]) == len(b["entries"]) == 16
    for ea, eb in zip(a["entries"], b["entries"], strict=True):
        assert ea["file"] == eb["file"] and ea["label"] == eb["label"]
        da, db = load_entry(ref / ea["file"]), load_entry(work / eb["file"])
        for key in ("video", "audio", "frame_times", "window_bounds"):
            assert np.array_equal(da[key], db[key]), (ea["file"], key)


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_training_resumes_after_kill_with_identical_numbers(command, ravdess, tmp_path):
    root, cache = ravdess

    def cmd(out: Path) -> list[str]:
        return _mm(command, "--dataset", "ravdess", "--root", str(root), "--cache", str(cache), "--out", str(out),
                   *MODEL)

    def phases(out: Path) -> list[Phase]:  # training: from the attempt's CSV log (version_N) to the weights
        return [(_newer(out, "logs/version_*"), _newer(out, "model.safetensors"))] * 2

    ref, work = _kill_trials(cmd, phases, tmp_path, seed=23 if command == "train" else 29, done="model.safetensors")
    _same_weights(ref / "model.safetensors", work / "model.safetensors")
    history = json.loads((ref / "history.json").read_text())  # per-epoch train loss, exact floats
    assert [row["epoch"] for row in history] == list(range(6))
    assert json.loads((work / "history.json").read_text()) == history


def test_benchmark_resumes_after_kill_with_identical_numbers(tmp_path):
    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "ffidelity", "benchmark", "--dataset", "digits", "--out", str(out),
                "--quick", "--explainers", "saliency", "--methods", "fid,ffid", "--n-test", "10",
                "--n-samples", "2", "--epochs", "2", "--finetune-epochs", "1", "--batch-size", "256"]

    def phases(out: Path) -> list[Phase]:
        original = out / "models" / "original"
        return [(_newer(original, "checkpoints/last.ckpt"), _newer(original, "model.safetensors")),  # epoch 2
                (_printed("benchmark"), _newer(out, "results.json"))]  # anywhere: training to the report

    ref, work = _kill_trials(cmd, phases, tmp_path, seed=31, done="results.json")
    a, b = json.loads((ref / "results.json").read_text()), json.loads((work / "results.json").read_text())
    for key in ("models", "curves", "scores", "baseline", "summary"):
        assert a[key] == b[key], key


_ORPHAN_SCRIPT = """
import concurrent.futures as cf, multiprocessing, os, signal, sys
from multimae_der.data.prepare import _init_worker

def work(path):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    return os.getpid()

if __name__ == "__main__":
    pool = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
    pool.submit(work, sys.argv[1]).result()
    os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 would: no pool shutdown
"""


def test_pool_workers_end_with_a_killed_parent(tmp_path):
    """``prepare`` and ``synthesize`` workers must not outlive a killed parent (they used to, forever)."""
    import os
    import subprocess
    import sys
    import time

    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN_SCRIPT)
    pid_file = tmp_path / "worker.pid"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script), str(pid_file)], env=env, timeout=120)
    assert proc.returncode == -9
    worker = int(pid_file.read_text())

    def running() -> bool:  # a zombie (exited, not yet reaped by whoever adopted it) has ended
        try:
            return Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while running() and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = running()
    if alive:
        os.kill(worker, 9)
    assert not alive, "the pool worker outlived its killed parent"
