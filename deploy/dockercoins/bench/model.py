"""The pure parts of `bench rng-modes`: the delay model's ceiling, rate statistics from
`/json` samples, the report tables and the JSON document. No Docker, no network.

Ceiling (../shared/DESIGN.md): W workers each loop in d_worker + d_rng + d_hasher seconds,
and each of R rng instances answers at most RNG_CONCURRENCY requests per d_rng seconds:
ceiling = min(W / (d_worker + d_rng + d_hasher), R * concurrency / d_rng) (and W counts
worker loops: tasks x WORKER_CONCURRENCY).
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockercoins.errors import UserError

REPLICATED = "replicated"
GLOBAL = "global"
MODES = (REPLICATED, GLOBAL)
DEFAULT_DELAY = 0.1
JSON_FORMAT = "dockercoins-bench-rng-modes/1"


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


# --- samples and rates ------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One reading of /json: the web UI's clock and the `hashes` counter."""

    now: float
    hashes: int


def _cumulative(samples: Sequence[Sample]) -> list[tuple[float, float]]:
    """(now, hashes) with counter resets removed (a drop counts as no progress)."""
    points: list[tuple[float, float]] = []
    total = 0.0
    previous: Sample | None = None
    for sample in samples:
        if previous is not None:
            total += max(0, sample.hashes - previous.hashes)
        points.append((sample.now, total))
        previous = sample
    return points


def regression_slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y against x; 0 with fewer than two distinct x."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx <= 0:
        return 0.0
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return sxy / sxx


def window_rates(samples: Sequence[Sample], window: float) -> list[tuple[float, float]]:
    """Rates over consecutive windows of about `window` seconds: each window ends at the
    sample nearest to first + k * window. [(seconds since the first sample at the window's
    middle, hashes/s), ...]."""
    points = _cumulative(samples)
    if len(points) < 2 or window <= 0:
        return []
    origin = points[0][0]
    times = [now for now, _ in points]
    rates: list[tuple[float, float]] = []
    start = 0
    k = 1
    while origin + k * window <= times[-1] + window / 2:
        target = origin + k * window
        k += 1
        right = bisect.bisect_left(times, target)
        candidates = [i for i in (right - 1, right) if start < i < len(times)]
        if not candidates:
            continue
        end = min(candidates, key=lambda i: abs(times[i] - target))
        elapsed = times[end] - times[start]
        if elapsed <= 0:
            continue
        middle = (times[end] + times[start]) / 2 - origin
        rates.append((middle, (points[end][1] - points[start][1]) / elapsed))
        start = end
    return rates


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
    """The steady rate of one run: `mean` is the regression slope of the counter over the
    whole run; the spread comes from the rates of `window`-second windows."""

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
    points = _cumulative(samples)
    rates = [rate for _, rate in window_rates(samples, window)]
    mean = regression_slope(points)
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
    """One steady-state run: a mode, its rng task count, a worker count, what was measured."""

    mode: str
    rng_tasks: int
    workers: int
    ceiling: float
    stats: RateStats
    samples: tuple[Sample, ...] = ()

    @property
    def ratio(self) -> float | None:
        """measured / ceiling (None when the ceiling is unbounded or zero)."""
        if not math.isfinite(self.ceiling) or self.ceiling <= 0:
            return None
        return self.stats.mean / self.ceiling


