"""Nothing lost, nothing counted twice: the worker against a Redis that restarts under it
(SIGTERM and SIGKILL, with every acknowledged write on disk), against a connection cut after
Redis applied a flush but before its reply reached the worker, and with Redis down long
enough for the owed hashes to reach WORKER_MAX_OWED_HASHES. Also the flush script itself."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from worker_ledger import Flush
from worker_redis import LEDGER_HASHES, LEDGER_SEQ, FlushScript, connect

from tests.services.test_worker import (
    FLUSHES,
    HASHES,
    LOOPS,
    PENDING,
    StartService,
    backends,
    confirmed_by_redis,
    count,
    db_of,
    hashes,
    ledger_of,
    metrics_of,
    start_worker,
    stop_worker,
)
from tests.support.servers import DURABLE, LOOPBACK, RedisServer, wait_for

RESTARTS = 3
SERVED = r'"GET /32 HTTP/1.1" 200'
PAUSED = "dockercoins_worker_mining_paused"


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """redis-server with --appendonly yes --appendfsync always: it replies to a write only
    once the write is on disk, so a restart, even after SIGKILL, loses no acknowledged write."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir=workdir, extra=DURABLE)
    server.start()
    try:
        config = db_of(server).config_get("appendf*sync") | db_of(server).config_get("appendonly")
        assert config == {"appendonly": "yes", "appendfsync": "always"}
        yield server
    finally:
        server.stop()


def restart(server: RedisServer, signum: int) -> None:
    """Stop Redis with `signum`, then start it again on the same port and data."""
    assert server.proc is not None
    server.proc.send_signal(signum)
    server.proc.wait(timeout=15)
    server.start()
    wait_for(lambda: db_of(server).ping())  # the append-only file is loaded


def assert_counted_once(server: RedisServer, worker_outcome: tuple[int, ...], logs: str) -> None:
    """After the worker stopped: Redis's `hashes`, the worker's confirmed total and its
    ledger entry are one number, the loops it did; the wallet holds the coins it confirmed."""
    loops, coins, owed_hashes, owed_coins = worker_outcome
    assert (owed_hashes, owed_coins) == (0, 0), logs
    worker_id, confirmed, confirmed_coins, flushes = confirmed_by_redis(logs)
    assert confirmed == loops
    assert ledger_of(server, worker_id) == (flushes, confirmed, confirmed)
    assert db_of(server).hlen("wallet") == confirmed_coins == coins


# --- Redis restarted under a working worker ---------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_redis_restarted_under_a_working_worker_counts_every_hash_once(
    start_service: StartService, durable_redis: RedisServer, tmp_path: Path, signum: int
) -> None:
    rng, hasher = backends(start_service)
    worker = start_worker(
        start_service, rng, hasher, durable_redis, tmp_path, WORKER_FLUSH_INTERVAL="0.05"
    )
    confirmed = 0.0
    for _ in range(RESTARTS):
        before = confirmed
        wait_for(lambda before=before: metrics_of(worker).value(HASHES) > before)
        restart(durable_redis, signum)
        confirmed = metrics_of(worker).value(HASHES)
    wait_for(lambda: metrics_of(worker).value(HASHES) > confirmed)  # mining and writing on
    outcome = stop_worker(worker)
    logs = worker.logs()
    assert count(logs, "redis failing") >= 1, logs  # the restarts were seen
    assert "Traceback" not in logs
    assert_counted_once(durable_redis, outcome, logs)
    assert hashes(durable_redis) == outcome[0]


# --- a reply lost after Redis applied the flush -------------------------------------------------


def _is_flush(data: bytes) -> bool:
    """A RESP command EVALSHA or EVAL (the flush script)."""
    return b"$7\r\nEVALSHA\r\n" in data or b"$4\r\nEVAL\r\n" in data


