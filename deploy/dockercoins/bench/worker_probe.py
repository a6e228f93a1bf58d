"""How `bench pipeline` reads one worker process while it mines: its confirmed hashes (from
its /metrics, or from Redis when its metrics are off), the CPU time it and the rest of the
pipeline used (from /proc), and its request latencies (from its histogram)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockercoins.bench.metrics_page import HistogramWindow, MetricsPage, MetricsUnreadable
from dockercoins.errors import UserError
from dockercoins.host.ports import LOOPBACK
from dockercoins.local import Child

HASHES = "dockercoins_worker_hashes_total"
LOOPS = "dockercoins_worker_loops_total"
UPSTREAM = "dockercoins_worker_upstream_seconds"


def read_hashes(port: int) -> int:
    """Redis' `hashes` on LOOPBACK:port."""
    import redis

    db = redis.Redis(host=LOOPBACK, port=port, socket_timeout=5)
    try:
        return int(db.get("hashes") or 0)
    finally:
        db.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_while_alive(
    child: Child, seconds: float, until: Callable[[], bool] | None = None, what: str = ""
) -> None:
    """Sleep `seconds` (or until `until()` holds: UserError after `seconds`); UserError
    as soon as the worker exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise UserError(
                f"the worker exited early (code {child.proc.returncode}): {child.log_path}"
            )
        if until is not None and until():
            return
        time.sleep(0.05)
    if until is not None:
        raise UserError(f"the worker did not {what} within {seconds:g} s: {child.log_path}")


@dataclass(frozen=True)
class Reading:
    """One end of the measured window."""

    at: float
    cpu: float  # the worker's
    pipeline_cpu: float  # the worker's, and that of every process in `others`
    hashes: int
    page: MetricsPage | None


class Probe:
    """Reads one worker: its confirmed hashes, its CPU time and (metrics on) its /metrics.
    `others` are the pids of the rest of the pipeline (redis-server, rng, hasher)."""

    def __init__(
        self,
        child: Child,
        metrics_url: str | None,
        redis_port: int,
        redis_before: int,
        others: tuple[int, ...],
    ) -> None:
        self.child = child
        self.metrics_url = metrics_url
        self.redis_port = redis_port
        self.redis_before = redis_before
        self.others = others

    def redis_hashes(self) -> int:
        """Hashes Redis counted since this worker started (the only writer meanwhile)."""
        return read_hashes(self.redis_port) - self.redis_before

    def page(self) -> MetricsPage:
        assert self.metrics_url is not None
        try:
            return MetricsPage.fetch(self.metrics_url)
        except MetricsUnreadable as error:
            raise UserError(f"cannot read the worker's metrics: {error}") from None

    def read(self) -> Reading:
        page = self.page() if self.metrics_url else None
        hashes = int(page.value(HASHES)) if page else self.redis_hashes()
        worker = cpu_seconds(self.child.pid)
        others = sum(cpu_seconds(pid) for pid in self.others)
        return Reading(time.monotonic(), worker, worker + others, hashes, page)

    def check(self, tries: int = 100) -> tuple[int, int, int]:
        """(loops, confirmed hashes, Redis' hashes): the worker's count, then Redis' read
        right after, until they agree (a write may land in between: a few tries at most)."""
        for _ in range(tries):
            page = self.page()
            redis_hashes = self.redis_hashes()
            if int(page.value(HASHES)) == redis_hashes:
                break
            time.sleep(0.01)
        return int(page.value(LOOPS)), int(page.value(HASHES)), redis_hashes


def latency_windows(start: Reading, end: Reading) -> dict[str, HistogramWindow] | None:
    """What the worker's latency histogram observed in the window, per service (rng,
    hasher); None without the worker's metrics."""
    if start.page is None or end.page is None:
        return None
    return {
        service: HistogramWindow.between(start.page, end.page, UPSTREAM, service=service)
        for service in ("rng", "hasher")
    }
