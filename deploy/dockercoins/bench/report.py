"""The report of `bench rng-modes`: the markdown tables, the JSON document and the files
(table, JSON, PNG) written to the output directory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dockercoins import ui
from dockercoins.bench.model import (
    MIN_RNG_WINDOW,
    RNG_SUM_TOLERANCE,
    BenchReport,
    Delays,
    Measurement,
)
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


def rng_rates_cell(item: Measurement) -> str:
    """Each rng task's answers/s, "node1 10.0, node2 9.9"; "-" when not measured."""
    if item.rng_rates is None:
        return "-"
    if not item.rng_rates:
        return "no series"
    return ", ".join(f"{rate.label} {rate.rate:.1f}" for rate in item.rng_rates)


def rng_sum_cell(item: Measurement) -> str:
    """rng sum / hash rate, marked when it is off by more than the tolerance."""
    ratio = item.rng_sum_ratio
    if ratio is None:
        return "-"
    return f"{ratio:.2f}" + ("" if item.rng_sum_agrees else f" (off by > {RNG_SUM_TOLERANCE:.0%})")


def results_table(report: BenchReport) -> str:
    """Markdown table: one row per measurement, replicated first, by worker count."""
    lines = [
        "| mode | rng tasks | workers | hashes/s (mean ± stdev) | p10-p90 | ceiling "
        "| measured/ceiling | rng answers/s per task | rng sum / hash rate |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    ordered = sorted(report.measurements, key=lambda m: (MODES.index(m.mode), m.workers))
    for item in ordered:
        stats = item.stats
        main = " **(main)**" if item.workers == report.main_workers else ""
        lines.append(
            f"| {item.mode}{main} | {item.rng_tasks} | {item.workers} "
            f"| {stats.mean:.1f} ± {stats.stdev:.1f} | {stats.p10:.1f}-{stats.p90:.1f} "
            f"| {_num(item.ceiling)} | {_num(item.ratio, 2)} "
            f"| {rng_rates_cell(item)} | {rng_sum_cell(item)} |"
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
        f"{rng_rates_note(report)}\n"
    )


def rng_rates_note(report: BenchReport) -> str:
    """Where the per-task rng rates come from, or why there are none."""
    url = report.settings.get("prometheus")
    if not url:
        why = report.settings.get("prometheus_note") or "no Prometheus"
        return f"No rng answers/s per task: {why}."
    checked = [
        item.rng_sum_agrees for item in report.measurements if item.rng_sum_agrees is not None
    ]
    if not checked:
        verdict = "no run had rates to compare."
    elif all(checked):
        verdict = f"all {len(checked)} runs with rates are."
    else:
        verdict = f"{checked.count(False)} of {len(checked)} runs with rates are off by more."
    return (
        f"rng answers/s per task: rate(dockercoins_rng_requests_total) from Prometheus "
        f"({url}) over each measured run (stretched into its warm-up to at least "
        f"{MIN_RNG_WINDOW:.0f} s); "
        f"each hash takes one rng answer, so their sum should be the hash rate within "
        f"{RNG_SUM_TOLERANCE:.0%}: {verdict}"
    )


# --- JSON ------------------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def delays_json(delays: Delays) -> dict[str, Any]:
    return {
        "worker": delays.worker,
        "rng": delays.rng,
        "hasher": delays.hasher,
        "rng_concurrency": delays.rng_concurrency,
        "worker_concurrency": delays.worker_concurrency,
    }


def measurement_json(item: Measurement) -> dict[str, Any]:
    """One measured point: tasks, the rate's statistics and samples, the ceiling, and each
    rng task's answers/s (null without Prometheus)."""
    return {
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
        "rng_rates": None
        if item.rng_rates is None
        else [
            {"label": rate.label, "instance": rate.instance, "rate": rate.rate}
            for rate in item.rng_rates
        ],
        "rng_rates_window": item.rng_window,
        "rng_sum_over_hash_rate": item.rng_sum_ratio,
    }


def to_json(report: BenchReport) -> dict[str, Any]:
    """A JSON-ready document (unbounded ceilings are null)."""
    return {
        "format": JSON_FORMAT,
        "main_workers": report.main_workers,
        "nodes": report.nodes,
        "delays": delays_json(report.delays),
        "settings": report.settings,
        "results": [
            {
                "mode": item.mode,
                **measurement_json(item),
                "measured_over_ceiling": item.ratio,
                "rng_sum_within_tolerance": item.rng_sum_agrees,
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