class CuttingProxy:
    """A loopback TCP proxy to Redis. Armed, it forwards the next flush command to Redis,
    throws Redis's reply away and closes the worker's connection: applied, never answered."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.armed = 0
        self.cuts = 0
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self._spawn(self._accept)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def arm(self) -> None:
        with self.lock:
            self.armed += 1

    def _spawn(self, target: object, *args: object) -> None:
        assert callable(target)
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection((LOOPBACK, self.redis_port), timeout=5)
            upstream.settimeout(None)
            with self.lock:
                self.sockets += [client, upstream]
            swallow = threading.Event()
            self._spawn(self._to_redis, client, upstream, swallow)
            self._spawn(self._to_worker, upstream, client, swallow)

    def _to_redis(
        self, client: socket.socket, upstream: socket.socket, swallow: threading.Event
    ) -> None:
        try:
            while data := client.recv(65536):
                if _is_flush(data):
                    with self.lock:
                        if self.armed:
                            self.armed -= 1
                            swallow.set()  # before Redis can answer
                upstream.sendall(data)
        except OSError:
            pass
        _close(client, upstream)

    def _to_worker(
        self, upstream: socket.socket, client: socket.socket, swallow: threading.Event
    ) -> None:
        try:
            while data := upstream.recv(65536):
                if swallow.is_set():  # the flush's reply: applied, and never delivered
                    with self.lock:
                        self.cuts += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        _close(client, upstream)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() waiting on it
        self.listener.close()
        with self.lock:
            _close(*self.sockets)
        for thread in self.threads:
            thread.join(timeout=5)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


@pytest.fixture
def cutting_proxy(redis_server: RedisServer) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(redis_server.port)
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_flush_applied_whose_reply_is_lost_is_counted_once(
    start_service: StartService,
    redis_server: RedisServer,
    cutting_proxy: CuttingProxy,
    tmp_path: Path,
) -> None:
    rng, hasher = backends(start_service)
    worker = start_worker(
        start_service,
        rng,
        hasher,
        redis_server,
        tmp_path,
        REDIS_URL=cutting_proxy.url,
        WORKER_FLUSH_INTERVAL="0.05",
    )
    wait_for(lambda: hashes(redis_server) > 0)  # the script is loaded: EVALSHA applies
    for cut in range(1, RESTARTS + 1):
        cutting_proxy.arm()
        wait_for(lambda cut=cut: cutting_proxy.cuts == cut)
        wait_for(lambda cut=cut: metrics_of(worker).value(FLUSHES, result="already_applied") == cut)
    wait_for(lambda: metrics_of(worker).value(FLUSHES, result="applied") > cutting_proxy.cuts)
    outcome = stop_worker(worker)
    logs = worker.logs()
    assert count(logs, "had been applied by Redis before its reply was lost") == RESTARTS, logs
    assert_counted_once(redis_server, outcome, logs)
    assert hashes(redis_server) == outcome[0]


# --- the cap on what is owed -----------------------------------------------------------------


CAP = 200


def test_at_the_cap_mining_pauses_until_redis_is_back_and_nothing_is_lost(
    start_service: StartService, durable_redis: RedisServer, tmp_path: Path
) -> None:
    rng, hasher = backends(start_service)
    worker = start_worker(
        start_service,
        rng,
        hasher,
        durable_redis,
        tmp_path,
        WORKER_MAX_OWED_HASHES=str(CAP),
        WORKER_FLUSH_INTERVAL="0.1",
    )
    wait_for(lambda: hashes(durable_redis) > 0)
    paused_before = count(worker.logs(), "mining paused")
    assert durable_redis.proc is not None
    durable_redis.proc.send_signal(signal.SIGTERM)
    durable_redis.proc.wait(timeout=15)

    # Paused with exactly CAP hashes owed and no loop under way: no request to rng now.
    wait_for(lambda: metrics_of(worker).value(PENDING) == CAP)
    wait_for(lambda: count(rng.logs(), SERVED) == metrics_of(worker).value(LOOPS))
    served = count(rng.logs(), SERVED)
    page = metrics_of(worker)
    assert page.value(PAUSED) == 1
    time.sleep(1.0)  # Redis stays down through several attempts (back-off up to 0.5 s)
    later = metrics_of(worker)
    assert count(rng.logs(), SERVED) == served  # mining paused: rng is not asked
    assert later.value(LOOPS) == page.value(LOOPS)
    assert later.value(PENDING) == CAP  # never grows past the cap, nothing dropped
    logs = worker.logs()
    assert count(logs, "mining paused") == paused_before + 1, logs
    assert count(logs, "redis failing") == 1, logs

    durable_redis.start()
    wait_for(lambda: count(worker.logs(), "mining resumed") == paused_before + 1)
    wait_for(lambda: count(rng.logs(), SERVED) > served)  # mining again
    wait_for(lambda: metrics_of(worker).value(HASHES) > later.value(LOOPS))
    outcome = stop_worker(worker)
    logs = worker.logs()
    assert count(logs, "mining paused") == count(logs, "mining resumed"), logs
    assert_counted_once(durable_redis, outcome, logs)
    assert hashes(durable_redis) == outcome[0]


# --- the flush script, straight against Redis ------------------------------------------------


def test_the_flush_script_applies_a_number_once_and_a_big_flush_whole(
    redis_server: RedisServer,
) -> None:
    """Through the worker's own client: by name (`localhost`, resolved first), a flush of
    5000 coins (more values than Lua's unpack() returns at once), the same number again."""

    async def scenario() -> list[bool]:
        db = connect(f"redis://localhost:{redis_server.port}/0")
        try:
            script = FlushScript(db, "host-0000abcd")
            coins = {f"0{n:063x}": n.to_bytes(32, "big") for n in range(5000)}
            big = Flush(seq=1, hashes=80_000, coins=coins)
            small = Flush(seq=2, hashes=3, coins={})
            return [
                await script.apply(big),
                await script.apply(big),  # its reply was lost: sent again
                await script.apply(small),
                await script.apply(small),
                await script.apply(big),  # an old number: never applied again
            ]
        finally:
            await db.aclose()

    assert asyncio.run(scenario()) == [True, False, True, False, False]
    db = db_of(redis_server)
    assert ledger_of(redis_server, "host-0000abcd") == (2, 80_003, 80_003)
    assert db.hlen("wallet") == 5000
    assert db.hget("wallet", f"0{4999:063x}") == (4999).to_bytes(32, "big")


@pytest.mark.parametrize(
    ("key", "bad"),
    [("hashes", "many"), ("wallet", "not a hash"), (LEDGER_HASHES, "x"), (LEDGER_SEQ, "y")],
)
def test_a_bad_key_makes_the_flush_script_write_nothing(
    redis_server: RedisServer, key: str, bad: str
) -> None:
    db = db_of(redis_server)
    if key.startswith("dockercoins:"):
        db.hset(key, "host-0000abcd", bad)
    else:
        db.set(key, bad)
    before = {name: db.dump(name) for name in ("hashes", "wallet", LEDGER_SEQ, LEDGER_HASHES)}

    async def scenario() -> None:
        db = connect(redis_server.url)
        try:
            flush = Flush(seq=1, hashes=7, coins={"0" + "a" * 63: b"x" * 32})
            await FlushScript(db, "host-0000abcd").apply(flush)
        finally:
            await db.aclose()

    with pytest.raises(redis.ResponseError):
        asyncio.run(scenario())
    assert {name: db.dump(name) for name in before} == before


def test_a_cap_below_the_number_of_loops_still_mines_and_writes(
    start_service: StartService, redis_server: RedisServer, tmp_path: Path
) -> None:
    """WORKER_MAX_OWED_HASHES=1 with 4 loops: one loop at a time, each hash written before
    the next loop starts; mining goes on (the loops and the flusher take turns)."""
    rng, hasher = backends(start_service)
    worker = start_worker(
        start_service, rng, hasher, redis_server, tmp_path, WORKER_MAX_OWED_HASHES="1"
    )
    wait_for(lambda: hashes(redis_server) >= 20)
    page = metrics_of(worker)
    assert page.value(PENDING) <= 1
    outcome = stop_worker(worker)
    logs = worker.logs()
    assert count(logs, "mining paused") == count(logs, "mining resumed") >= 1, logs
    assert_counted_once(redis_server, outcome, logs)
    assert hashes(redis_server) == outcome[0]
