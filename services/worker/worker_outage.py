"""One kind of failure (rng, hasher, redis, ...): logged once when it starts and once when
it ends, retried with a capped exponential back-off meanwhile, and counted for the metrics."""

from __future__ import annotations

import logging
import time

from worker_settings import BACKOFF_START

log = logging.getLogger("worker")


class Outage:
    """One kind of failure, shared by every loop: logged once when it starts and once when
    it ends, with a capped exponential back-off meanwhile. `failures` counts every failed
    attempt since the start (dockercoins_worker_errors_total)."""

    def __init__(self, kind: str, backoff_max: float) -> None:
        self.kind = kind
        self.backoff_max = backoff_max
        self.started: float | None = None
        self.attempts = 0
        self.failures = 0
        self.resume_at = 0.0  # monotonic time before which no new attempt is made

    def hold(self, seconds: float) -> None:
        """No attempt of this kind, from any loop, for `seconds` (a Retry-After)."""
        self.resume_at = max(self.resume_at, time.monotonic() + seconds)

    def held_for(self) -> float:
        """Seconds left before the next attempt of this kind may be made (0 when none)."""
        return max(0.0, self.resume_at - time.monotonic())

    def failed(self, error: object) -> float:
        """Record a failed attempt; the number of seconds to wait before the next one."""
        self.failures += 1
        if self.started is None:
            self.started = time.monotonic()
            log.warning(
                "%s failing: %s; retrying with back-off up to %.1f s",
                self.kind,
                error,
                self.backoff_max,
            )
        self.attempts += 1
        return float(min(self.backoff_max, BACKOFF_START * 2 ** min(self.attempts - 1, 30)))

    def succeeded(self) -> None:
        """Record a success; logs the recovery if this kind was failing."""
        if self.started is not None:
            log.info(
                "%s is back after %.1f s (%d failed attempts)",
                self.kind,
                time.monotonic() - self.started,
                self.attempts,
            )
            self.started = None
            self.attempts = 0
