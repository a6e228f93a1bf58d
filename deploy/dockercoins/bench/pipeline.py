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

import argparse
import asyncio
import json
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockercoins import ui
from dockercoins.errors import UserError
from dockercoins.local import Stack

RNG_CONCURRENCY = "4096"
STATS = re.compile(r"stats (\{.*\})")
STOPPED = re.compile(r"stopped after (\d+) loops")


def _concurrencies(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not values or any(value < 1 or value > 4096 for value in values):
        raise argparse.ArgumentTypeError("concurrencies must be between 1 and 4096")
    return values


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError("seconds must be between 0 and 3600")
    return value


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `bench pipeline`."""
    parser = subparsers.add_parser(
        "pipeline",
        help="hashes/second of one worker process with every delay at 0",
        description="Run redis-server, rng, hasher and one worker process on loopback with "
        "every delay at 0, at each worker concurrency, and print hashes/second and the "
        "latency of rng and hasher requests (mean, p99).",
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrencies,
        default=[1, 8, 32],
        metavar="N,N,...",
        help="WORKER_CONCURRENCY values to run (default 1,8,32)",
    )
    parser.add_argument(
        "--duration", type=_seconds, default=10.0, help="seconds measured per run (10)"
    )
    parser.add_argument("--warmup", type=_seconds, default=2.0, help="seconds before measuring (2)")
    parser.add_argument(
        "--compare-clients",
        action="store_true",
        help="also run in-process GET/POST loops with httpx and plain aiohttp",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=run)


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
    logs = child.logs()
    stats, stopped = STATS.findall(logs), STOPPED.findall(logs)
    if code != 0 or not stats or not stopped:
        raise UserError(f"the worker did not report its numbers (exit {code}): {child.log_path}")
    summary = json.loads(stats[-1])
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
        loops_total=int(stopped[-1]),
        redis_hashes=_read_hashes(redis_port) - before,
    )


# --- in-process client comparison -------------------------------------------------------------

LoopBody = Callable[[], Awaitable[None]]


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class ClientRate:
    loops_per_second: float
    cpu_us_per_loop: float


async def _drive(body: LoopBody, concurrency: int, warmup: float, duration: float) -> ClientRate:
    """Run `body` in `concurrency` tasks; loops per second over the measured window and
    the CPU time this process spent per loop."""
    counted = 0
    measuring = False
    stop = False

    async def one() -> None:
        nonlocal counted
        while not stop:
            await body()
            if measuring:
                counted += 1

    tasks = [asyncio.create_task(one()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    measuring = True
    started, cpu = time.monotonic(), _cpu_seconds()
    await asyncio.sleep(duration)
    measuring = False
    elapsed, cpu = time.monotonic() - started, _cpu_seconds() - cpu
    stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    return ClientRate(counted / max(elapsed, 1e-9), 1e6 * cpu / max(counted, 1))


async def _httpx_rate(
    urls: dict[str, str], concurrency: int, warmup: float, duration: float
) -> ClientRate:
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=10, trust_env=False) as client:

        async def body() -> None:
            data = (await client.get(urls["rng"])).content
            (await client.post(urls["hasher"], content=data)).raise_for_status()

        return await _drive(body, concurrency, warmup, duration)


async def _aiohttp_rate(
    urls: dict[str, str], concurrency: int, warmup: float, duration: float
) -> ClientRate:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def body() -> None:
            async with session.get(urls["rng"]) as answer:
                data = await answer.read()
            async with session.post(urls["hasher"], data=data) as answer:
                await answer.read()
                answer.raise_for_status()

        return await _drive(body, concurrency, warmup, duration)


def _run_async(coroutine: Awaitable[ClientRate]) -> ClientRate:
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)  # type: ignore[arg-type]


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


def run(args: argparse.Namespace) -> int:
    from dockercoins.host.ports import free_port
    from dockercoins.local import redis_server_binary

    redis_server_binary()
    concurrencies: list[int] = args.concurrency
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
                        warmup=args.warmup,
                        duration=args.duration,
                    )
                )
        if args.compare_clients:
            for name, rate in (
                ("httpx AsyncClient, keep-alive (in-process loop)", _httpx_rate),
                ("aiohttp, keep-alive, no rotation (in-process loop)", _aiohttp_rate),
            ):
                clients[name] = {}
                for concurrency in concurrencies:
                    with ui.step(f"{name.split(',')[0]}, concurrency {concurrency}"):
                        clients[name][concurrency] = _run_async(
                            rate(urls, concurrency, args.warmup, args.duration)
                        )
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        ui.result(
            json.dumps(
                {
                    "duration": args.duration,
                    "warmup": args.warmup,
                    "worker": [run.__dict__ for run in runs],
                    "clients": {
                        name: {str(c): r.__dict__ for c, r in rates.items()}
                        for name, rates in clients.items()
                    },
                },
                indent=2,
            )
        )
        return 0
    ui.result(
        f"Pipeline with every delay at 0, one worker process, {args.duration:g} s "
        f"measured after {args.warmup:g} s warm-up:"
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
    return 0
