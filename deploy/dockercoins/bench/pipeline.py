"""`dockercoins bench pipeline`: how fast can one worker process mine with every delay at 0?

Real redis-server, rng (RNG_DELAY=0, RNG_CONCURRENCY high, so it does not serialise) and
hasher (HASHER_DELAY=0) run as local processes on loopback; for each concurrency a fresh
worker process (WORKER_DELAY=0, WORKER_STATS=1) mines for warm-up + duration seconds, then
gets SIGTERM and logs its own numbers: loops and request latencies over the measured
window. The table shows hashes/second and rng/hasher latency (mean, p99), and checks that
Redis counted exactly the loops the worker reported.

--compare-clients adds, for the same servers and concurrencies, a GET-then-POST loop run in
this process with httpx (keep-alive) and with plain aiohttp keep-alive (no rotation), so
the worker's client choice can be checked against the alternatives on this machine.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockercoins import ui
from dockercoins.bench.client_loops import ClientRate, aiohttp_rate, httpx_rate, run_async
from dockercoins.errors import UserError
from dockercoins.local import Stack

RNG_CONCURRENCY = "4096"
STATS = re.compile(r"stats (\{.*\})")
STOPPED = re.compile(r"stopped after (\d+) loops")


@dataclass(frozen=True)
class WorkerRun:
    concurrency: int
    hashes_per_second: float
    loops_measured: int
    rng_mean_ms: float
    rng_p99_ms: float
    hasher_mean_ms: float
    hasher_p99_ms: float
    cpu_percent: float
    cpu_us_per_loop: float
    loops_total: int
    redis_hashes: int


def worker_report(logs: str) -> tuple[dict[str, Any], int] | None:
    """What a worker run with WORKER_STATS=1 logged as it stopped: its last `stats {...}`
    line (JSON: loops, hashes_per_second, rng/hasher latency, CPU) and the count of its
    last `stopped after N loops` line. None when either line is missing."""
    stats, stopped = STATS.findall(logs), STOPPED.findall(logs)
    if not stats or not stopped:
        return None
    summary: dict[str, Any] = json.loads(stats[-1])
    return summary, int(stopped[-1])


def _read_hashes(port: int) -> int:
    import redis

    db = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        return int(db.get("hashes") or 0)
    finally:
        db.close()


def _run_worker(
    stack: Stack,
    *,
    urls: dict[str, str],
    redis_port: int,
    concurrency: int,
    warmup: float,
    duration: float,
) -> WorkerRun:
    before = _read_hashes(redis_port)
    child = stack.start_service(
        "worker",
        0,
        {
            "RNG_URL": urls["rng"],
            "HASHER_URL": urls["hasher"],
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "WORKER_DELAY": "0",
            "WORKER_CONCURRENCY": str(concurrency),
            "WORKER_STATS": "1",
            "WORKER_STATS_WARMUP": str(warmup),
            "WORKER_HEARTBEAT": "",
            "LOG_LEVEL": "INFO",
        },
        label=f"worker-c{concurrency}",
    )
    deadline = time.monotonic() + warmup + duration
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise UserError(
                f"the worker exited early (code {child.proc.returncode}): {child.log_path}"
            )
        time.sleep(0.1)
    code = stack.stop_child(child)
    report = worker_report(child.logs())
    if code != 0 or report is None:
        raise UserError(f"the worker did not report its numbers (exit {code}): {child.log_path}")
    summary, loops_total = report
    return WorkerRun(
        concurrency=concurrency,
        hashes_per_second=float(summary["hashes_per_second"]),
        loops_measured=int(summary["loops"]),
        rng_mean_ms=float(summary["rng"]["mean_ms"]),
        rng_p99_ms=float(summary["rng"]["p99_ms"]),
        hasher_mean_ms=float(summary["hasher"]["mean_ms"]),
        hasher_p99_ms=float(summary["hasher"]["p99_ms"]),
        cpu_percent=float(summary["cpu_percent"]),
        cpu_us_per_loop=float(summary["cpu_us_per_loop"]),
        loops_total=loops_total,
        redis_hashes=_read_hashes(redis_port) - before,
    )


# --- the command ------------------------------------------------------------------------------


def _worker_table(runs: list[WorkerRun]) -> list[str]:
    lines = [
        "| worker concurrency | hashes/s | rng mean ms | rng p99 ms | hasher mean ms "
        "| hasher p99 ms | worker CPU % | worker CPU µs/loop | loops = Redis hashes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for run in runs:
        same = (
            "yes"
            if run.loops_total == run.redis_hashes
            else (f"NO ({run.loops_total} vs {run.redis_hashes})")
        )
        lines.append(
            f"| {run.concurrency} | {run.hashes_per_second:,.0f} | {run.rng_mean_ms:.2f} "
            f"| {run.rng_p99_ms:.2f} | {run.hasher_mean_ms:.2f} | {run.hasher_p99_ms:.2f} "
            f"| {run.cpu_percent:.0f} | {run.cpu_us_per_loop:.0f} | {same} |"
        )
    return lines


def _client_table(concurrencies: list[int], rows: dict[str, dict[int, ClientRate]]) -> list[str]:
    header = "| client | " + " | ".join(f"conc {c}" for c in concurrencies) + " |"
    lines = [header, "|---|" + "---:|" * len(concurrencies)]
    for name, rates in rows.items():
        cells = " | ".join(
            f"{rates[c].loops_per_second:,.0f} ({rates[c].cpu_us_per_loop:.0f} µs)"
            for c in concurrencies
        )
        lines.append(f"| {name} | {cells} |")
    return lines


def run(
    *,
    concurrencies: list[int],
    duration: float,
    warmup: float,
    compare_clients: bool,
    as_json: bool,
) -> None:
    """Run the servers, a worker per concurrency (and the in-process client loops when
    `compare_clients`), then print the tables, or JSON when `as_json`."""
    from dockercoins.host.ports import free_port
    from dockercoins.local import redis_server_binary

    redis_server_binary()
    workdir = Path(tempfile.mkdtemp(prefix="dockercoins-bench-"))
    stack = Stack(workdir, log_to_files=True)
    runs: list[WorkerRun] = []
    clients: dict[str, dict[int, ClientRate]] = {}
    try:
        with ui.step("starting redis-server, rng and hasher (delays 0)"):
            redis_port = free_port()
            stack.start_redis(redis_port)
            rng_port, hasher_port = free_port(), free_port()
            stack.start_service(
                "rng", rng_port, {"RNG_DELAY": "0", "RNG_CONCURRENCY": RNG_CONCURRENCY}
            )
            stack.start_service("hasher", hasher_port, {"HASHER_DELAY": "0"})
        urls = {
            "rng": f"http://127.0.0.1:{rng_port}/32",
            "hasher": f"http://127.0.0.1:{hasher_port}/",
        }
        for concurrency in concurrencies:
            with ui.step(f"worker, concurrency {concurrency}"):
                runs.append(
                    _run_worker(
                        stack,
                        urls=urls,
                        redis_port=redis_port,
                        concurrency=concurrency,
                        warmup=warmup,
                        duration=duration,
                    )
                )
        if compare_clients:
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
                    "worker": [run.__dict__ for run in runs],
                    "clients": {
                        name: {str(c): r.__dict__ for c, r in rates.items()}
                        for name, rates in clients.items()
                    },
                },
                indent=2,
            )
        )
        return
    ui.result(
        f"Pipeline with every delay at 0, one worker process, {duration:g} s "
        f"measured after {warmup:g} s warm-up:"
    )
    ui.result("")
    for line in _worker_table(runs):
        ui.result(line)
    if clients:
        worker_row = {
            "the worker (aiohttp, rotation, Redis; own process)": {
                run.concurrency: ClientRate(run.hashes_per_second, run.cpu_us_per_loop)
                for run in runs
            }
        }
        ui.result("")
        ui.result("GET rng then POST hasher, loops/s (client CPU per loop):")
        ui.result("")
        for line in _client_table(concurrencies, {**worker_row, **clients}):
            ui.result(line)
