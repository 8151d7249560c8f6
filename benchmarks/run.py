"""Runs the benchmarks and writes their JSON, ``SUMMARY.md``, ``summary.json`` and ``report.html``.

    python -m benchmarks.run --out benchmarks/results          # everything, the targets' sizes (< 10 min)
    python -m benchmarks.run --quick                            # ~1 minute smoke run (into results/raw/quick)
    python -m benchmarks.run --only engine,memory --threads 1   # a subset, one thread count
"""

from __future__ import annotations

import importlib
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from benchmarks.common import (
    BENCHMARKS,
    ORDER,
    PROFILES,
    BenchResult,
    Context,
    loadavg,
    machine_info,
    probe_threads,
)
from benchmarks.summary import write_summary
from ffidelity.utils import atomic

#: modules whose import registers benchmarks, in the order they run
MODULES = ("engine_throughput", "engine_defaults", "memory_scaling", "explainers", "emotion", "token_drop",
           "quantus_cmp", "quantus_adapter")


def load_benchmarks() -> list[str]:
    """Imports every benchmark module; returns the benchmark names in run order (module order, then the order
    of registration within a module)."""
    for mod in MODULES:
        importlib.import_module(f"benchmarks.{mod}")
    rank = {f"benchmarks.{m}": i for i, m in enumerate(MODULES)}
    return sorted(ORDER, key=lambda n: (rank.get(BENCHMARKS.get(n).__module__, len(MODULES)), ORDER.index(n)))


def run_all(out: Path, profile: str = "full", only: list[str] | None = None, thread_counts: list[int] | None = None,
            log: Any = print) -> dict[str, Any]:
    """Runs the selected benchmarks (all by default) and writes every result file into ``out``.

    A benchmark that raises is recorded as an ERROR row and the others still run.

    Returns:
        the summary: ``meta`` facts and the list of per-benchmark results (as written to JSON).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    names = load_benchmarks()
    if only:
        unknown = [n for n in only if n not in BENCHMARKS]
        if unknown:
            raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(names)}")
        names = [n for n in names if n in only]
    out = Path(out)
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    counts = thread_counts or sorted({1, torch.get_num_threads()})
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    machine_start = machine_info()
    best, probe = probe_threads(tuple(counts))
    machine_start["thread_probe_seconds"] = {str(k): round(v, 4) for k, v in probe.items()}
    ctx = Context(PROFILES[profile], out, raw, tuple(counts), log, best_threads=best)
    log(f"benchmarks ({profile}): {', '.join(names)}; threads tried {counts}, best for a gradient step {best} "
        f"({', '.join(f'{k}: {v * 1000:.0f} ms' for k, v in probe.items())}); load {machine_start['loadavg']}")
    results = []
    for name in names:
        fn = BENCHMARKS.get(name)
        before = loadavg()
        t1 = time.perf_counter()
        log(f"[{name}] ...")
        try:
            res = fn(ctx)
        except Exception:  # a failed benchmark is a result too; the others still run
            res = BenchResult(name, (fn.__doc__ or name).strip().splitlines()[0], error=traceback.format_exc())
            log(f"[{name}] FAILED:\n{res.error}")
        res.seconds = time.perf_counter() - t1
        res.load_before, res.load_after = before, loadavg()
        d = res.to_dict()
        atomic.write_json(out / f"{name}.json", {"profile": profile, **d})
        results.append(d)
        for t in res.targets:
            log(f"[{name}] {t.status:8s} {t.name}: {t.value if t.value is None else round(t.value, 3)}")
        log(f"[{name}] done in {res.seconds:.0f} s")
    meta = {"profile": profile, "best_threads": best, "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": time.perf_counter() - t0, "threads": counts, "machine_start": machine_start,
            "machine_end": machine_info()}
    path = write_summary(out, results, meta)
    log(f"wrote {path} and {out / 'report.html'} ({meta['seconds']:.0f} s)")
    return {"meta": meta, "results": results}


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


@app.command()
def main(
    out: Annotated[Path | None, typer.Option(help="output folder (default benchmarks/results, quick: "
                                                  "benchmarks/results/raw/quick)")] = None,
    quick: Annotated[bool, typer.Option(help="~1 minute run on small sizes")] = False,
    profile: Annotated[str | None, typer.Option(help="full, quick or smoke (overrides --quick)")] = None,
    only: Annotated[str | None, typer.Option(help="comma-separated benchmark names")] = None,
    threads: Annotated[str | None, typer.Option(help="comma-separated torch thread counts to try "
                                                     "(default: 1 and torch's default)")] = None,
) -> None:
    """Runs the benchmarks and writes SUMMARY.md, summary.json, report.html and one JSON per benchmark."""
    prof = profile or ("quick" if quick else "full")
    if out is None:
        out = Path("benchmarks/results") if prof == "full" else Path("benchmarks/results/raw") / prof
    counts = [int(v) for v in threads.split(",")] if threads else None
    try:
        run_all(out, prof, only.split(",") if only else None, counts)
    except ValueError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
