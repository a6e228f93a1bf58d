"""The pure parts of `bench rng-modes`: the delay model's ceiling, the rate statistics of a
run and the report. No Docker, no network.

Ceiling: W workers each loop in d_worker + d_rng + d_hasher seconds, and each of R rng
instances answers at most RNG_CONCURRENCY requests per d_rng seconds:
ceiling = min(W / (d_worker + d_rng + d_hasher), R * concurrency / d_rng) (and W counts
worker loops: tasks x WORKER_CONCURRENCY).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockercoins.errors import UserError
from dockercoins.names import GLOBAL, REPLICATED
from dockercoins.swarm.prometheus import InstanceRate
from dockercoins.swarm.rates import Sample, cumulative, hash_rate, window_rates

DEFAULT_DELAY = 0.1
RNG_SUM_TOLERANCE = 0.10  # the rng tasks' answers/s add up to the hash rate within 10 %
MIN_RNG_WINDOW = 15.0  # seconds of rate() per run at least: three 5-second scrapes


@dataclass(frozen=True)
class Delays:
    """The services' deliberate delays (seconds), rng's concurrency limit and the loops each
    worker task runs (WORKER_CONCURRENCY)."""

    worker: float = DEFAULT_DELAY
    rng: float = DEFAULT_DELAY
    hasher: float = DEFAULT_DELAY
    rng_concurrency: int = 1
    worker_concurrency: int = 1

    @property
    def loop(self) -> float:
        """Seconds one worker loop takes when nothing queues."""
        return self.worker + self.rng + self.hasher


def _env_delay(env: Mapping[str, str], name: str, service: str) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return DEFAULT_DELAY
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (0 <= value < math.inf):
        raise UserError(f"service {service} has {name}={raw!r}: not a number of seconds >= 0")
    return value


def delays_from_env(
    worker_env: Mapping[str, str], rng_env: Mapping[str, str], hasher_env: Mapping[str, str]
) -> Delays:
    """Delays as the services read them from their environment (defaults when unset)."""
    return Delays(
        worker=_env_delay(worker_env, "WORKER_DELAY", "worker"),
        rng=_env_delay(rng_env, "RNG_DELAY", "rng"),
        hasher=_env_delay(hasher_env, "HASHER_DELAY", "hasher"),
        rng_concurrency=_env_count(rng_env, "RNG_CONCURRENCY", "rng"),
        worker_concurrency=_env_count(worker_env, "WORKER_CONCURRENCY", "worker"),
    )


def _env_count(env: Mapping[str, str], name: str, service: str) -> int:
    raw = env.get(name, "").strip()
    if raw and not (raw.isdigit() and int(raw) >= 1):
        raise UserError(f"service {service} has {name}={raw!r}: not an integer >= 1")
    return int(raw) if raw else 1


def env_list_to_dict(env: Sequence[str] | None) -> dict[str, str]:
    """A swarm spec's Env (["K=V", ...]) as a dict (later entries win, as in Docker)."""
    result: dict[str, str] = {}
    for item in env or ():
        key, _, value = item.partition("=")
        result[key] = value
    return result


def worker_ceiling(workers: float, delays: Delays) -> float:
    """Hashes/s `workers` worker tasks could do if rng and hasher answered right after their
    delays (each task runs `worker_concurrency` loops)."""
    return math.inf if delays.loop <= 0 else workers * delays.worker_concurrency / delays.loop


def rng_ceiling(rng_tasks: int, delays: Delays) -> float:
    """Answers/s that `rng_tasks` rng instances can give at most."""
    return math.inf if delays.rng <= 0 else rng_tasks * delays.rng_concurrency / delays.rng


def ceiling(workers: int, rng_tasks: int, delays: Delays) -> float:
    """min(W x loops per task / loop, R x concurrency / d_rng); math.inf when unbounded."""
    return min(worker_ceiling(workers, delays), rng_ceiling(rng_tasks, delays))


# --- the rate of a run ------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolation percentile (fraction in [0, 1]) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class RateStats:
    """The steady rate of one run: `mean` is rates.hash_rate over the whole run; the spread
    comes from the rates of `window`-second windows."""

    mean: float
    stdev: float
    minimum: float
    maximum: float
    p10: float
    p90: float
    seconds: float
    samples: int
    windows: int
    window: float


