"""rng, hasher and webui as real uvicorn servers under 500 concurrent clients for 30 s each.

Each run is bounded (a fixed client count and a fixed deadline, after which the clients are
cancelled). While it runs a separate probe loop asks the health route (GET /, the images'
HEALTHCHECK) and records every failure; afterwards the process must still be running, its
peak memory (VmHWM from /proc/PID/status) under a bound, and every answer one of the statuses
the service may give under load. rng and hasher must shed what they cannot hold with 503 and
Retry-After, so their queues stay at their caps instead of growing.

Peak RSS measured on a 2-CPU machine: about 53 MiB idle for each; under this load rng
61 MiB, hasher 78-80 MiB, webui 70 MiB. The bounds (RSS_BOUND_MIB) leave about 60 % headroom;
README.md's Tests section says the same. No assertion here is about time.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from dockercoins.bench.metrics_page import MetricsPage

from tests.support.servers import RedisServer, ServiceProcess

StartService = Callable[..., ServiceProcess]

CLIENTS = 500
DURATION = 30.0  # seconds of load per service
REQUEST_TIMEOUT = 20.0  # one request; rng's full queue drains in about 10 s
PROBE_TIMEOUT = 10.0  # one health probe: a failure is recorded past it
PROBE_PAUSE = 0.25  # between two probes
# Peak resident memory allowed, MiB (measured peaks 61, 80 and 70: see the module docstring).
RSS_BOUND_MIB = {"rng": 100, "hasher": 128, "webui": 112}


@dataclass
class Target:
    """What the load asks for and what the probe loop watches."""

    method: str
    paths: tuple[str, ...]  # client n asks for paths[n % len(paths)]
    bodies: tuple[bytes | None, ...] = (None,)  # client n sends bodies[n % len(bodies)]
    health_status: int = 200  # GET / answers this (webui redirects)
    gauge: str | None = None  # a /metrics gauge that must stay within `gauge_cap`
    gauge_cap: float = 0.0


@dataclass
class Report:
    """What one bounded run saw."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    retry_after: collections.Counter[str] = field(default_factory=collections.Counter)
    cut: int = 0  # requests still in flight at the deadline, cancelled
    probes: int = 0
    probe_failures: list[str] = field(default_factory=list)
    gauge_max: float = 0.0
    rss_samples_kib: list[int] = field(default_factory=list)
    peak_kib: int = 0  # VmHWM at the end
    returncode: int | None = None

    def describe(self) -> str:
        return (
            f"statuses {dict(self.statuses)}, client errors {dict(self.errors)}, "
            f"Retry-After {dict(self.retry_after)}, cut at the deadline {self.cut}, "
            f"probes {self.probes} ({len(self.probe_failures)} failed), gauge max "
            f"{self.gauge_max}, peak RSS {self.peak_kib / 1024:.1f} MiB (sampled: "
            f"{max(self.rss_samples_kib, default=0) / 1024:.1f} MiB)"
        )


