"""What `dockercoins bench pipeline` prints: the worker's table, the cost of its metrics
(the same runs with metrics on and off) and the client comparison."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockercoins import ui
from dockercoins.bench.client_loops import ClientRate

if TYPE_CHECKING:
    from dockercoins.bench.pipeline import WorkerRun


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _check(run: WorkerRun) -> str:
    if run.worker_hashes is None:
        return "-"
    if run.worker_hashes == run.redis_hashes:
        return "yes"
    return f"NO ({run.worker_hashes} vs {run.redis_hashes})"


def main_runs(runs: list[WorkerRun]) -> list[WorkerRun]:
    """The runs the worker's table shows: those with metrics on, or all if there are none."""
    return [run for run in runs if run.metrics] or runs


def worker_table(runs: list[WorkerRun]) -> list[str]:
    lines = [
        "| worker concurrency | hashes/s | rng mean ms | rng p99 ms | hasher mean ms "
        "| hasher p99 ms | worker CPU % | worker CPU µs/loop | worker hashes = Redis hashes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run.concurrency} | {run.hashes_per_second:,.0f} | {_ms(run.rng_mean_ms)} "
            f"| {_ms(run.rng_p99_ms)} | {_ms(run.hasher_mean_ms)} | {_ms(run.hasher_p99_ms)} "
            f"| {run.cpu_percent:.0f} | {run.cpu_us_per_loop:.0f} | {_check(run)} |"
        )
    return lines


def metrics_cost(runs: list[WorkerRun]) -> list[dict[str, float]]:
    """Per concurrency run both ways: hashes/s with metrics on and off, the ratio of the
    rates (on / off), and the CPU time per loop of the worker and of the whole pipeline."""
    cost: list[dict[str, float]] = []
    for on in (run for run in runs if run.metrics):
        off = next((r for r in runs if not r.metrics and r.concurrency == on.concurrency), None)
        if off is None:
            continue
        cost.append(
            {
                "concurrency": on.concurrency,
                "hashes_per_second_on": round(on.hashes_per_second, 1),
                "hashes_per_second_off": round(off.hashes_per_second, 1),
                "ratio": round(on.hashes_per_second / max(off.hashes_per_second, 1e-9), 3),
                "cpu_us_per_loop_on": round(on.cpu_us_per_loop, 1),
                "cpu_us_per_loop_off": round(off.cpu_us_per_loop, 1),
                "pipeline_cpu_us_per_loop_on": round(on.pipeline_cpu_us_per_loop, 1),
                "pipeline_cpu_us_per_loop_off": round(off.pipeline_cpu_us_per_loop, 1),
            }
        )
    return cost


def cost_table(cost: list[dict[str, float]]) -> list[str]:
    lines = [
        "| worker concurrency | hashes/s, metrics on | hashes/s, metrics off | on / off "
        "| worker CPU µs/loop, on | worker CPU µs/loop, off "
        "| pipeline CPU µs/loop, on | pipeline CPU µs/loop, off |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in cost:
        lines.append(
            f"| {row['concurrency']:.0f} | {row['hashes_per_second_on']:,.0f} "
            f"| {row['hashes_per_second_off']:,.0f} | {row['ratio']:.3f} "
            f"| {row['cpu_us_per_loop_on']:.0f} | {row['cpu_us_per_loop_off']:.0f} "
            f"| {row['pipeline_cpu_us_per_loop_on']:.0f} "
            f"| {row['pipeline_cpu_us_per_loop_off']:.0f} |"
        )
    return lines


def client_table(concurrencies: list[int], rows: dict[str, dict[int, ClientRate]]) -> list[str]:
    header = "| client | " + " | ".join(f"conc {c}" for c in concurrencies) + " |"
    lines = [header, "|---|" + "---:|" * len(concurrencies)]
    for name, rates in rows.items():
        cells = " | ".join(
            f"{rates[c].loops_per_second:,.0f} ({rates[c].cpu_us_per_loop:.0f} µs)"
            for c in concurrencies
        )
        lines.append(f"| {name} | {cells} |")
    return lines


def print_tables(
    runs: list[WorkerRun],
    clients: dict[str, dict[int, ClientRate]],
    concurrencies: list[int],
    *,
    duration: float,
    warmup: float,
) -> None:
    """The tables, separated by a blank line and a title each, on stdout."""
    shown = main_runs(runs)
    rounds = f" (x {shown[0].rounds} runs, pooled)" if shown[0].rounds > 1 else ""
    ui.result(
        f"Pipeline with every delay at 0, one worker process, {duration:g} s "
        f"measured after {warmup:g} s warm-up{rounds}"
        + (", metrics on (numbers from the worker's /metrics):" if shown[0].metrics else ":")
    )
    ui.result("")
    for line in worker_table(shown):
        ui.result(line)
    cost = metrics_cost(runs)
    if cost:
        ui.result("")
        ui.result(
            "Cost of the metrics: the same runs with METRICS=1 and METRICS=0 (worker, rng and "
            "hasher); the pipeline's CPU is that of all four processes:"
        )
        ui.result("")
        for line in cost_table(cost):
            ui.result(line)
    if clients:
        bare = [run for run in runs if not run.metrics] or runs
        worker_row = {
            "the worker (aiohttp, rotation, Redis; own process)": {
                run.concurrency: ClientRate(run.hashes_per_second, run.cpu_us_per_loop)
                for run in bare
            }
        }
        ui.result("")
        ui.result("GET rng then POST hasher, loops/s (client CPU per loop):")
        ui.result("")
        for line in client_table(concurrencies, {**worker_row, **clients}):
            ui.result(line)