def measure(
    *,
    mode: str,
    rng_tasks: int,
    workers: int,
    delays: Delays,
    samples: Sequence[Sample],
    window: float = 3.0,
) -> Measurement:
    return Measurement(
        mode=mode,
        rng_tasks=rng_tasks,
        workers=workers,
        ceiling=ceiling(workers, rng_tasks, delays),
        stats=rate_stats(samples, window),
        samples=tuple(samples),
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


def parse_sweep(text: str) -> list[int]:
    """ "1,2,5,10,15" -> [1, 2, 5, 10, 15] (sorted, unique); UserError on anything else."""
    counts: set[int] = set()
    for raw in text.split(","):
        part = raw.strip()
        if not part.isdigit() or not 1 <= int(part) <= 1000:
            raise UserError(
                f"bad --sweep {text!r}: expected worker counts from 1 to 1000, e.g. 1,2,5,10"
            )
        counts.add(int(part))
    return sorted(counts)


# --- formatting ------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "unbounded"
    return f"{value:.{digits}f}"


def results_table(report: BenchReport) -> str:
    """Markdown table: one row per measurement, replicated first, by worker count."""
    lines = [
        "| mode | rng tasks | workers | hashes/s (mean ± stdev) | p10-p90 | ceiling "
        "| measured/ceiling |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    ordered = sorted(report.measurements, key=lambda m: (MODES.index(m.mode), m.workers))
    for item in ordered:
        stats = item.stats
        main = " **(main)**" if item.workers == report.main_workers else ""
        lines.append(
            f"| {item.mode}{main} | {item.rng_tasks} | {item.workers} "
            f"| {stats.mean:.1f} ± {stats.stdev:.1f} | {stats.p10:.1f}-{stats.p90:.1f} "
            f"| {_num(item.ceiling)} | {_num(item.ratio, 2)} |"
        )
    return "\n".join(lines)


def speedup_table(report: BenchReport) -> str:
    """Markdown table: global/replicated per worker count, measured and from the ceilings."""
    lines = [
        "| workers | replicated hashes/s | global hashes/s | global/replicated | ceiling ratio |",
        "|---:|---:|---:|---:|---:|",
    ]
    for workers, measured, ceil in report.speedups():
        rep, glo = report.find(REPLICATED, workers), report.find(GLOBAL, workers)
        assert rep is not None and glo is not None
        lines.append(
            f"| {workers} | {rep.stats.mean:.1f} | {glo.stats.mean:.1f} "
            f"| {_num(measured, 2)} | {_num(ceil, 2)} |"
        )
    return "\n".join(lines)


def markdown(report: BenchReport) -> str:
    """The table file: both tables and the delays they were computed with."""
    d = report.delays
    loops = f" x {d.worker_concurrency}" if d.worker_concurrency != 1 else ""
    return (
        f"{results_table(report)}\n\n{speedup_table(report)}\n\n"
        f"Ceiling = min(W{loops} / ({d.worker:g} + {d.rng:g} + {d.hasher:g}) s, "
        f"R x {d.rng_concurrency} / {d.rng:g} s); {report.nodes} nodes; "
        f"spread over {_num(report.settings.get('window'), 0)}-second windows.\n"
    )


# --- JSON ------------------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def to_json(report: BenchReport) -> dict[str, Any]:
    """A JSON-ready document (unbounded ceilings are null)."""
    return {
        "format": JSON_FORMAT,
        "main_workers": report.main_workers,
        "nodes": report.nodes,
        "delays": {
            "worker": report.delays.worker,
            "rng": report.delays.rng,
            "hasher": report.delays.hasher,
            "rng_concurrency": report.delays.rng_concurrency,
            "worker_concurrency": report.delays.worker_concurrency,
        },
        "settings": report.settings,
        "results": [
            {
                "mode": item.mode,
                "rng_tasks": item.rng_tasks,
                "workers": item.workers,
                "hashes_per_second": item.stats.mean,
                "stdev": item.stats.stdev,
                "min": item.stats.minimum,
                "max": item.stats.maximum,
                "p10": item.stats.p10,
                "p90": item.stats.p90,
                "seconds": item.stats.seconds,
                "samples": [[s.now, s.hashes] for s in item.samples],
                "ceiling": _finite(item.ceiling),
                "measured_over_ceiling": item.ratio,
            }
            for item in report.measurements
        ],
        "global_over_replicated": [
            {"workers": workers, "measured": measured, "ceiling": ceil}
            for workers, measured, ceil in report.speedups()
        ],
    }
