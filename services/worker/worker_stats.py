"""Request latencies kept in memory for WORKER_STATS=1, logged as one `stats {...}` line
when the worker stops."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field

MAX_LATENCY_SAMPLES = 2_000_000


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Latencies:
    """Request latencies (WORKER_STATS=1), in seconds, and the CPU time this process used
    meanwhile."""

    since: float
    cpu_since: float = field(default_factory=_cpu_seconds)
    rng: list[float] = field(default_factory=list)
    hasher: list[float] = field(default_factory=list)
    loops: int = 0

    def summary(self) -> dict[str, object]:
        def describe(samples: list[float]) -> dict[str, float | int]:
            if not samples:
                return {"count": 0, "mean_ms": 0.0, "p99_ms": 0.0}
            ordered = sorted(samples)
            p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            return {
                "count": len(ordered),
                "mean_ms": round(1000 * sum(ordered) / len(ordered), 3),
                "p99_ms": round(1000 * p99, 3),
            }

        seconds = max(time.monotonic() - self.since, 1e-9)
        cpu = _cpu_seconds() - self.cpu_since
        return {
            "loops": self.loops,
            "seconds": round(seconds, 3),
            "hashes_per_second": round(self.loops / seconds, 1),
            "cpu_percent": round(100 * cpu / seconds, 1),
            "cpu_us_per_loop": round(1e6 * cpu / max(self.loops, 1), 1),
            "rng": describe(self.rng),
            "hasher": describe(self.hasher),
        }
