"""The worker's Prometheus metrics, served at GET /metrics by an aiohttp server on the
worker's own event loop (HOST, WORKER_METRICS_PORT): no thread of its own, and each scrape
sees the loops' state between two of their steps.

The counts are read from the worker's own state when scraped (the ledger, the outages, the
address books), so the mining loops pay nothing for them; only the request latencies, a
histogram, are observed per loop.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from spread_http import AddressBook
from worker_ledger import Ledger
from worker_outage import Outage

log = logging.getLogger("worker")

SERVICE = "worker"
WORKER_ID = "worker_id"  # the label naming the worker process (hostname-8 hex digits)
METRICS_PATH = "/metrics"
# Seconds per rng or hasher request: fine below 30 ms (delays 0, the pipeline benchmark),
# coarser up to WORKER_HTTP_TIMEOUT's default of 10 s (a long rng queue).
UPSTREAM_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def address_label(address: str, port: int) -> str:
    """IP:port, as Prometheus spells an instance ([IPv6]:port)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass
class MiningState:
    """What the collector reads besides the ledger: whether mining is paused at the cap."""

    paused: bool = False


class WorkerCollector:
    """dockercoins_worker_* counts, read from the worker's state at each scrape (in one step,
    so a page's confirmed seq and confirmed hashes always belong together)."""

    def __init__(
        self,
        worker_id: str,
        ledger: Ledger,
        failures: Mapping[str, Outage],
        upstreams: Mapping[str, AddressBook],
        state: MiningState,
    ) -> None:
        self.worker_id = worker_id
        self.ledger = ledger
        self.failures = failures
        self.upstreams = upstreams
        self.state = state

    def collect(self) -> Iterator[Metric]:
        ledger = self.ledger
        yield CounterMetricFamily(
            "dockercoins_worker_loops", "Mining loops done (hashes computed)", ledger.loops
        )
        yield CounterMetricFamily(
            "dockercoins_worker_hashes",
            "Hashes whose count Redis confirmed (the flush script: INCRBY hashes)",
            ledger.confirmed_hashes,
        )
        yield CounterMetricFamily(
            "dockercoins_worker_coins",
            "Coins whose write Redis confirmed (the flush script: HSET wallet)",
            ledger.confirmed_coins,
        )
        yield GaugeMetricFamily(
            "dockercoins_worker_pending_hashes",
            "Hashes computed and not yet confirmed by Redis (owed)",
            ledger.unconfirmed_hashes,
        )
        yield GaugeMetricFamily(
            "dockercoins_worker_max_owed_hashes",
            "WORKER_MAX_OWED_HASHES: mining pauses when this many hashes are owed to Redis",
            ledger.max_owed,
        )
        yield GaugeMetricFamily(
            "dockercoins_worker_mining_paused",
            "1 while mining is paused because the owed hashes reached the cap",
            int(self.state.paused),
        )
        label = [self.worker_id]
        confirmed = CounterMetricFamily(
            "dockercoins_worker_confirmed_hashes",
            "Hashes of the flushes Redis confirmed to this worker (applied, or already applied)",
            labels=[WORKER_ID],
        )
        confirmed.add_metric(label, ledger.confirmed_hashes)
        yield confirmed
        coins = CounterMetricFamily(
            "dockercoins_worker_confirmed_coins",
            "Coins of the flushes Redis confirmed to this worker",
            labels=[WORKER_ID],
        )
        coins.add_metric(label, ledger.confirmed_coins)
        yield coins
        seq = GaugeMetricFamily(
            "dockercoins_worker_confirmed_seq",
            "Sequence number of the last flush Redis confirmed to this worker (0: none yet)",
            labels=[WORKER_ID],
        )
        seq.add_metric(label, ledger.confirmed_seq)
        yield seq
        flushes = CounterMetricFamily(
            "dockercoins_worker_flushes",
            "Flushes Redis confirmed: applied when sent, or already applied (sent again "
            "after a lost reply, not applied twice)",
            labels=["result"],
        )
        flushes.add_metric(["applied"], ledger.applied)
        flushes.add_metric(["already_applied"], ledger.already_applied)
        yield flushes
        errors = CounterMetricFamily(
            "dockercoins_worker_errors",
            "Failed attempts, by kind (rng, hasher, redis, unexpected)",
            labels=["kind"],
        )
        for kind, outage in self.failures.items():
            errors.add_metric([kind], outage.failures)
        yield errors
        answered = CounterMetricFamily(
            "dockercoins_worker_upstream_requests",
            "Requests answered (HTTP 200), by service and the IP:port that answered",
            labels=["service", "address"],
        )
        for service, book in self.upstreams.items():
            for address, count in book.answered.items():
                answered.add_metric([service, address_label(address, book.target.port)], count)
        yield answered


class WorkerMetrics:
    """The registry (one per worker) and the latency histogram the loops observe."""

    def __init__(
        self,
        node: str,
        ledger: Ledger,
        failures: Mapping[str, Outage],
        upstreams: Mapping[str, AddressBook],
        *,
        worker_id: str,
        state: MiningState | None = None,
    ) -> None:
        self.state = state or MiningState()
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        instance = Info(
            "dockercoins_instance",
            "Which service this is, on which host and swarm node",
            registry=self.registry,
        )
        instance.info({"service": SERVICE, "hostname": socket.gethostname(), "node": node})
        self.registry.register(WorkerCollector(worker_id, ledger, failures, upstreams, self.state))
        upstream = Histogram(
            "dockercoins_worker_upstream_seconds",
            "Time of a request answered by rng or hasher, as the worker saw it",
            ["service"],
            buckets=UPSTREAM_BUCKETS,
            registry=self.registry,
        )
        self._rng = upstream.labels(service="rng")
        self._hasher = upstream.labels(service="hasher")

    def observe(self, rng_seconds: float, hasher_seconds: float) -> None:
        """One loop's request latencies."""
        self._rng.observe(rng_seconds)
        self._hasher.observe(hasher_seconds)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (CONTENT_TYPE_LATEST)."""
        return generate_latest(self.registry)


async def serve(metrics: WorkerMetrics, host: str, port: int) -> web.AppRunner | None:
    """Serve GET /metrics on host:port until the runner is cleaned up. None, with a warning,
    when the port cannot be had: the worker mines on without it."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get(METRICS_PATH, page)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        await runner.cleanup()
        log.warning("no /metrics: cannot listen on %s:%d: %s", host, port, error)
        return None
    log.info("metrics on http://%s:%d%s", host, port, METRICS_PATH)
    return runner
