"""hasher's Prometheus metrics, served at GET /metrics: bodies hashed, their bytes, the time
to answer, requests held now and refused for lack of room, and the instance's identity
(dockercoins_instance_info)."""

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

SERVICE = "hasher"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds: a fraction of a millisecond with HASHER_DELAY=0, about 0.1 s by default.
DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
)  # fmt: skip


class HasherMetrics:
    """One registry per app, so that several apps in one process (tests) do not collide."""

    def __init__(self, node: str, held: Callable[[], float] = lambda: 0) -> None:
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
            "dockercoins_hasher_requests",
            "Hash requests answered with a digest (POST /)",
            registry=self.registry,
        )
        self.bytes = Counter(
            "dockercoins_hasher_bytes", "Body bytes hashed", registry=self.registry
        )
        self.refused = Counter(
            "dockercoins_hasher_refused",
            "Hash requests refused with 503 because HASHER_MAX_BODIES were held already",
            registry=self.registry,
        )
        in_progress = Gauge(
            "dockercoins_hasher_requests_in_progress",
            "Hash requests held right now (at most HASHER_MAX_BODIES)",
            registry=self.registry,
        )
        in_progress.set_function(held)
        self.duration = Histogram(
            "dockercoins_hasher_request_duration_seconds",
            "Time from the start of a hash request to its answer (reading, hashing, delay)",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    def answered(self, size: int, seconds: float) -> None:
        """Count one digest of a `size`-byte body, answered in `seconds`."""
        self.requests.inc()
        self.bytes.inc(size)
        self.duration.observe(seconds)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (CONTENT_TYPE)."""
        return generate_latest(self.registry)
