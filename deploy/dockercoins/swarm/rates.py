"""The hash rate from the web UI's /json, for `status` and `bench rng-modes`: where to read
it, one sample, samples over time, and hashes per second from them.

It lives with the swarm commands because `status` needs it and the benchmarks already
build on the swarm package (never the other way round).
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dockercoins.errors import UserError
from dockercoins.names import WEBUI_PUBLISHED_PORT
from dockercoins.swarm.connect import published_urls


@dataclass(frozen=True)
class Sample:
    """One reading of /json: the web UI's clock and the `hashes` counter."""

    now: float
    hashes: int


class WebUIUnreadable(UserError):
    """The web UI stopped answering /json while being sampled."""


def webui_candidates(explicit: str | None) -> list[str]:
    """Where to read /json: the given URL, else loopback and the lab's node addresses."""
    return published_urls(explicit, WEBUI_PUBLISHED_PORT)


def read_errors() -> tuple[type[Exception], ...]:
    """What a failed /json read raises (httpx is imported only when used)."""
    import httpx

    return (httpx.HTTPError, ValueError, KeyError, TypeError)


def read_sample(http: Any, url: str) -> Sample:
    """One /json reading with an httpx.Client; raises one of read_errors()."""
    answer = http.get(f"{url}/json")
    answer.raise_for_status()
    data = answer.json()
    return Sample(now=float(data["now"]), hashes=int(data["hashes"]))


def sample(
    url: str,
    seconds: float,
    interval: float,
    *,
    max_failures: int = 10,
    on_read: Callable[[float, list[Sample]], None] | None = None,
) -> list[Sample]:
    """Read /json every `interval` seconds for `seconds` (a read at both ends), calling
    `on_read(seconds so far, samples)` after each read. WebUIUnreadable after
    `max_failures` failed reads in a row."""
    import httpx

    errors = read_errors()
    samples: list[Sample] = []
    failed = 0
    started = time.monotonic()
    reads = int(seconds / interval) + 1
    with httpx.Client(timeout=max(2.0, interval)) as http:
        for k in range(reads):
            delay = started + k * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                samples.append(read_sample(http, url))
                failed = 0
            except errors as error:
                failed += 1
                if failed >= max_failures:
                    raise WebUIUnreadable(
                        f"the web UI at {url} stopped answering /json: {error}"
                    ) from error
            if on_read is not None:
                on_read(min(seconds, k * interval), samples)
    return samples


def cumulative(samples: Sequence[Sample]) -> list[tuple[float, float]]:
    """(now, hashes) with counter resets removed (a drop counts as no progress)."""
    points: list[tuple[float, float]] = []
    total = 0.0
    previous: Sample | None = None
    for item in samples:
        if previous is not None:
            total += max(0, item.hashes - previous.hashes)
        points.append((item.now, total))
        previous = item
    return points


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y against x; None with fewer than two distinct x."""
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx <= 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


def hash_rate(samples: Sequence[Sample]) -> float | None:
    """Hashes per second: the least-squares slope of the counter against the web UI's clock,
    fitted at the samples where the counter had just moved.

    Workers add to the counter about once a second, so it moves in steps: two samples 1.5 s
    apart see one or two steps and read 2 or 4 for a true 3.3. The samples just after a
    step span whole steps; with many workers the counter moves at almost every sample and
    this is the slope over the whole run. None with fewer than two such samples.
    """
    moved = [
        point for before, point in itertools.pairwise(cumulative(samples)) if point[1] > before[1]
    ]
    return _slope(moved)


def window_rates(samples: Sequence[Sample], window: float) -> list[tuple[float, float]]:
    """Rates over consecutive windows of about `window` seconds, for the spread of a rate:
    each window ends at the sample nearest to first + k * window. [(seconds since the first
    sample at the window's middle, hashes/s), ...]."""
    points = cumulative(samples)
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
