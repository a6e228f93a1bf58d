"""The report of `bench scaling`: markdown tables, the JSON document and a PNG (hash rate
against k with the ceiling k x 10, and the cores each service used), written to the
output directory beside what `bench rng-modes` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dockercoins import ui
from dockercoins.bench import plot as bench_plot
from dockercoins.bench.lab_cpu import DAEMONS
from dockercoins.bench.report import (
    _finite,
    _num,
    delays_json,
    measurement_json,
    rng_rates_cell,
    rng_sum_cell,
)
from dockercoins.bench.scaling import ScalingPoint, ScalingReport, likely_limit
from dockercoins.errors import UserError

JSON_FORMAT = "dockercoins-bench-scaling/1"
TABLE_FILE = "scaling.md"
JSON_FILE = "scaling.json"
PNG_FILE = "scaling.png"
FILES = (TABLE_FILE, JSON_FILE, PNG_FILE)
# the services of the CPU table, in this order; anything else is added after them
CPU_ORDER = ("rng", "worker", "hasher", "redis", "webui", "prometheus", DAEMONS)


def _cpu_services(report: ScalingReport) -> list[str]:
    seen = {name for p in report.points if p.cpu for name in p.cpu.by_service()}
    return [name for name in CPU_ORDER if name in seen] + sorted(seen - set(CPU_ORDER))


def _met(point: ScalingPoint, target: float) -> str:
    met = point.meets(target)
    return "n/a" if met is None else ("yes" if met else "**no**")


def results_table(report: ScalingReport) -> str:
    """One row per k: the rate against the ceiling k x 10, the rng tasks' own rates."""
    lines = [
        "| k (rng nodes) | workers | hashes/s (mean ± stdev) | p10-p90 | ceiling k x "
        f"{report.delays.rng_concurrency / report.delays.rng:g} | measured/ceiling "
        f"| ≥ {report.target:g} | rng answers/s per task | rng sum / hash rate "
        "| rng / hasher latency (ms) | likely limit |",
        "|---:|---:|---:|---:|---:|---:|:---:|---|---:|---:|---|",
    ]
    for point in report.points:
        stats = point.measurement.stats
        latency = point.latency or {}
        latencies = "/".join(
            f"{latency[name] * 1000:.0f}" if name in latency else "-" for name in ("rng", "hasher")
        )
        lines.append(
            f"| {point.k} | {point.measurement.workers} "
            f"| {stats.mean:.1f} ± {stats.stdev:.1f} | {stats.p10:.1f}-{stats.p90:.1f} "
            f"| {_num(point.rng_ceiling)} | {_num(point.ratio, 2)} | {_met(point, report.target)} "
            f"| {rng_rates_cell(point.measurement)} | {rng_sum_cell(point.measurement)} "
            f"| {latencies} | {likely_limit(point, report.target, report.delays) or '-'} |"
        )
    return "\n".join(lines)


def cpu_table(report: ScalingReport) -> str:
    """Cores used during each measured run, per service (all its tasks), by the nodes'
    daemons, by the lab in all and by the whole host."""
    services = _cpu_services(report)
    if not services:
        note = report.settings.get("cpu_note") or "not measured"
        return f"No CPU per service: {note}."
    header = " | ".join(services)
    cpus = report.settings.get("cpus", "?")
    lines = [
        f"| k | {header} | lab | host busy (of {cpus}) | busiest node "
        "| CPU pressure (some) | rng's wait for a CPU per answer |",
        "|---:|" + "---:|" * (len(services) + 5),
    ]
    for point in report.points:
        if point.cpu is None:
            continue
        by_service = point.cpu.by_service()
        cells = " | ".join(f"{by_service.get(name, 0.0):.2f}" for name in services)
        by_node = point.cpu.by_node()
        busiest = max(by_node.items(), key=lambda item: item[1], default=("-", 0.0))
        pressure = point.cpu.pressure
        wait = point.rng_wait
        lines.append(
            f"| {point.k} | {cells} | {point.cpu.lab:.2f} | {point.cpu.host_busy:.2f} "
            f"| {busiest[0]} {busiest[1]:.2f} "
            f"| {'-' if pressure is None else f'{pressure:.0%}'} "
            f"| {'-' if wait is None else f'{wait * 1000:.1f} ms'} |"
        )
    return "\n".join(lines)


def summary(report: ScalingReport) -> str:
    """One line: where the target was met and where not."""
    met = [p.k for p in report.points if p.meets(report.target)]
    missed = [p for p in report.points if p.meets(report.target) is False]
    text = f"Target: at least {report.target:g} of the ceiling at every k. "
    if met:
        text += f"Met at k = {', '.join(map(str, met))}. "
    if missed:
        text += "Missed at " + ", ".join(f"k = {p.k} ({_num(p.ratio, 2)})" for p in missed) + "."
    return text.strip()


def markdown(report: ScalingReport) -> str:
    d = report.delays
    return (
        f"{results_table(report)}\n\n{summary(report)}\n\n"
        f"Cores used during each measured run (CPU seconds per second; `{DAEMONS}`: every "
        "node's dockerd, containerd and shims; CPU pressure: the share of the time some "
        "task on the host waited for a CPU; rng's wait: the run-queue wait of the rng "
        "processes per answer):\n\n"
        f"{cpu_table(report)}\n\n"
        f"rng global on the first k of {report.nodes} nodes (node label "
        f"{report.settings.get('label', '')}); workers = worker ceiling {report.headroom:g} "
        f"x the rng ceiling; delays worker {d.worker:g} s, rng {d.rng:g} s, hasher "
        f"{d.hasher:g} s; rng concurrency {d.rng_concurrency}, worker loops per task "
        f"{d.worker_concurrency}; {_num(report.settings.get('duration'), 0)} s measured per "
        f"k after {_num(report.settings.get('warmup'), 0)} s of warm-up.\n"
    )


