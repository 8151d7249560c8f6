"""Writing the results: ``summary.json``, ``SUMMARY.md`` (targets MET / NOT MET with their numbers) and
``report.html`` with the figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ffidelity.utils import atomic
from ffidelity.utils.report import HtmlReport


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 0.01 else f"{value:.2f}"
    return str(value)


def target_rows(results: list[dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for r in results:
        if r.get("error"):
            rows.append({"benchmark": r["name"], "target": "(benchmark failed)", "value": "-", "target_value": "-",
                         "status": "ERROR", "note": r["error"].splitlines()[-1][:160]})
        for t in r["targets"]:
            thr = "-" if t["threshold"] is None else f"{t['op']} {_fmt(t['threshold'])}"
            value = _fmt(t["value"]) + (f" {t['unit']}" if t["unit"] and t["value"] is not None else "")
            rows.append({"benchmark": r["name"], "target": t["name"], "value": value, "target_value": thr,
                         "status": t["status"], "note": t["note"]})
    return rows


def _machine_lines(start: dict[str, Any], end: dict[str, Any], used_threads: list[int]) -> list[str]:
    versions = ", ".join(f"{k} {start.get(k)}" for k in ("python", "torch", "numpy", "captum", "transformers",
                                                          "lightning", "av", "librosa", "ffidelity")
                         if start.get(k))
    return [
        f"- CPU: {start['cpu_model']}, {start['cores']} cores, {start.get('mem_total_gb', '?')} GB RAM, "
        f"{start['platform']}",
        f"- torch threads: default {start['torch_threads']} (intra-op), interop {start['torch_interop_threads']}; "
        f"thread counts tried per measurement: {used_threads}; parallel backend: {start['parallel_info']}",
        f"- versions: {versions}",
        f"- load at start: `{start['uptime']}`",
        f"- load at end: `{end['uptime']}`",
    ]


def write_summary(out: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Writes ``summary.json``, ``SUMMARY.md`` and ``report.html`` into ``out``; returns the markdown path."""
    rows = target_rows(results)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("MET", "NOT MET", "SKIPPED", "ERROR")}
    atomic.write_json(out / "summary.json", {**meta, "targets": rows, "counts": counts,
                                             "benchmarks": [{k: r[k] for k in ("name", "title", "seconds",
                                                                               "load_before", "load_after",
                                                                               "notes", "figures", "error")}
                                                            for r in results]})
    command = {"full": "", "quick": " --quick"}.get(meta["profile"], f" --profile {meta['profile']}")
    lines = [f"# Benchmark summary ({meta['profile']} profile)", "",
             f"Run {meta['started']} - {meta['finished']}, {meta['seconds']:.0f} s in total "
             f"(`python -m benchmarks.run{command}`). " + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + ".",
             "",
             "Every ratio is measured within this run, beside its reference, and repeated. The throughput ratios "
             "of `engine`, `engine_defaults` and the Quantus comparison are the median of the ratios paired within "
             "a repeat (the note gives their range), so one lucky or unlucky repeat cannot decide a target; other "
             "timings take the best of their repeats.", ""]
    if meta["profile"] != "full":
        lines += [f"**{meta['profile']} profile: the sizes are smaller than the targets' configuration; these "
                  "numbers check that the suite runs, they are not the targets' numbers.**", ""]
    lines += ["## Machine", "", *_machine_lines(meta["machine_start"], meta["machine_end"], meta["threads"]),
              f"- fastest thread count for a small training step at the start: {meta.get('best_threads')} "
              f"(seconds per step: {meta['machine_start'].get('thread_probe_seconds')}); used where a benchmark "
              "does not calibrate its own", "", "## Targets", "",
              "| benchmark | target | value | threshold | status | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        status = {"MET": "**MET**", "NOT MET": "**NOT MET**"}.get(r["status"], r["status"])
        lines.append(f"| {r['benchmark']} | {r['target']} | {r['value']} | {r['target_value']} | {status} | "
                     f"{r['note'].replace('|', '/')} |")
    lines += ["", "## Benchmarks", ""]
    for r in results:
        load = f"load {r['load_before']} -> {r['load_after']}" if r["load_before"] else ""
        lines.append(f"### {r['title']} (`{r['name']}`, {r['seconds']:.0f} s, {load})")
        lines.append("")
        lines += [f"- {n}" for n in r["notes"]]
        if r.get("error"):
            lines.append(f"- ERROR: `{r['error'].splitlines()[-1]}`")
        lines += [f"- ![{cap}]({file})" for file, cap in r["figures"]]
        lines.append("")
    path = out / "SUMMARY.md"
    atomic.write_text(path, "\n".join(lines) + "\n")
    _write_html(out, results, rows, meta)
    return path


def _write_html(out: Path, results: list[dict[str, Any]], rows: list[dict[str, str]], meta: dict[str, Any]) -> None:
    import pandas as pd

    rep = HtmlReport(f"Benchmarks ({meta['profile']} profile)", out)
    rep.paragraph(f"Run {meta['started']} - {meta['finished']}, {meta['seconds']:.0f} s in total.")
    rep.heading("Machine")
    rep.bullets([line[2:] for line in _machine_lines(meta["machine_start"], meta["machine_end"], meta["threads"])])
    rep.heading("Targets")
    frame = pd.DataFrame(rows).rename(columns={"target_value": "threshold"})
    rep.table(frame, index=False)
    for r in results:
        rep.heading(r["title"], level=3)
        if r["notes"]:
            rep.bullets(r["notes"])
        if r.get("error"):
            rep.code(r["error"])
        for file, cap in r["figures"]:
            rep.image(out / file, cap)
    rep.save("report.html")
