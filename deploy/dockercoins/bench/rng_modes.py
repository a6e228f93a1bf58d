"""`dockercoins bench rng-modes`: is rng in global mode really faster, and by how much?

On the swarm DOCKER_HOST points at (else the lab's manager), with DockerCoins deployed:
for each mode (rng replicated with 1 task, rng global with 1 task per node) and each
worker count, scale, wait until every task runs, warm up, then read the `hashes` counter
from the web UI's /json about every second, and, when Prometheus answers, each rng task's
answers/s over the run. Reports the steady rate next to the ceiling of the delay model
(bench.model), as a markdown table, JSON and a PNG (bench.report).
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
from dockercoins.bench.model import MIN_RNG_WINDOW, BenchReport
from dockercoins.bench.report import JSON_FILE, PNG_FILE, TABLE_FILE, markdown, write_outputs
from dockercoins.errors import UserError
from dockercoins.lab import state as lab_state
from dockercoins.names import GLOBAL, REPLICATED
from dockercoins.swarm import prometheus, rates
from dockercoins.swarm.prometheus import InstanceRate
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
    prometheus: str | None = None

    def duration_for(self, workers: int) -> float:
        return self.main_duration if workers == self.workers else self.duration

    def rng_window(self, workers: int) -> float:
        """Seconds of rng rates per run: the measured seconds, stretched into the warm-up up
        to MIN_RNG_WINDOW when they are fewer (a rate needs a few scrapes)."""
        duration = self.duration_for(workers)
        return max(duration, min(MIN_RNG_WINDOW, duration + self.warmup))


def url_problem(url: str) -> str | None:
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
        problem = url_problem(url)
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


def find_prometheus(explicit: str | None) -> tuple[str | None, str]:
    """(URL, "") of the Prometheus to ask for rng rates, or (None, why there is none): the
    benchmark runs without it. UserError only when the URL given does not answer."""
    if explicit and (problem := url_problem(explicit)):
        raise UserError(f"Prometheus {explicit!r}: {problem}")
    with prometheus.connection() as http:
        try:
            return prometheus.locate(explicit, http), ""
        except prometheus.Unavailable as why:
            if explicit:
                raise UserError(f"--prometheus: {why}") from None
            return None, str(why)


def rng_rates_of_run(url: str | None, window: float, end: float) -> list[InstanceRate] | None:
    """Each rng task's answers/s over the `window` seconds up to Unix time `end` (None
    without Prometheus, or when it did not answer)."""
    if url is None:
        return None
    found = prometheus.rng_rates(url, window, at=end)
    if found is None:
        ui.info(f"Prometheus at {url} did not answer: no rng rates for this run")
    return found


def describe_rng_rates(found: list[InstanceRate] | None, hash_rate: float) -> str:
    """What the run's line adds: "; rng answers/s 10.0 + 9.9 = 19.9 (0.99 of the hash
    rate)"; "" without rates."""
    if not found:
        return ""
    added = sum(item.rate for item in found)
    share = f" ({added / hash_rate:.2f} of the hash rate)" if hash_rate > 0 else ""
    parts = " + ".join(f"{item.rate:.1f}" for item in found)
    return f"; rng answers/s {parts} = {added:.1f}{share}"


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
    prometheus_url, no_prometheus = find_prometheus(options.prometheus)
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
    if prometheus_url:
        ui.info(f"rng answers/s per task from Prometheus at {prometheus_url}")
    else:
        ui.info(f"no rng answers/s per task: {no_prometheus} (the hash rate is measured anyway)")
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
            "prometheus": prometheus_url,
            **({"prometheus_note": no_prometheus} if no_prometheus else {}),
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
            rng_window = options.rng_window(workers)
            rng_rates = rng_rates_of_run(prometheus_url, rng_window, time.time())
            measurement = bench_model.measure(
                mode=mode,
                rng_tasks=rng_tasks,
                workers=workers,
                delays=delays,
                samples=samples,
                window=options.window,
                rng_rates=rng_rates,
                rng_window=rng_window,
            )
            report.measurements.append(measurement)
            bar.end_line()
            ui.info(
                f"{label} {measurement.stats.mean:.1f} hashes/s "
                f"(ceiling {measurement.ceiling:.1f}, rng tasks {rng_tasks})"
                + describe_rng_rates(rng_rates, measurement.stats.mean)
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
