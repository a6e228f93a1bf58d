"""`dockercoins bench pipeline`: how fast can one worker process mine with every delay at 0,
and what do its metrics cost?

Real redis-server, rng (RNG_DELAY=0, RNG_CONCURRENCY high, so it does not serialise) and
hasher (HASHER_DELAY=0) run as local processes on loopback, an rng and a hasher for each
metrics mode (METRICS=1 and METRICS=0 by default); for each concurrency and mode, a fresh
worker process (WORKER_DELAY=0, the same METRICS) mines against that mode's rng and hasher
until Redis counts its first hashes, then for warm-up + duration seconds. The window is read
at its two ends: with metrics on from the worker's /metrics (dockercoins_worker_hashes_total,
the upstream latency histogram), with metrics off from Redis' `hashes`; the worker's CPU
time from /proc in both. Both counts are hashes Redis confirmed, written every
FLUSH_INTERVAL seconds in both modes. With metrics on, the run also checks that the
worker's confirmed count equals what Redis counted.

--compare-clients adds, for the same servers and concurrencies, a GET-then-POST loop run in
this process with httpx (keep-alive) and with plain aiohttp keep-alive (no rotation), so
the worker's client choice can be checked against the alternatives on this machine.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dockercoins import ui
from dockercoins.bench.client_loops import ClientRate, aiohttp_rate, httpx_rate, run_async
from dockercoins.bench.metrics_page import HistogramWindow
from dockercoins.bench.pipeline_report import metrics_cost, print_tables
from dockercoins.bench.worker_probe import (
    Probe,
    latency_windows,
    read_hashes,
    wait_while_alive,
)
from dockercoins.errors import UserError
from dockercoins.host.ports import LOOPBACK
from dockercoins.local import Stack
from dockercoins.names import METRICS_PATH

RNG_CONCURRENCY = "4096"
FLUSH_INTERVAL = "0.05"  # seconds: the confirmed count lags the loops by at most this
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class WorkerRun:
    """One concurrency, metrics on or off: `rounds` worker processes, their windows pooled.
    The pipeline's CPU time is that of the worker, redis-server, rng and hasher. Latencies
    and the check (loops_total, worker_hashes = redis_hashes) are None with metrics off."""

    concurrency: int
    metrics: bool
    rounds: int
    hashes_per_second: float
    hashes_measured: int
    rng_mean_ms: float | None
    rng_p99_ms: float | None
    hasher_mean_ms: float | None
    hasher_p99_ms: float | None
    cpu_percent: float
    cpu_us_per_loop: float
    pipeline_cpu_us_per_loop: float
    loops_total: int | None
    worker_hashes: int | None
    redis_hashes: int | None


@dataclass(frozen=True)
class _Window:
    """What one worker process did in its measured window."""

    seconds: float
    hashes: int
    cpu: float
    pipeline_cpu: float
    latency: dict[str, HistogramWindow] | None
    check: tuple[int, int, int] | None  # loops, confirmed hashes, Redis' hashes


@dataclass(frozen=True)
class _Servers:
    urls: dict[str, str]
    pids: tuple[int, ...]


def _start_servers(stack: Stack, metrics: bool) -> _Servers:
    """An rng and a hasher with every delay at 0 and METRICS on or off."""
    from dockercoins.host.ports import free_port

    flag = "1" if metrics else "0"
    rng_port, hasher_port = free_port(), free_port()
    rng_env = {"RNG_DELAY": "0", "RNG_CONCURRENCY": RNG_CONCURRENCY, "METRICS": flag}
    rng = stack.start_service("rng", rng_port, rng_env, label=f"rng-metrics-{_mode(metrics)}")
    hasher_env = {"HASHER_DELAY": "0", "METRICS": flag}
    label = f"hasher-metrics-{_mode(metrics)}"
    hasher = stack.start_service("hasher", hasher_port, hasher_env, label=label)
    urls = {
        "rng": f"http://{LOOPBACK}:{rng_port}/32",
        "hasher": f"http://{LOOPBACK}:{hasher_port}/",
    }
    return _Servers(urls, (rng.pid, hasher.pid))


def _mode(metrics: bool) -> str:
    return "on" if metrics else "off"


def _run_worker(
    stack: Stack,
    *,
    urls: dict[str, str],
    others: tuple[int, ...],
    redis_port: int,
    concurrency: int,
    metrics: bool,
    warmup: float,
    duration: float,
) -> _Window:
    from dockercoins.host.ports import free_port

    port = free_port()
    env = {
        "RNG_URL": urls["rng"],
        "HASHER_URL": urls["hasher"],
        "REDIS_URL": f"redis://{LOOPBACK}:{redis_port}/0",
        "WORKER_DELAY": "0",
        "WORKER_CONCURRENCY": str(concurrency),
        "WORKER_FLUSH_INTERVAL": FLUSH_INTERVAL,
        "WORKER_HEARTBEAT": "",
        "METRICS": "1" if metrics else "0",
        "WORKER_METRICS_PORT": str(port),
        "LOG_LEVEL": "INFO",
    }
    label = f"worker-c{concurrency}-metrics-{_mode(metrics)}"
    before = read_hashes(redis_port)
    child = stack.start_service("worker", port, env, label=label)
    metrics_url = f"http://{LOOPBACK}:{port}{METRICS_PATH}" if metrics else None
    probe = Probe(child, metrics_url, redis_port, before, others)
    wait_while_alive(child, START_TIMEOUT, lambda: probe.redis_hashes() > 0, "mine")
    wait_while_alive(child, warmup)
    start = probe.read()
    wait_while_alive(child, duration)
    end = probe.read()
    check = probe.check() if metrics else None
    code = stack.stop_child(child)
    if code != 0:
        raise UserError(f"the worker exited with code {code}: {child.log_path}")
    return _Window(
        seconds=max(end.at - start.at, 1e-9),
        hashes=end.hashes - start.hashes,
        cpu=end.cpu - start.cpu,
        pipeline_cpu=end.pipeline_cpu - start.pipeline_cpu,
        latency=latency_windows(start, end),
        check=check,
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def _pooled(concurrency: int, metrics: bool, windows: list[_Window]) -> WorkerRun:
    """One row from the windows of every round: totals added, then divided."""
    seconds = sum(window.seconds for window in windows)
    hashes = sum(window.hashes for window in windows)
    cpu = sum(window.cpu for window in windows)
    pipeline_cpu = sum(window.pipeline_cpu for window in windows)
    latency = {
        service: HistogramWindow.pooled(
            [window.latency[service] for window in windows if window.latency]
        )
        for service in ("rng", "hasher")
    }
    checks = [window.check for window in windows if window.check]
    # The first round whose counts disagree, if any, else the last.
    check = next((c for c in checks if c[1] != c[2]), checks[-1]) if checks else None
    return WorkerRun(
        concurrency=concurrency,
        metrics=metrics,
        rounds=len(windows),
        hashes_per_second=hashes / seconds,
        hashes_measured=hashes,
        rng_mean_ms=_ms(latency["rng"].mean()),
        rng_p99_ms=_ms(latency["rng"].quantile(0.99)),
        hasher_mean_ms=_ms(latency["hasher"].mean()),
        hasher_p99_ms=_ms(latency["hasher"].quantile(0.99)),
        cpu_percent=100 * cpu / seconds,
        cpu_us_per_loop=1e6 * cpu / max(hashes, 1),
        pipeline_cpu_us_per_loop=1e6 * pipeline_cpu / max(hashes, 1),
        loops_total=check[0] if check else None,
        worker_hashes=check[1] if check else None,
        redis_hashes=check[2] if check else None,
    )


def run(
    *,
    concurrencies: list[int],
    metrics: list[bool],
    duration: float,
    warmup: float,
    compare_clients: bool,
    as_json: bool,
    repeat: int = 1,
) -> None:
    """Run the servers, `repeat` workers per concurrency and metrics mode, the modes in
    alternating order (on, off, off, on, ...: a drift of the machine's load falls on both),
    and the in-process client loops when `compare_clients`; then print the tables, or JSON
    when `as_json`."""
    from dockercoins.host.ports import free_port
    from dockercoins.local import redis_server_binary

    redis_server_binary()
    workdir = Path(tempfile.mkdtemp(prefix="dockercoins-bench-"))
    stack = Stack(workdir, log_to_files=True)
    runs: list[WorkerRun] = []
    clients: dict[str, dict[int, ClientRate]] = {}
    try:
        modes = ", ".join(_mode(on) for on in metrics)
        with ui.step(f"starting redis-server, rng and hasher (delays 0, metrics {modes})"):
            redis_port = free_port()
            redis = stack.start_redis(redis_port)
            servers = {on: _start_servers(stack, on) for on in metrics}
        for index, concurrency in enumerate(concurrencies):
            windows: dict[bool, list[_Window]] = {on: [] for on in metrics}
            for round_ in range(repeat):
                order = metrics if (index + round_) % 2 == 0 else metrics[::-1]
                for on in order:
                    title = f"worker, concurrency {concurrency}, metrics {_mode(on)}"
                    if repeat > 1:
                        title += f" (round {round_ + 1} of {repeat})"
                    with ui.step(title):
                        windows[on].append(
                            _run_worker(
                                stack,
                                urls=servers[on].urls,
                                others=(redis.pid, *servers[on].pids),
                                redis_port=redis_port,
                                concurrency=concurrency,
                                metrics=on,
                                warmup=warmup,
                                duration=duration,
                            )
                        )
            runs += [_pooled(concurrency, on, windows[on]) for on in metrics]
        if compare_clients:
            urls = (servers[False] if False in servers else servers[True]).urls
            for name, rate in (
                ("httpx AsyncClient, keep-alive (in-process loop)", httpx_rate),
                ("aiohttp, keep-alive, no rotation (in-process loop)", aiohttp_rate),
            ):
                clients[name] = {}
                for concurrency in concurrencies:
                    with ui.step(f"{name.split(',')[0]}, concurrency {concurrency}"):
                        clients[name][concurrency] = run_async(
                            rate(urls, concurrency, warmup, duration)
                        )
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    if as_json:
        ui.result(
            json.dumps(
                {
                    "duration": duration,
                    "warmup": warmup,
                    "repeat": repeat,
                    "flush_interval": float(FLUSH_INTERVAL),
                    "worker": [run.__dict__ for run in runs],
                    "metrics_cost": metrics_cost(runs),
                    "clients": {
                        name: {str(c): r.__dict__ for c, r in rates.items()}
                        for name, rates in clients.items()
                    },
                },
                indent=2,
            )
        )
        return
    print_tables(runs, clients, concurrencies, duration=duration, warmup=warmup)
