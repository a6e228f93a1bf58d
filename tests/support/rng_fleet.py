"""Two real rng processes on fake nodes, kept busy by a bounded load, scraped by a real
Prometheus: what the page's "rng answers per second" chart needs, on loopback."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.prometheus import PrometheusServer
from tests.support.servers import LOOPBACK, ServiceProcess

NODES = ("nodeA", "nodeB")


class RngLoad(threading.Thread):
    """Plays the workers: GET /8 from each rng in turn, then 0.02 s of rest; a bounded number
    of rounds (`seconds` / 0.02), or until stop()."""

    def __init__(self, urls: list[str], seconds: float = 90.0) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.rounds = int(seconds / 0.02)
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=2) as client:
            for _ in range(self.rounds):
                if self.done.wait(0.02):
                    return
                for url in self.urls:
                    with contextlib.suppress(httpx.HTTPError):  # a stopped rng: go on
                        client.get(url + "/8")

    def stop(self) -> None:
        self.done.set()
        self.join(5)


@dataclass
class RngFleet:
    prometheus: PrometheusServer
    rngs: list[ServiceProcess]


@contextlib.contextmanager
def scraped_rngs(
    workdir: Path, nodes: tuple[str, ...] = NODES, more_jobs: dict[str, list[str]] | None = None
) -> Iterator[RngFleet]:
    """One rng per name in `nodes` (DOCKERCOINS_NODE set to it, RNG_DELAY 0.01 s) under load,
    and Prometheus scraping them as job "rng" (and `more_jobs` too); everything stopped on
    exit, even on failure."""
    rngs = [
        ServiceProcess(
            name="rng",
            env={"DOCKERCOINS_NODE": node, "RNG_DELAY": "0.01"},
            log_path=workdir / f"rng-{node}.log",
        )
        for node in nodes
    ]
    jobs = {"rng": [f"{LOOPBACK}:{rng.port}" for rng in rngs], **(more_jobs or {})}
    prometheus = PrometheusServer(workdir=workdir, jobs=jobs)
    load = RngLoad([rng.url for rng in rngs])
    try:
        for rng in rngs:
            rng.start()
        prometheus.start()
        load.start()
        yield RngFleet(prometheus=prometheus, rngs=rngs)
    finally:
        if load.is_alive():
            load.stop()
        prometheus.stop()
        for rng in rngs:
            rng.stop()
