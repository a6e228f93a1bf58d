"""DockerCoins worker: mines coins by asking rng for random bytes and hasher for their sha256.

Each of WORKER_CONCURRENCY loops (asyncio tasks in one process) repeats: sleep WORKER_DELAY,
GET RNG_URL (32 random bytes), POST them to HASHER_URL, and when the hex digest starts with
"0" keep the coin. About every WORKER_FLUSH_INTERVAL seconds what was done since the last
write is sent to Redis as one numbered flush (worker_ledger.py, worker_redis.py).

Nothing lost, nothing counted twice. The process has a worker id, `<hostname>-<8 random
hex digits>`, drawn at start. Each flush carries the next sequence number (1, 2, ...); one
Lua script applies it atomically only when the number is new for this worker: INCRBY
`hashes`, HSET `wallet` with the coins, and the ledger `dockercoins:ledger:seq` (worker id ->
last number applied) and `dockercoins:ledger:hashes` (worker id -> hashes applied). A flush
that fails (Redis down, restarted, a reply lost on a broken connection) is sent again with
the same number and the same amounts; if Redis had applied it already, it answers so, writes
nothing, and the flush counts as confirmed. New work waits for the next number.

Bounded memory: hashes not yet confirmed by Redis (and the coins among them) never exceed
WORKER_MAX_OWED_HASHES. At the cap mining pauses (no request to rng or hasher) until a flush
is confirmed; one line is logged when it pauses and one when it resumes. Nothing is dropped.

Failures of rng, hasher or Redis never stop the worker: each kind of failure is logged once
when it starts and once when it ends, and retried with capped exponential back-off. A 503
(or 429) with Retry-After holds every loop off that service for that long, at most
RETRY_AFTER_MAX (5 s). On SIGTERM or SIGINT the loops stop, what is owed is written to Redis
(bounded by WORKER_SHUTDOWN_TIMEOUT), the line "stopped after N loops, ..." is logged with
what Redis confirmed, and the process exits 0: at most WORKER_SHUTDOWN_TIMEOUT + CLOSE_TIMEOUT
seconds (1 s by default) after the signal, well inside docker stop's 10 s grace period.

Requests spread over every instance behind a name: see spread_http.py.

Metrics (worker_metrics.py): with METRICS on, GET /metrics on HOST:WORKER_METRICS_PORT
answers loops done, hashes and coins confirmed by Redis (also per worker id:
dockercoins_worker_confirmed_hashes_total, dockercoins_worker_confirmed_seq), hashes owed,
the cap and whether mining is paused, flushes applied and already applied, failed attempts
by kind, answers by rng/hasher address and the request latencies. A port that cannot be had
is logged once; the worker mines on without /metrics.

Health check: the worker touches the file WORKER_HEARTBEAT (default /tmp/worker-heartbeat)
every second while every mining loop and the flusher move on (worker_heartbeat.py): rng,
hasher or Redis down keeps it fresh, a stalled loop or a stuck event loop lets it go stale
(one line is logged when it stops and one when it beats again). worker_probe.py, the
image's HEALTHCHECK, checks its age.

Settings (environment, read and checked in worker_settings.py):
    RNG_URL                 http://rng/32
    HASHER_URL              http://hasher/
    REDIS_URL               redis://redis:6379/0
    REDIS_PASSWORD_FILE     (empty)  a file holding Redis's password (a swarm or compose
                                  secret, /run/secrets/...), read once at start, one trailing
                                  newline dropped; empty: no password. The password itself is
                                  never logged nor shown in /metrics
    WORKER_DELAY            0.1   seconds slept at the start of each loop
    WORKER_CONCURRENCY      1     loops in this process
    WORKER_FLUSH_INTERVAL   1.0   seconds between writes to Redis
    WORKER_MAX_OWED_HASHES  100000  hashes not yet confirmed by Redis at most (>= 1); at the
                                  default delays that is hours of a Redis outage, and a few
                                  MB of memory at most (about 1 in 16 hashes is a coin kept);
                                  below a flush interval's work it pauses (and logs) often
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
import secrets
import signal
import socket
import string
import sys
import time
from pathlib import Path

from aiohttp import web
from redis.exceptions import RedisError
from spread_http import RequestFailed, SpreadingClient, Target
from worker_heartbeat import Beats, stall_limit
from worker_ledger import Ledger
from worker_metrics import MiningState, WorkerMetrics, serve
from worker_outage import Outage
from worker_redis import FlushScript, connect
from worker_settings import BACKOFF_START, Settings, redacted_url, redis_password
from worker_stats import MAX_LATENCY_SAMPLES, Latencies

log = logging.getLogger("worker")

HEX_DIGITS = frozenset(string.hexdigits.lower())
HEARTBEAT_INTERVAL = 1.0
RETRY_AFTER_MAX = 5.0  # seconds: the longest a Retry-After holds a service off
CLOSE_TIMEOUT = 0.2  # seconds for closing connections and the /metrics server on exit
FLUSHER = "flusher"  # its name among the heartbeat's beats


def valid_digest(text: str) -> bool:
    return len(text) == 64 and HEX_DIGITS.issuperset(text)


def new_worker_id() -> str:
    """`<hostname>-<8 random hex digits>`: one per process, so a restarted container (same
    hostname) starts a ledger entry of its own."""
    return f"{socket.gethostname()}-{secrets.token_hex(4)}"


class Worker:
    def __init__(
        self,
        settings: Settings,
        worker_id: str | None = None,
        redis_password: str | None = None,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.rng = Target.parse(settings.rng_url)
        self.hasher = Target.parse(settings.hasher_url)
        self.client = SpreadingClient(
            timeout=settings.http_timeout,
            dns_ttl=settings.dns_ttl,
            max_age=settings.conn_max_age,
        )
        self.db = connect(settings.redis_url, password=redis_password)
        self.script = FlushScript(self.db, self.worker_id)
        self.ledger = Ledger(max_owed=settings.max_owed_hashes)
        self.outages = {kind: Outage(kind, settings.backoff_max) for kind in ("rng", "hasher")}
        self.redis_outage = Outage("redis", settings.backoff_max)
        self.unexpected = Outage("mining loop (unexpected error)", settings.backoff_max)
        self.state = MiningState()
        self.metrics: WorkerMetrics | None = None
        if settings.metrics:
            failures = {**self.outages, "redis": self.redis_outage, "unexpected": self.unexpected}
            upstreams = {"rng": self.client.book(self.rng), "hasher": self.client.book(self.hasher)}
            self.metrics = WorkerMetrics(
                settings.node,
                self.ledger,
                failures,
                upstreams,
                worker_id=self.worker_id,
                state=self.state,
            )
        self.stop = asyncio.Event()
        self.loops_stopped = asyncio.Event()
        self.room = asyncio.Event()  # set when a loop may have room to start again
        self.wake = asyncio.Event()  # wakes the flusher: the cap is reached, or loops stopped
        self.paused_at: float | None = None
        self.started = time.monotonic()
        self.latencies: Latencies | None = None
        self.redis_backoff = BACKOFF_START
        self.beats = Beats(
            stall_limit(
                delay=settings.delay,
                http_timeout=settings.http_timeout,
                backoff_max=settings.backoff_max,
                retry_after_max=RETRY_AFTER_MAX,
                flush_interval=settings.flush_interval,
            )
        )

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

    async def _call(
        self, part: str, kind: str, method: str, target: Target, data: bytes | None
    ) -> bytes:
        held = self.outages[kind].held_for()
        if held > 0:
            await asyncio.sleep(held)
        self.beats.beat(part)
        answer = await self.client.request(method, target, data)
        if kind == "hasher" and not valid_digest(answer.decode("ascii", "replace")):
            raise RequestFailed(f"hasher answered {answer[:80]!r}, not a sha256 hex digest")
        return answer

    def _failed(self, kind: str, error: RequestFailed) -> float:
        """Seconds this loop waits after a failed request: the back-off, or what a
        Retry-After asked (at most RETRY_AFTER_MAX), which also holds the other loops off."""
        outage = self.outages[kind]
        wait = outage.failed(error)
        if error.retry_after is not None:
            held = min(error.retry_after, RETRY_AFTER_MAX)
            outage.hold(held)
            wait = max(wait, held)
        return wait

    async def mine(self, part: str = "mining loop") -> None:
        """One loop, repeated until stopped; `part` names it in the heartbeat's beats."""
        delay = self.settings.delay
        beat = self.beats.beat
        try:
            while not self.stop.is_set():
                beat(part)
                if delay > 0:
                    await asyncio.sleep(delay)
                    beat(part)
                await self._wait_for_room(part)
                try:
                    await self.mine_once(part)
                except Exception as error:  # a bug must not end the loop: log it, back off
                    log.debug("unexpected error", exc_info=True)
                    beat(part)
                    await asyncio.sleep(self.unexpected.failed(f"{type(error).__name__}: {error}"))
                else:
                    self.unexpected.succeeded()
        finally:
            self.beats.forget(part)

    async def _wait_for_room(self, part: str) -> None:
        """Return when one more loop fits under WORKER_MAX_OWED_HASHES; meanwhile mining is
        paused (logged once per pause) and the flusher is woken to write now."""
        ledger = self.ledger
        if ledger.has_room():
            return
        if self.paused_at is None:
            self.paused_at = time.monotonic()
            self.state.paused = True
            log.warning(
                "mining paused: %d hashes owed to Redis or under way, the most "
                "WORKER_MAX_OWED_HASHES allows; resuming once Redis confirms a flush",
                ledger.max_owed,
            )
        self.wake.set()
        while not ledger.has_room():
            # waiting on Redis (the flusher, which beats too): beat while the wait lasts
            self.beats.beat(part)
            self.room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.room.wait(), timeout=HEARTBEAT_INTERVAL)

    def _room_made(self) -> None:
        """Wake paused loops; log the resumption if mining was paused and may go on."""
        self.room.set()
        if self.paused_at is not None and self.ledger.has_room():
            log.info(
                "mining resumed after %.1f s paused (%d hashes not yet confirmed by Redis)",
                time.monotonic() - self.paused_at,
                self.ledger.unconfirmed_hashes,
            )
            self.paused_at = None
            self.state.paused = False

    async def mine_once(self, part: str = "mining loop") -> None:
        """GET rng, POST hasher, record the loop; a failure is logged per kind, then slept
        off with back-off (or Retry-After). The loop holds a place under the cap from its
        first request until it is recorded or given up."""
        stats = self._measure()
        kind = "rng"
        self.ledger.reserve()
        try:
            t0 = time.perf_counter()
            data = await self._call(part, kind, "GET", self.rng, None)
            self.outages[kind].succeeded()
            kind = "hasher"
            t1 = time.perf_counter()
            digest = (await self._call(part, kind, "POST", self.hasher, data)).decode()
            self.outages[kind].succeeded()
            t2 = time.perf_counter()
        except RequestFailed as error:
            self.ledger.release()
            self._room_made()
            self.beats.beat(part)
            await asyncio.sleep(self._failed(kind, error))
            return
        except BaseException:
            self.ledger.release()
            self._room_made()
            raise
        self.ledger.record(digest, data)
        if self.paused_at is not None:
            self.wake.set()  # the flush that makes room can go now
        if self.metrics is not None:
            self.metrics.observe(t1 - t0, t2 - t1)
        if stats is not None:
            stats.rng.append(t1 - t0)
            stats.hasher.append(t2 - t1)
            stats.loops += 1

    async def flush_once(self) -> bool:
        """Send the flush owed (the same one again after a failure); False (and the outage
        logged once) when Redis fails. True when nothing was owed or Redis confirmed it."""
        flush = self.ledger.next_flush()
        if flush is None:
            return True
        try:
            applied = await self.script.apply(flush)
        except (RedisError, OSError) as error:
            self.redis_backoff = self.redis_outage.failed(f"{type(error).__name__}: {error}")
            return False
        self.redis_outage.succeeded()
        self.ledger.confirm(flush, applied)
        if not applied:
            log.info(
                "flush %d (%d hashes) had been applied by Redis before its reply was lost: "
                "confirmed, not applied twice",
                flush.seq,
                flush.hashes,
            )
        self._room_made()
        return True

    def _flush_now(self) -> bool:
        """Mining is paused and a flush would make room. (Paused with nothing owed, only
        loops under way, there is nothing to flush yet: waking then would spin.)"""
        return self.paused_at is not None and self.ledger.unconfirmed_hashes > 0

    async def _nap(self, seconds: float, early: bool) -> None:
        """Sleep `seconds`, or less when the loops stop or (`early`) a flush would let a
        paused mining go on."""
        deadline = time.monotonic() + seconds
        while not self.loops_stopped.is_set() and not (early and self._flush_now()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=remaining)

    async def flusher(self) -> None:
        """Writes to Redis every flush interval (at once when mining pauses at the cap)
        until the loops have stopped, then until nothing is owed (the caller bounds that by
        WORKER_SHUTDOWN_TIMEOUT)."""
        ok = True
        while not self.loops_stopped.is_set():
            self.beats.beat(FLUSHER)
            await self._nap(self.settings.flush_interval if ok else self.redis_backoff, ok)
            if self.loops_stopped.is_set():
                break
            self.beats.beat(FLUSHER)
            ok = await self.flush_once()
        self.beats.forget(FLUSHER)
        while self.ledger.unconfirmed_hashes:
            if not await self.flush_once():
                await asyncio.sleep(self.redis_backoff)

    async def heartbeat(self) -> None:
        """Touch the heartbeat file every HEARTBEAT_INTERVAL while every loop and the
        flusher beat within the stall limit (worker_heartbeat.py)."""
        path = Path(self.settings.heartbeat) if self.settings.heartbeat else None
        if path is None:
            return
        warned = False
        stalled_since: float | None = None
        while not self.stop.is_set():
            stalled = self.beats.stalled()
            if stalled and stalled_since is None:
                stalled_since = time.monotonic()
                part, quiet = stalled[0]
                log.warning(
                    "heartbeat stopped: %s has not moved on for %.0f s (more than the %.0f s "
                    "any wait on rng, hasher or Redis takes); the health check will fail",
                    part,
                    quiet,
                    self.beats.limit,
                )
            elif not stalled and stalled_since is not None:
                log.info("heartbeat again after %.0f s", time.monotonic() - stalled_since)
                stalled_since = None
            if not stalled:
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
            "mining as worker %s: rng %s, hasher %s, redis %s (%s), %d loop(s), delay %.3f s, "
            "at most %d hashes owed",
            self.worker_id,
            settings.rng_url,
            settings.hasher_url,
            redacted_url(settings.redis_url),
            "password from REDIS_PASSWORD_FILE" if settings.redis_password_file else "no password",
            settings.concurrency,
            settings.delay,
            settings.max_owed_hashes,
        )
        server: web.AppRunner | None = None
        if self.metrics is not None:
            server = await serve(self.metrics, settings.host, settings.metrics_port)
        miners = [
            loop.create_task(self.mine(f"mining loop {index + 1}"))
            for index in range(settings.concurrency)
        ]
        flusher = loop.create_task(self.flusher())
        beat = loop.create_task(self.heartbeat())
        await self.stop.wait()
        for task in miners:
            task.cancel()
        await asyncio.gather(*miners, return_exceptions=True)
        self.loops_stopped.set()
        self.wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(flusher, timeout=settings.shutdown_timeout)
        await asyncio.gather(beat, return_exceptions=True)
        ledger = self.ledger
        log.info(
            "stopped after %d loops (%d coins); %d hashes and %d coins not confirmed by Redis; "
            "worker %s: Redis confirmed %d hashes and %d coins in %d flushes",
            ledger.loops,
            ledger.coins,
            ledger.unconfirmed_hashes,
            ledger.unconfirmed_coins,
            self.worker_id,
            ledger.confirmed_hashes,
            ledger.confirmed_coins,
            ledger.confirmed_seq,
        )
        if self.latencies is not None:
            log.info("stats %s", json.dumps(self.latencies.summary()))
        closings = [self.client.close(), self.db.aclose()]
        if server is not None:
            closings.append(server.cleanup())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*closings, return_exceptions=True), timeout=CLOSE_TIMEOUT
            )


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is pinned in requirements.txt
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main() -> int:
    try:
        settings = Settings.from_env()
        password = redis_password(settings)
    except ValueError as error:
        logging.basicConfig(format="%(asctime)s %(levelname)s worker %(message)s")
        log.error("bad setting: %s", error)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s worker %(message)s"
    )
    with asyncio.Runner(loop_factory=_new_event_loop) as runner:
        runner.run(Worker(settings, redis_password=password).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
