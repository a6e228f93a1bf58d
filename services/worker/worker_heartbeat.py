"""When the worker's parts last moved on, for its heartbeat file (worker_probe.py reads it).

Each mining loop and the flusher beat at every step: a loop before and after each request,
after each sleep (WORKER_DELAY, a back-off, a Retry-After hold) and every second while it
waits for room under WORKER_MAX_OWED_HASHES (waiting on Redis); the flusher at every flush
attempt, confirmed or failed. The worker touches its heartbeat file only while every part
beat within `limit` seconds (stall_limit): the longest one step may take while it waits on
another service, plus a margin. So rng, hasher or Redis down keeps the file fresh (each
step ends in a timeout, an error or a back-off), while a part stuck in one step, or an
event loop that no longer runs, lets it go stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# A request's name lookup (rng, hasher) is outside its WORKER_HTTP_TIMEOUT: glibc's default
# is 2 attempts of 5 s when no DNS server answers.
NAME_LOOKUP_ALLOWANCE = 10.0
# A flush: Redis's connect timeout (1 s) and reply timeout (2 s), twice when the script
# must be loaded again (NOSCRIPT after a restarted Redis).
FLUSH_ALLOWANCE = 6.0
MARGIN = 5.0  # a loaded machine, a slow scheduler


def stall_limit(
    *,
    delay: float,
    http_timeout: float,
    backoff_max: float,
    retry_after_max: float,
    flush_interval: float,
) -> float:
    """Seconds a part may go without a beat and still be moving on: its longest single step
    (a request with its name lookup, a sleep, a flush after its interval) plus MARGIN."""
    longest = max(
        delay,
        http_timeout + NAME_LOOKUP_ALLOWANCE,
        backoff_max,
        retry_after_max,
        flush_interval + FLUSH_ALLOWANCE,
    )
    return longest + MARGIN


class Beats:
    """The last beat of each part (a mining loop, the flusher), on a monotonic clock."""

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self.last: dict[str, float] = {}

    def beat(self, part: str) -> None:
        self.last[part] = self.clock()

    def forget(self, part: str) -> None:
        """`part` ended (the worker is stopping): it no longer has to beat."""
        self.last.pop(part, None)

    def stalled(self) -> list[tuple[str, float]]:
        """(part, seconds since its last beat) of each part quiet for longer than `limit`,
        the quietest first."""
        now = self.clock()
        quiet = [(part, now - at) for part, at in self.last.items() if now - at > self.limit]
        return sorted(quiet, key=lambda item: -item[1])
