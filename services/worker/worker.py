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

Metrics (worker_metrics.py): with METRICS on, GET /metrics on HOST:WORKER_METRICS_PORT
answers loops done, hashes and coins confirmed by Redis, hashes pending, failed attempts by
kind, answers by rng/hasher address and the request latencies. A port that cannot be had is
logged once; the worker mines on without /metrics.

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
    METRICS                 1     serve GET /metrics (0: no server, no latency histogram)
    WORKER_METRICS_PORT     9100  where /metrics listens (1-65535)
    HOST                    0.0.0.0  the address /metrics listens on
    DOCKERCOINS_NODE        (empty)  the swarm node's name, a label of the metrics
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import string
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from spread_http import RequestFailed, SpreadingClient, Target
from worker_ledger import Ledger
from worker_metrics import WorkerMetrics, serve
from worker_outage import Outage
from worker_settings import BACKOFF_START, Settings, redacted_url
from worker_stats import MAX_LATENCY_SAMPLES, Latencies

log = logging.getLogger("worker")

HEX_DIGITS = frozenset(string.hexdigits.lower())
HEARTBEAT_INTERVAL = 1.0


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
        self.metrics: WorkerMetrics | None = None
        if settings.metrics:
            failures = {**self.outages, "redis": self.redis_outage, "unexpected": self.unexpected}
            upstreams = {"rng": self.client.book(self.rng), "hasher": self.client.book(self.hasher)}
            self.metrics = WorkerMetrics(settings.node, self.ledger, failures, upstreams)
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
        t2 = time.perf_counter()
        self.ledger.record(digest, data)
        if self.metrics is not None:
            self.metrics.observe(t1 - t0, t2 - t1)
        if stats is not None:
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
        server: web.AppRunner | None = None
        if self.metrics is not None:
            server = await serve(self.metrics, settings.host, settings.metrics_port)
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
        closings = [self.client.close(), self.db.aclose()]
        if server is not None:
            closings.append(server.cleanup())
        for closing in closings:
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
