"""`dockercoins bench rng-modes`: is rng in global mode really faster, and by how much?

On the swarm DOCKER_HOST points at (else the lab's manager), with DockerCoins deployed:
for each mode (rng replicated with 1 task, rng global with 1 task per node) and each
worker count, scale, wait until every task runs, warm up, then read the `hashes` counter
from the web UI's /json about every second. Reports the steady rate next to the ceiling
of the delay model (bench.model), as a markdown table, JSON and a PNG (bench.report).
The services' mode and scale are put back as they were, also on Ctrl-C (bench.cluster).
"""

from __future__ import annotations

import ipaddress
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dockercoins import ui
from dockercoins.bench import cluster
from dockercoins.bench import model as bench_model
from dockercoins.bench.model import BenchReport
from dockercoins.bench.report import JSON_FILE, PNG_FILE, TABLE_FILE, markdown, write_outputs
from dockercoins.errors import UserError
from dockercoins.lab import state as lab_state
from dockercoins.names import GLOBAL, REPLICATED
from dockercoins.swarm import rates
from dockercoins.swarm.rates import Sample
from dockercoins.swarm.read import nodes

MAX_FAILED_READS = 10


@dataclass(frozen=True)
class Options:
    """A checked run: worker counts, seconds per phase, where to read and write."""

    workers: int
    counts: tuple[int, ...]
    duration: float
    main_duration: float
    warmup: float
    interval: float
    window: float
    timeout: float
    out: Path
    webui: str | None

    def duration_for(self, workers: int) -> float:
        return self.main_duration if workers == self.workers else self.duration


def webui_problem(url: str) -> str | None:
    """Why the benchmark must not read `url` (None: it may). Benchmark traffic goes to
    loopback or to the lab's own addresses, nowhere else."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not host:
        return "expected http://HOST:PORT"
    if host == "localhost":
        return None
    lab = lab_state.load()
    lab_hosts = {node.ip for node in lab.nodes} | {lab.host_ip} if lab else set()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and host not in lab_hosts:
        return "only loopback or the lab's node addresses are allowed here"
    return None


def find_webui(explicit: str | None) -> str:
    """The first web UI URL whose /json answers (loopback or lab addresses only)."""
    import httpx

    candidates = rates.webui_candidates(explicit)
    for url in candidates:
        problem = webui_problem(url)
        if problem:
            raise UserError(f"web UI {url!r}: {problem}")
        try:
            with httpx.Client(timeout=3.0) as http:
                rates.read_sample(http, url)
        except rates.read_errors():
            continue
        return url
    raise UserError(
        f"no web UI answers /json at {', '.join(candidates)}: is the lab's forwarder up "
        "(`dockercoins lab status`)? or give --webui URL"
    )


def wait_with_bar(seconds: float, bar: ui.ProgressBar, label: str, tick: float = 0.5) -> None:
    """The warm-up: wait `seconds`, redrawing the bar."""
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        bar.show(elapsed, f"{label} warm-up {elapsed:.0f}/{seconds:.0f} s")
        time.sleep(min(tick, seconds - elapsed))
    bar.done += seconds


def sample_counter(
    url: str, seconds: float, interval: float, bar: ui.ProgressBar, label: str
) -> list[Sample]:
    """Read /json every `interval` seconds for `seconds`, showing the rate so far."""

    def show(elapsed: float, samples: list[Sample]) -> None:
        rate = rates.hash_rate(samples)
        text = "" if rate is None else f" {rate:.1f} hashes/s"
        bar.show(elapsed, f"{label} measuring{text}")

    samples = rates.sample(url, seconds, interval, max_failures=MAX_FAILED_READS, on_read=show)
    bar.done += seconds
    return samples


def plan(options: Options, first_mode: str) -> list[tuple[str, int]]:
    """(mode, workers) in order: the current mode first, worker counts up, then the other
    mode with worker counts down (fewest changes of scale and one rng re-creation)."""
    second = GLOBAL if first_mode == REPLICATED else REPLICATED
    up = list(options.counts)
    return [(first_mode, w) for w in up] + [(second, w) for w in reversed(up)]


def load_average() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def run(client: Any, options: Options, command: str) -> None:
    """Measure every point of the plan with the command's one swarm client, put the
    services back, write the files and print the tables. `command` repeats the run."""
    services = cluster.require_deployed(client)
    delays = cluster.delays_of(services)
    url = find_webui(options.webui)
    schedulable = [node for node in nodes(client) if node.schedulable]
    original = cluster.read_state(client)
    original_rng = cluster.rng_spec(client)
    points = plan(options, original.rng_mode)
    per_point = [options.warmup + options.duration_for(w) for _, w in points]
    ui.info(
        f"bench rng-modes: {len(points)} runs on {len(schedulable)} nodes, "
        f"worker counts {', '.join(map(str, options.counts))}, "
        f"about {sum(per_point) / 60:.1f} min of measuring plus the changes of scale; "
        f"web UI {url}; now {original.describe()} (put back at the end, also on Ctrl-C)"
    )
    report = BenchReport(
        main_workers=options.workers,
        nodes=len(schedulable),
        delays=delays,
        settings={
            "command": command,
            "duration": options.duration,
            "main_duration": options.main_duration,
            "warmup": options.warmup,
            "interval": options.interval,
            "window": options.window,
            "webui": url,
            "nodes": [node.hostname for node in schedulable],
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "load_average_start": load_average(),
        },
    )
    started = time.monotonic()
    bar = ui.ProgressBar(sum(per_point))
    try:
        for index, (mode, workers) in enumerate(points, start=1):
            label = f"run {index}/{len(points)}: rng {mode}, worker x{workers}:"
            bar.end_line()
            ui.info(f"{label} setting up")
            cluster.apply(client, mode, 1, workers, options.timeout)
            rng_tasks = cluster.running_tasks(client, "rng")
            wait_with_bar(options.warmup, bar, label)
            samples = sample_counter(
                url, options.duration_for(workers), options.interval, bar, label
            )
            measurement = bench_model.measure(
                mode=mode,
                rng_tasks=rng_tasks,
                workers=workers,
                delays=delays,
                samples=samples,
                window=options.window,
            )
            report.measurements.append(measurement)
            bar.end_line()
            ui.info(
                f"{label} {measurement.stats.mean:.1f} hashes/s "
                f"(ceiling {measurement.ceiling:.1f}, rng tasks {rng_tasks})"
            )
    finally:
        bar.end_line()
        cluster.restore(client, original, original_rng, options.timeout)
    report.settings["load_average_end"] = load_average()
    report.settings["elapsed_seconds"] = round(time.monotonic() - started, 1)
    write_outputs(report, options.out)
    ui.result(markdown(report))
    ui.result(
        f"written: {options.out / TABLE_FILE}, {options.out / JSON_FILE}, {options.out / PNG_FILE}"
    )