def to_json(report: ScalingReport) -> dict[str, Any]:
    return {
        "format": JSON_FORMAT,
        "ks": list(report.ks),
        "headroom": report.headroom,
        "target": report.target,
        "nodes": report.nodes,
        "delays": delays_json(report.delays),
        "settings": report.settings,
        "results": [_point_json(point, report) for point in report.points],
    }


def _point_json(point: ScalingPoint, report: ScalingReport) -> dict[str, Any]:
    item = point.measurement
    cpu = point.cpu
    return {
        "k": point.k,
        "rng_nodes": list(point.nodes),
        **measurement_json(item),
        "rng_ceiling": _finite(point.rng_ceiling),
        "worker_ceiling": _finite(point.worker_ceiling),
        "measured_over_rng_ceiling": point.ratio,
        "meets_target": point.meets(report.target),
        "likely_limit": likely_limit(point, report.target, report.delays) or None,
        "upstream_latency_seconds": point.latency,
        "cpu": None
        if cpu is None
        else {
            "seconds": cpu.seconds,
            "cpus": cpu.cpus,
            "host_busy_cores": cpu.host_busy,
            "lab_cores": cpu.lab,
            "by_service": cpu.by_service(),
            "by_node": cpu.by_node(),
            "by_node_service": [
                {"node": node, "service": service, "cores": cores}
                for (node, service), cores in cpu.by_node_service.items()
            ],
            "waiting_by_service": cpu.waiting_by_service(),
            "pressure_some": cpu.pressure,
            "rng_wait_per_answer_seconds": point.rng_wait,
        },
        "load_average": list(point.load_average),
    }


def plot(report: ScalingReport, path: Path) -> None:
    """Two panels: hashes/s against k with the ceiling and the target line; the cores each
    service used at each k, stacked, with the host's busy cores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate, cores) = plt.subplots(1, 2, figsize=(13, 5), dpi=100)
    ks = [p.k for p in report.points]
    means = [p.measurement.stats.mean for p in report.points]
    rate.errorbar(
        ks,
        means,
        yerr=[
            [max(0.0, p.measurement.stats.mean - p.measurement.stats.p10) for p in report.points],
            [max(0.0, p.measurement.stats.p90 - p.measurement.stats.mean) for p in report.points],
        ],
        marker="o",
        capsize=4,
        color="tab:orange",
        label="measured (p10-p90)",
    )
    top = max(ks, default=1)
    grid = [x / 10 for x in range(0, top * 10 + 11)]
    per_task = report.delays.rng_concurrency / report.delays.rng if report.delays.rng > 0 else 0
    if per_task:
        rate.plot(
            grid, [x * per_task for x in grid], "--", color="tab:gray", label="ceiling k x rng rate"
        )
        rate.plot(
            grid,
            [x * per_task * report.target for x in grid],
            ":",
            color="tab:red",
            label=f"{report.target:g} x ceiling",
        )
    rate.set_xlabel("k: nodes running rng")
    rate.set_ylabel("hashes / second")
    rate.set_title("Hash rate against rng tasks (rng global on k nodes)")
    rate.set_xlim(0, top + 1)
    rate.set_ylim(bottom=0)
    rate.grid(alpha=0.3)
    rate.legend(fontsize=8, loc="upper left")

    services = _cpu_services(report)
    measured = [p for p in report.points if p.cpu is not None]
    if services and measured:
        bottom = [0.0] * len(measured)
        positions = [p.k for p in measured]
        for service in services:
            values = [p.cpu.by_service().get(service, 0.0) if p.cpu else 0.0 for p in measured]
            cores.bar(positions, values, bottom=bottom, width=0.8, label=service)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        cores.plot(
            positions,
            [p.cpu.host_busy if p.cpu else 0.0 for p in measured],
            "k^-",
            label="host busy (all processes)",
        )
        cpus = report.settings.get("cpus")
        if isinstance(cpus, int):
            cores.axhline(cpus, color="tab:red", linestyle=":", label=f"{cpus} CPUs")
        cores.legend(fontsize=8, loc="upper left")
    else:
        cores.text(0.5, 0.5, "no CPU per service measured", ha="center", va="center")
    cores.set_xlabel("k: nodes running rng")
    cores.set_ylabel("cores (CPU seconds / second)")
    cores.set_title("Where the CPU went during each run")
    cores.set_xlim(0, top + 1)
    cores.grid(alpha=0.3)

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    plt.close(figure)


def write_outputs(report: ScalingReport, out: Path) -> None:
    """TABLE_FILE, JSON_FILE and PNG_FILE in `out` (created); UserError when it cannot."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / TABLE_FILE).write_text(markdown(report))
        document = to_json(report)
        (out / JSON_FILE).write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
        if bench_plot.available():
            plot(report, out / PNG_FILE)
        else:
            ui.info(f"no {PNG_FILE}: matplotlib is missing (pip install 'dockercoins[bench]')")
    except OSError as error:
        raise UserError(f"cannot write the results to {out}: {error}") from error
