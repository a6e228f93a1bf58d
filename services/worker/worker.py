"""DockerCoins worker: mines coins by asking rng for random bytes and hasher for their sha256.

Each of WORKER_CONCURRENCY loops (asyncio tasks in one process) repeats: sleep WORKER_DELAY,
GET RNG_URL (32 random bytes), POST them to HASHER_URL, and when the hex digest starts with
"0" keep the coin (HSET wallet <digest> <bytes>). About every WORKER_FLUSH_INTERVAL seconds
the loops done since the last write are added to `hashes` (INCRBY), in the same Redis
transaction as the coins found meanwhile.

Failures of rng, hasher or Redis never stop the worker: each kind of failure is logged once
when it starts and once when it ends, and retried with capped exponential back-off. Loops
done and coins found while Redis is away stay in memory and are written when it returns.
On SIGTERM or SIGINT the loops stop, what is still owed is written to Redis (bounded by
WORKER_SHUTDOWN_TIMEOUT), the line "stopped after N loops, ..." is logged, and the process
exits 0 (within 2 s).

Requests spread over every instance behind a name: see spread_http.py.

Health check: while the worker runs, it touches the file WORKER_HEARTBEAT (default
/tmp/worker-heartbeat) every second. A Dockerfile needs no extra tool to check it:

    HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD python -c \\
      "import os,sys,time; sys.exit(time.time()-os.stat('/tmp/worker-heartbeat').st_mtime>10)"

Settings (environment, read and checked in worker_settings.py):
    RNG_URL                 http://rng/32
    HASHER_URL              http://hasher/
    REDIS_URL               redis://redis:6379/0
    WORKER_DELAY            0.1   seconds slept at the start of each loop
    WORKER_CONCURRENCY      1     loops in this process
    WORKER_FLUSH_INTERVAL   1.0   seconds between writes to Redis
    WORKER_BACKOFF_MAX      2.0   cap of the retry back-off, seconds
    WORKER_HTTP_TIMEOUT     10.0  per request, seconds (rng queues requests beyond its
                                  concurrency, so this is generous)
    WORKER_DNS_TTL          1.0   seconds an address list is reused before resolving again
    WORKER_CONN_MAX_AGE     1.0   seconds a kept-alive connection is reused at most
    WORKER_SHUTDOWN_TIMEOUT 0.8   seconds allowed for the last write to Redis on exit
    WORKER_HEARTBEAT        /tmp/worker-heartbeat  (empty: no heartbeat file)
    WORKER_STATS            0     1: log request latencies at exit (for the benchmark)
    WORKER_STATS_WARMUP     0.0   seconds after start before latencies are recorded
    LOG_LEVEL               INFO
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import signal
import string
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from spread_http import RequestFailed, SpreadingClient, Target
from worker_settings import BACKOFF_START, Settings, redacted_url

log = logging.getLogger("worker")

HEX_DIGITS = frozenset(string.hexdigits.lower())
HEARTBEAT_INTERVAL = 1.0
MAX_LATENCY_SAMPLES = 2_000_000


class Outage:
    """One kind of failure (rng, hasher, redis), shared by every loop: logged once when it
    starts and once when it ends, with a capped exponential back-off meanwhile."""

    def __init__(self, kind: str, backoff_max: float) -> None:
        self.kind = kind
        self.backoff_max = backoff_max
        self.started: float | None = None
        self.attempts = 0

    def failed(self, error: object) -> float:
        """Record a failed attempt; the number of seconds to wait before the next one."""
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


@dataclass
class Ledger:
    """Loops done and coins found, and what of them is still owed to Redis."""

    loops: int = 0
    owed_hashes: int = 0
    owed_coins: dict[str, bytes] = field(default_factory=dict)
    coins: int = 0

    def record(self, digest: str, data: bytes) -> None:
        self.loops += 1
        self.owed_hashes += 1
        if digest.startswith("0"):
            self.coins += 1
            self.owed_coins[digest] = data

    async def flush(self, db: aioredis.Redis) -> None:
        """Write what is owed in one transaction; on error nothing is forgotten."""
        hashes = self.owed_hashes
        coins = dict(self.owed_coins)
        if hashes == 0 and not coins:
            return
        async with db.pipeline(transaction=True) as pipe:
            pipe.incrby("hashes", hashes)
            if coins:
                mapping: dict[Any, Any] = coins  # redis-py's key type is invariant
                pipe.hset("wallet", mapping=mapping)
            # Inside MULTI/EXEC one command can fail (e.g. WRONGTYPE) while the others are
            # applied: settle each part on its own result, so nothing is counted twice.
            results = await pipe.execute(raise_on_error=False)
        if isinstance(results[0], Exception):
            raise results[0]
        self.owed_hashes -= hashes
        if coins:
            if isinstance(results[1], Exception):
                raise results[1]
            for digest in coins:
                self.owed_coins.pop(digest, None)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Latencies:
    """Request latencies for the benchmark (WORKER_STATS=1), in seconds, and the CPU time
    this process used meanwhile."""

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


def valid_digest(text: str) -> bool:
    return len(text) == 64 and HEX_DIGITS.issuperset(text)


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rng = Target.parse(settings.rng_url)
        self.hasher = Target.parse(settings.hasher_url)
        self.client = SpreadingClient(
            timeout=settings.http_timeout,
            dns_ttl=settings.dns_ttl,
            max_age=settings.conn_max_age,
        )
        self.db = aioredis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=1.0,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 0),  # a retried INCRBY could count twice
        )
        self.ledger = Ledger()
        self.outages = {kind: Outage(kind, settings.backoff_max) for kind in ("rng", "hasher")}
        self.redis_outage = Outage("redis", settings.backoff_max)
        self.unexpected = Outage("mining loop (unexpected error)", settings.backoff_max)
        self.stop = asyncio.Event()
        self.loops_stopped = asyncio.Event()
        self.started = time.monotonic()
        self.latencies: Latencies | None = None
        self.redis_backoff = BACKOFF_START

    def _measure(self) -> Latencies | None:
        if not self.settings.stats:
            return None
        if self.latencies is None:
            if time.monotonic() - self.started < self.settings.stats_warmup:
                return None
            self.latencies = Latencies(since=time.monotonic())
        if len(self.latencies.rng) >= MAX_LATENCY_SAMPLES:
            return None
        return self.latencies

    async def _call(self, kind: str, method: str, target: Target, data: bytes | None) -> bytes:
        answer = await self.client.request(method, target, data)
        if kind == "hasher" and not valid_digest(answer.decode("ascii", "replace")):
            raise RequestFailed(f"hasher answered {answer[:80]!r}, not a sha256 hex digest")
        return answer

    async def mine(self) -> None:
        """One loop, repeated until stopped."""
        delay = self.settings.delay
        while not self.stop.is_set():
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await self.mine_once()
            except Exception as error:  # a bug must not end the loop: log it, back off
                log.debug("unexpected error", exc_info=True)
                await asyncio.sleep(self.unexpected.failed(f"{type(error).__name__}: {error}"))
            else:
                self.unexpected.succeeded()

    async def mine_once(self) -> None:
        """GET rng, POST hasher, record the loop; a failure is logged per kind, then slept
        off with back-off."""
        stats = self._measure()
        t0 = time.perf_counter()
        try:
            data = await self._call("rng", "GET", self.rng, None)
        except RequestFailed as error:
            await asyncio.sleep(self.outages["rng"].failed(error))
            return
        self.outages["rng"].succeeded()
        t1 = time.perf_counter()
        try:
            digest = (await self._call("hasher", "POST", self.hasher, data)).decode()
        except RequestFailed as error:
            await asyncio.sleep(self.outages["hasher"].failed(error))
            return
        self.outages["hasher"].succeeded()
        self.ledger.record(digest, data)
        if stats is not None:
            t2 = time.perf_counter()
            stats.rng.append(t1 - t0)
            stats.hasher.append(t2 - t1)
            stats.loops += 1

    async def flush_once(self) -> bool:
        """Write what is owed; False (and the outage logged once) when Redis fails."""
        try:
            await self.ledger.flush(self.db)
        except (RedisError, OSError) as error:
            self.redis_backoff = self.redis_outage.failed(f"{type(error).__name__}: {error}")
            return False
        self.redis_outage.succeeded()
        return True

    async def flusher(self) -> None:
        """Writes to Redis every flush interval until the loops have stopped, then once more
        (the caller bounds that last write by WORKER_SHUTDOWN_TIMEOUT)."""
        wait = self.settings.flush_interval
        while not self.loops_stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.loops_stopped.wait(), timeout=wait)
            if self.loops_stopped.is_set():
                break
            ok = await self.flush_once()
            wait = self.settings.flush_interval if ok else self.redis_backoff
        await self.flush_once()

    async def heartbeat(self) -> None:
        path = Path(self.settings.heartbeat) if self.settings.heartbeat else None
        if path is None:
            return
        warned = False
        while not self.stop.is_set():
            try:
                path.touch()
            except OSError as error:
                if not warned:
                    log.warning("cannot touch heartbeat file %s: %s", path, error)
                    warned = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=HEARTBEAT_INTERVAL)

    async def run(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        log.info(
            "mining: rng %s, hasher %s, redis %s, %d loop(s), delay %.3f s",
            settings.rng_url,
            settings.hasher_url,
            redacted_url(settings.redis_url),
            settings.concurrency,
            settings.delay,
        )
        miners = [loop.create_task(self.mine()) for _ in range(settings.concurrency)]
        flusher = loop.create_task(self.flusher())
        beat = loop.create_task(self.heartbeat())
        await self.stop.wait()
        for task in miners:
            task.cancel()
        await asyncio.gather(*miners, return_exceptions=True)
        self.loops_stopped.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(flusher, timeout=settings.shutdown_timeout)
        await asyncio.gather(beat, return_exceptions=True)
        ledger = self.ledger
        log.info(
            "stopped after %d loops (%d coins); %d hashes and %d coins not written to Redis",
            ledger.loops,
            ledger.coins,
            ledger.owed_hashes,
            len(ledger.owed_coins),
        )
        if self.latencies is not None:
            log.info("stats %s", json.dumps(self.latencies.summary()))
        for closing in (self.client.close(), self.db.aclose()):
            with contextlib.suppress(TimeoutError, RedisError, OSError):
                await asyncio.wait_for(closing, timeout=0.2)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is pinned in requirements.txt
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main() -> int:
    try:
        settings = Settings.from_env()
    except ValueError as error:
        logging.basicConfig(format="%(asctime)s %(levelname)s worker %(message)s")
        log.error("bad setting: %s", error)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s worker %(message)s"
    )
    with asyncio.Runner(loop_factory=_new_event_loop) as runner:
        runner.run(Worker(settings).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