def rate_stats(samples: Sequence[Sample], window: float = 3.0) -> RateStats:
    """The run's rate and its spread; all zero with too few samples, not an error."""
    points = cumulative(samples)
    rates = [rate for _, rate in window_rates(samples, window)]
    mean = hash_rate(samples) or 0.0
    seconds = points[-1][0] - points[0][0] if points else 0.0
    if not rates:
        rates = [mean]
    return RateStats(
        mean=mean,
        stdev=statistics.stdev(rates) if len(rates) > 1 else 0.0,
        minimum=min(rates),
        maximum=max(rates),
        p10=percentile(rates, 0.1),
        p90=percentile(rates, 0.9),
        seconds=seconds,
        samples=len(samples),
        windows=len(rates),
        window=window,
    )


# --- one benchmark point and the whole run ------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One steady-state run: a mode, its rng task count, a worker count, what was measured;
    `rng_rates` are each rng task's answers/s from Prometheus over the last `rng_window`
    seconds of the run (None: not measured)."""

    mode: str
    rng_tasks: int
    workers: int
    ceiling: float
    stats: RateStats
    samples: tuple[Sample, ...] = ()
    rng_rates: tuple[InstanceRate, ...] | None = None
    rng_window: float | None = None

    @property
    def ratio(self) -> float | None:
        """measured / ceiling (None when the ceiling is unbounded or zero)."""
        if not math.isfinite(self.ceiling) or self.ceiling <= 0:
            return None
        return self.stats.mean / self.ceiling

    @property
    def rng_sum(self) -> float | None:
        """The rng tasks' answers/s added up (None: not measured, or no rng series)."""
        if not self.rng_rates:
            return None
        return sum(item.rate for item in self.rng_rates)

    @property
    def rng_sum_ratio(self) -> float | None:
        """rng answers/s added up / hash rate: each hash takes one rng answer, so about 1."""
        if self.rng_sum is None or self.stats.mean <= 0:
            return None
        return self.rng_sum / self.stats.mean

    @property
    def rng_sum_agrees(self) -> bool | None:
        """Whether rng_sum_ratio is within RNG_SUM_TOLERANCE of 1 (None: not measured)."""
        ratio = self.rng_sum_ratio
        if ratio is None:
            return None
        return abs(ratio - 1.0) <= RNG_SUM_TOLERANCE + 1e-9


def measure(
    *,
    mode: str,
    rng_tasks: int,
    workers: int,
    delays: Delays,
    samples: Sequence[Sample],
    window: float = 3.0,
    rng_rates: Sequence[InstanceRate] | None = None,
    rng_window: float | None = None,
) -> Measurement:
    return Measurement(
        mode=mode,
        rng_tasks=rng_tasks,
        workers=workers,
        ceiling=ceiling(workers, rng_tasks, delays),
        stats=rate_stats(samples, window),
        samples=tuple(samples),
        rng_rates=None if rng_rates is None else tuple(rng_rates),
        rng_window=rng_window if rng_rates is not None else None,
    )


@dataclass
class BenchReport:
    """Everything `bench rng-modes` found, ready for the table, the plot and JSON."""

    main_workers: int
    nodes: int
    delays: Delays
    measurements: list[Measurement] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # command, durations, load, ...

    def find(self, mode: str, workers: int) -> Measurement | None:
        for item in self.measurements:
            if item.mode == mode and item.workers == workers:
                return item
        return None

    def worker_counts(self) -> list[int]:
        return sorted({item.workers for item in self.measurements})

    def speedups(self) -> list[tuple[int, float | None, float | None]]:
        """(workers, measured global/replicated, ceiling global/replicated) per worker count
        measured in both modes."""
        rows: list[tuple[int, float | None, float | None]] = []
        for workers in self.worker_counts():
            rep, glo = self.find(REPLICATED, workers), self.find(GLOBAL, workers)
            if rep is None or glo is None:
                continue
            measured = glo.stats.mean / rep.stats.mean if rep.stats.mean > 0 else None
            bounded = math.isfinite(glo.ceiling) and math.isfinite(rep.ceiling)
            ceil = glo.ceiling / rep.ceiling if bounded and rep.ceiling > 0 else None
            rows.append((workers, measured, ceil))
        return rows