def proc_status_kib(pid: int, key: str) -> int | None:
    """A `kB` line of /proc/PID/status (VmRSS, VmHWM); None once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None  # a zombie has no memory lines


async def run_load(service: ServiceProcess, target: Target) -> Report:
    """CLIENTS clients, each sending one request after another until DURATION has passed,
    and the probe loop beside them; every client is cancelled at the deadline."""
    assert service.proc is not None
    pid = service.proc.pid
    report = Report()
    deadline = time.monotonic() + DURATION
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)

    async def client(session: aiohttp.ClientSession, number: int) -> None:
        path = target.paths[number % len(target.paths)]
        body = target.bodies[number % len(target.bodies)]
        while time.monotonic() < deadline:
            try:
                async with session.request(
                    target.method, service.url + path, data=body, allow_redirects=False
                ) as answer:
                    await answer.read()
                    report.statuses[answer.status] += 1
                    if answer.status == 503:
                        report.retry_after[answer.headers.get("Retry-After", "(none)")] += 1
            except (aiohttp.ClientError, TimeoutError) as error:
                report.errors[type(error).__name__] += 1
                await asyncio.sleep(0.05)  # a refused connection must not spin

    async def probe(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            report.probes += 1
            try:
                async with session.get(service.url + "/", allow_redirects=False) as answer:
                    await answer.read()
                    if answer.status != target.health_status:
                        report.probe_failures.append(f"GET / answered {answer.status}")
                if target.gauge is not None:
                    async with session.get(service.url + "/metrics") as answer:
                        page = MetricsPage.parse(await answer.text())
                        report.gauge_max = max(report.gauge_max, page.value(target.gauge))
            except (aiohttp.ClientError, TimeoutError) as error:
                report.probe_failures.append(f"{type(error).__name__}: {error}")
            rss = proc_status_kib(pid, "VmRSS")
            if rss is None:
                report.probe_failures.append("the process is gone")
                return
            report.rss_samples_kib.append(rss)
            await asyncio.sleep(PROBE_PAUSE)

    load_connector = aiohttp.TCPConnector(limit=CLIENTS)
    probe_timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
    async with (
        aiohttp.ClientSession(connector=load_connector, timeout=timeout) as load,
        aiohttp.ClientSession(timeout=probe_timeout) as probing,
    ):
        clients = [asyncio.create_task(client(load, n)) for n in range(CLIENTS)]
        prober = asyncio.create_task(probe(probing))
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        await prober  # its last probe started before the deadline: bounded by PROBE_TIMEOUT
        for task in clients:
            if not task.done():
                task.cancel()
                report.cut += 1
        for outcome in await asyncio.gather(*clients, return_exceptions=True):
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, asyncio.CancelledError
            ):
                report.errors[f"client failed: {outcome!r}"] += 1
    report.returncode = service.proc.poll()
    report.peak_kib = proc_status_kib(pid, "VmHWM") or 0
    return report


def check_survived(
    service: ServiceProcess, report: Report, name: str, errors: frozenset[str] = frozenset()
) -> None:
    """No crash, the health route answered every probe, memory under its bound; the clients
    saw no error but a timeout and `errors`."""
    print(f"\n{name} under {CLIENTS} clients for {DURATION:g} s: {report.describe()}")
    assert report.returncode is None, f"{name} exited with {report.returncode}: {service.logs()}"
    assert report.probes > 0 and report.peak_kib > 0
    assert report.probe_failures == [], report.describe()
    assert report.peak_kib < RSS_BOUND_MIB[name] * 1024, report.describe()
    logs = service.logs()
    assert "Traceback" not in logs, logs[-4000:]
    assert sum(report.statuses.values()) > 0, report.describe()
    # A request may wait past REQUEST_TIMEOUT at the back of a busy queue.
    assert set(report.errors) <= {"TimeoutError", *errors}, report.describe()


def check_shed(report: Report, cap: float) -> None:
    """Only 200 and 503; every 503 says when to come back; the gauge stayed at its cap."""
    assert set(report.statuses) <= {200, 503}, report.describe()
    assert report.statuses[200] > 0, report.describe()
    assert report.statuses[503] > 0, report.describe()  # 500 clients are more than it holds
    assert "(none)" not in report.retry_after, report.describe()
    assert all(1 <= int(value) <= 60 for value in report.retry_after), report.describe()
    assert 0 < report.gauge_max <= cap, report.describe()


def test_rng_sheds_with_503_and_keeps_its_health_route(start_service: StartService) -> None:
    """Default settings: 0.1 s per answer, one at a time, at most 100 waiting."""
    rng = start_service("rng")
    target = Target("GET", ("/32",), gauge="dockercoins_rng_queue_length", gauge_cap=100)
    report = asyncio.run(run_load(rng, target))
    check_survived(rng, report, "rng")
    check_shed(report, 100)


def test_hasher_sheds_with_503_and_keeps_its_health_route(start_service: StartService) -> None:
    """Default settings: 0.1 s per answer, at most 256 held; a tenth of the clients send
    1 MiB bodies (the most it takes), the others 32 bytes like the worker."""
    hasher = start_service("hasher")
    bodies = (b"\x5a" * 1048576, *([b"\x17" * 32] * 9))
    gauge = "dockercoins_hasher_requests_in_progress"
    target = Target("POST", ("/",), bodies=bodies, gauge=gauge, gauge_cap=256)
    report = asyncio.run(run_load(hasher, target))
    # A refusal closes the connection with the body unread: a client still sending its
    # 1 MiB may see the connection reset instead of the 503.
    check_survived(
        hasher, report, "hasher", frozenset({"ClientOSError", "ServerDisconnectedError"})
    )
    check_shed(report, 256)


def test_webui_answers_json_and_ledger_and_keeps_its_health_route(
    start_service: StartService, redis_server: RedisServer
) -> None:
    webui = start_service("webui", REDIS_URL=redis_server.url)
    target = Target("GET", ("/json", "/ledger"), health_status=302)
    report = asyncio.run(run_load(webui, target))
    check_survived(webui, report, "webui")
    assert set(report.statuses) <= {200, 503}, report.describe()
    assert report.statuses[200] > 0, report.describe()
    # Redis was there all along: a 503 may only say that webui itself was busy.
    assert "(none)" not in report.retry_after, report.describe()
    assert "redis unreachable" not in webui.logs()
