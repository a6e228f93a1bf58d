"""rng's Prometheus metrics, served at GET /metrics: answers and bytes served, requests
waiting their turn at the gate and how long they waited, requests refused with the queue
full, and the instance's identity (dockercoins_instance_info)."""

from __future__ import annotations

import socket
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

SERVICE = "rng"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds: from a fraction of a millisecond (nothing queued) to a minute (a long queue
# behind RNG_DELAY and RNG_CONCURRENCY 1).
WAIT_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)  # fmt: skip


class RngMetrics:
    """One registry per app, so that several apps in one process (tests) do not collide.

    The gauges are read from the gate when scraped: nothing to update per request."""

    def __init__(
        self, node: str, waiting: Callable[[], float], active: Callable[[], float]
    ) -> None:
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
        self.requests = Counter(
            "dockercoins_rng_requests",
            "Random-byte requests answered (GET /<n> with a valid n)",
            registry=self.registry,
        )
        self.bytes = Counter("dockercoins_rng_bytes", "Random bytes served", registry=self.registry)
        self.refused = Counter(
            "dockercoins_rng_refused",
            "Random-byte requests refused with 503 because the queue was full (RNG_MAX_WAITING)",
            registry=self.registry,
        )
        self.wait = Histogram(
            "dockercoins_rng_wait_seconds",
            "Time a request waited for its turn at the gate (RNG_CONCURRENCY) before its answer",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        queue = Gauge(
            "dockercoins_rng_queue_length",
            "Requests waiting their turn at the gate right now",
            registry=self.registry,
        )
        queue.set_function(waiting)
        serving = Gauge(
            "dockercoins_rng_active_requests",
            "Requests holding a turn at the gate right now (at most RNG_CONCURRENCY)",
            registry=self.registry,
        )
        serving.set_function(active)

    def answered(self, size: int, waited: float) -> None:
        """Count one answer of `size` bytes that waited `waited` seconds for the gate."""
        self.requests.inc()
        self.bytes.inc(size)
        self.wait.observe(waited)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (CONTENT_TYPE)."""
        return generate_latest(self.registry)
