"""The report of `bench rng-modes`: the markdown tables, the JSON document and the files
(table, JSON, PNG) written to the output directory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dockercoins import ui
from dockercoins.bench.model import BenchReport
from dockercoins.errors import UserError
from dockercoins.names import GLOBAL, MODES, REPLICATED

JSON_FORMAT = "dockercoins-bench-rng-modes/1"
TABLE_FILE = "rng-modes.md"
JSON_FILE = "rng-modes.json"
PNG_FILE = "rng-modes.png"


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "unbounded"
    return f"{value:.{digits}f}"


def results_table(report: BenchReport) -> str:
    """Markdown table: one row per measurement, replicated first, by worker count."""
    lines = [
        "| mode | rng tasks | workers | hashes/s (mean ± stdev) | p10-p90 | ceiling "
        "| measured/ceiling |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    ordered = sorted(report.measurements, key=lambda m: (MODES.index(m.mode), m.workers))
    for item in ordered:
        stats = item.stats
        main = " **(main)**" if item.workers == report.main_workers else ""
        lines.append(
            f"| {item.mode}{main} | {item.rng_tasks} | {item.workers} "
            f"| {stats.mean:.1f} ± {stats.stdev:.1f} | {stats.p10:.1f}-{stats.p90:.1f} "
            f"| {_num(item.ceiling)} | {_num(item.ratio, 2)} |"
        )
    return "\n".join(lines)


def speedup_table(report: BenchReport) -> str:
    """Markdown table: global/replicated per worker count, measured and from the ceilings."""
    lines = [
        "| workers | replicated hashes/s | global hashes/s | global/replicated | ceiling ratio |",
        "|---:|---:|---:|---:|---:|",
    ]
    for workers, measured, ceil in report.speedups():
        rep, glo = report.find(REPLICATED, workers), report.find(GLOBAL, workers)
        assert rep is not None and glo is not None
        lines.append(
            f"| {workers} | {rep.stats.mean:.1f} | {glo.stats.mean:.1f} "
            f"| {_num(measured, 2)} | {_num(ceil, 2)} |"
        )
    return "\n".join(lines)


def markdown(report: BenchReport) -> str:
    """The table file: both tables and the delays they were computed with."""
    d = report.delays
    loops = f" x {d.worker_concurrency}" if d.worker_concurrency != 1 else ""
    return (
        f"{results_table(report)}\n\n{speedup_table(report)}\n\n"
        f"Ceiling = min(W{loops} / ({d.worker:g} + {d.rng:g} + {d.hasher:g}) s, "
        f"R x {d.rng_concurrency} / {d.rng:g} s); {report.nodes} nodes; "
        f"spread over {_num(report.settings.get('window'), 0)}-second windows.\n"
    )


# --- JSON ------------------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def to_json(report: BenchReport) -> dict[str, Any]:
    """A JSON-ready document (unbounded ceilings are null)."""
    return {
        "format": JSON_FORMAT,
        "main_workers": report.main_workers,
        "nodes": report.nodes,
        "delays": {
            "worker": report.delays.worker,
            "rng": report.delays.rng,
            "hasher": report.delays.hasher,
            "rng_concurrency": report.delays.rng_concurrency,
            "worker_concurrency": report.delays.worker_concurrency,
        },
        "settings": report.settings,
        "results": [
            {
                "mode": item.mode,
                "rng_tasks": item.rng_tasks,
                "workers": item.workers,
                "hashes_per_second": item.stats.mean,
                "stdev": item.stats.stdev,
                "min": item.stats.minimum,
                "max": item.stats.maximum,
                "p10": item.stats.p10,
                "p90": item.stats.p90,
                "seconds": item.stats.seconds,
                "samples": [[s.now, s.hashes] for s in item.samples],
                "ceiling": _finite(item.ceiling),
                "measured_over_ceiling": item.ratio,
            }
            for item in report.measurements
        ],
        "global_over_replicated": [
            {"workers": workers, "measured": measured, "ceiling": ceil}
            for workers, measured, ceil in report.speedups()
        ],
    }


# --- files -----------------------------------------------------------------------------------


def write_outputs(report: BenchReport, out: Path) -> None:
    """TABLE_FILE, JSON_FILE and PNG_FILE in `out` (created); UserError when it cannot."""
    from dockercoins.bench import plot as bench_plot

    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / TABLE_FILE).write_text(markdown(report))
        document = to_json(report)
        (out / JSON_FILE).write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
        if bench_plot.available():
            bench_plot.plot(report, out / PNG_FILE)
        else:
            ui.info(f"no {PNG_FILE}: matplotlib is missing (pip install 'dockercoins[bench]')")
    except OSError as error:
        raise UserError(f"cannot write the results to {out}: {error}") from error
