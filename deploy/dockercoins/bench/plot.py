"""The PNG of `bench rng-modes`: hash rate against workers for both rng modes with their
ceilings, and the rate over time of the main run. matplotlib (Agg) is imported lazily."""

from __future__ import annotations

import math
from pathlib import Path

from dockercoins.bench.model import BenchReport, rng_ceiling, worker_ceiling
from dockercoins.names import GLOBAL, MODES, REPLICATED
from dockercoins.swarm.rates import window_rates

COLOURS = {REPLICATED: "tab:blue", GLOBAL: "tab:orange"}


def _rng_tasks(report: BenchReport, mode: str) -> int:
    tasks = [m.rng_tasks for m in report.measurements if m.mode == mode]
    if tasks:
        return max(set(tasks), key=tasks.count)
    return 1 if mode == REPLICATED else report.nodes


def available() -> bool:
    """Is matplotlib installed (the `bench` extra)?"""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def plot(report: BenchReport, path: Path) -> None:
    """Write the two-panel PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_workers, over_time) = plt.subplots(1, 2, figsize=(13, 5), dpi=100)
    counts = report.worker_counts()
    top = max(counts, default=1)
    grid = [x / 10 for x in range(0, top * 10 + 11)]
    for mode in MODES:
        runs = sorted((m for m in report.measurements if m.mode == mode), key=lambda m: m.workers)
        colour = COLOURS[mode]
        tasks = _rng_tasks(report, mode)
        label = f"{mode} (rng x {tasks})"
        if runs:
            by_workers.errorbar(
                [m.workers for m in runs],
                [m.stats.mean for m in runs],
                yerr=[
                    [max(0.0, m.stats.mean - m.stats.p10) for m in runs],
                    [max(0.0, m.stats.p90 - m.stats.mean) for m in runs],
                ],
                marker="o",
                capsize=4,
                color=colour,
                label=f"{label}: measured (p10-p90)",
            )
        limits = [
            min(worker_ceiling(x, report.delays), rng_ceiling(tasks, report.delays)) for x in grid
        ]
        if all(math.isfinite(v) for v in limits):
            by_workers.plot(
                grid, limits, linestyle="--", color=colour, alpha=0.7, label=f"{label}: ceiling"
            )
    by_workers.set_xlabel("workers")
    by_workers.set_ylabel("hashes / second")
    by_workers.set_title("Steady hash rate against workers")
    by_workers.set_xlim(0, top + 1)
    by_workers.set_ylim(bottom=0)
    by_workers.grid(alpha=0.3)
    by_workers.legend(fontsize=8, loc="upper left")

    for mode in MODES:
        main = report.find(mode, report.main_workers)
        if main is None or len(main.samples) < 2:
            continue
        window = float(report.settings.get("window", 3.0))
        rates = window_rates(main.samples, window)
        colour = COLOURS[mode]
        over_time.plot(
            [t for t, _ in rates],
            [r for _, r in rates],
            marker=".",
            color=colour,
            label=f"{mode} (rng x {main.rng_tasks}), {window:g} s windows",
        )
        if math.isfinite(main.ceiling):
            over_time.axhline(main.ceiling, linestyle="--", color=colour, alpha=0.7)
    over_time.set_xlabel("seconds into the measurement (after warm-up)")
    over_time.set_ylabel("hashes / second")
    over_time.set_title(f"Main run: {report.main_workers} workers (dashed: ceilings)")
    over_time.set_ylim(bottom=0)
    over_time.grid(alpha=0.3)
    over_time.legend(fontsize=8, loc="lower right")

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    plt.close(figure)
