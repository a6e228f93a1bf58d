"""Bad answers from rng and hasher, and a Redis name that resolves slowly: the worker logs
one line per failure of each kind, counts nothing for a failed loop, keeps mining, never
crashes, honours Retry-After, and leaves no exception unretrieved ("Future exception was
never retrieved", "Task exception was never retrieved")."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services.test_worker import (
    ERRORS,
    LOOPS,
    HasUrl,
    StartService,
    backends,
    confirmed_by_redis,
    count,
    hashes,
    metrics_of,
    start_worker,
    stop_worker,
)
from tests.support.servers import (
    LOOPBACK,
    SERVICES_DIR,
    RedisServer,
    ServiceProcess,
    free_port,
    wait_for,
)

UNRETRIEVED = "exception was never retrieved"
RETRY_AFTER = 1  # seconds asked by the 503


class FlakyUpstream:
    """A loopback HTTP/1.1 server playing rng (GET: 32 random bytes) or hasher (POST: the
    sha256 hex digest of the body), keep-alive, that answers the requests numbered in
    `faults` with a fault instead: "500"; "503" with Retry-After; "truncated" (a
    Content-Length larger than the bytes sent, then the connection closed). `ok` counts
    the good answers, `arrivals` the monotonic time of each request. Once `down` is set it
    closes every connection without an answer."""

    def __init__(self, role: str, faults: dict[int, str]) -> None:
        self.role = role
        self.faults = faults
        self.port = free_port()
        self.requests = 0
        self.ok = 0
        self.arrivals: list[float] = []
        self.down = False
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self.thread.start()
        assert self.ready.wait(10), "the flaky upstream did not start"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, LOOPBACK, self.port)
        )
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
            self.loop.run_until_complete(server.wait_closed())
            self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                body = await reader.readexactly(int(length.group(1))) if length else b""
                if self.down:
                    break
                self.requests += 1
                self.arrivals.append(time.monotonic())
                fault = self.faults.get(self.requests)
                if fault == "truncated":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n0123456789")
                    await writer.drain()
                    break
                if fault == "500":
                    writer.write(_answer(500, b"boom"))
                elif fault == "503":
                    writer.write(_answer(503, b"busy", f"Retry-After: {RETRY_AFTER}\r\n"))
                else:
                    self.ok += 1
                    good = os.urandom(32) if self.role == "rng" else _hex(body)
                    writer.write(_answer(200, good))
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _hex(body: bytes) -> bytes:
    return hashlib.sha256(body).hexdigest().encode()


def _answer(status: int, body: bytes, extra: str = "") -> bytes:
    reason = {200: "OK", 500: "Internal Server Error", 503: "Service Unavailable"}[status]
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


@pytest.fixture
def flaky() -> Iterator[Callable[[str, dict[int, str]], FlakyUpstream]]:
    started: list[FlakyUpstream] = []

    def start(role: str, faults: dict[int, str]) -> FlakyUpstream:
        upstream = FlakyUpstream(role, faults)
        started.append(upstream)
        upstream.start()
        return upstream

    try:
        yield start
    finally:
        for upstream in started:
            upstream.stop()


FAULTS = {5: "500", 15: "503", 25: "truncated"}
FAILURE_LINES = {
    "500": r"HTTP 500",
    "503": rf"HTTP 503 \(Retry-After {RETRY_AFTER} s\)",
    "truncated": r"ClientPayloadError",
}


@pytest.mark.parametrize("kind", ["rng", "hasher"])
def test_a_500_a_503_and_a_truncated_body_are_one_line_each_and_count_nothing(
    start_service: StartService,
    redis_server: RedisServer,
    flaky: Callable[[str, dict[int, str]], FlakyUpstream],
    tmp_path: Path,
    kind: str,
) -> None:
    fake = flaky(kind, FAULTS)
    if kind == "rng":
        rng: HasUrl = fake
        hasher: HasUrl = start_service("hasher", HASHER_DELAY="0")
    else:
        rng = start_service("rng", RNG_DELAY="0", RNG_CONCURRENCY="8")
        hasher = fake
    worker = start_worker(
        start_service,
        rng,
        hasher,
        redis_server,
        tmp_path,
        WORKER_CONCURRENCY="1",  # one loop: the request after the 503 is the next one it makes
        WORKER_FLUSH_INTERVAL="0.1",
    )
    # Every fault served, each followed by good answers: three failures, three recoveries.
    wait_for(lambda: fake.requests >= max(FAULTS) + 10)
    wait_for(lambda: count(worker.logs(), f"{kind} is back") == len(FAULTS))
    logs = worker.logs()
    assert count(logs, f"{kind} failing") == len(FAULTS), logs
    for fault, line in FAILURE_LINES.items():
        assert len(re.findall(rf"WARNING worker {kind} failing: .*{line}", logs)) == 1, (
            fault,
            logs,
        )
    assert metrics_of(worker).value(ERRORS, kind=kind) == len(FAULTS)
    # Retry-After: the worker asked again only once the time asked had passed (a lower bound,
    # which a slow machine only makes easier to meet).
    held = fake.arrivals[15] - fake.arrivals[14]  # requests 15 (the 503) and 16
    assert held >= RETRY_AFTER * 0.99

    # Stop answering: when no loop is under way, every loop counted had a good answer.
    fake.down = True
    wait_for(lambda: metrics_of(worker).value(LOOPS) == fake.ok)
    loops, _coins, owed_hashes, _owed_coins = stop_worker(worker)
    assert loops == fake.ok
    assert owed_hashes == 0
    assert hashes(redis_server) == loops == confirmed_by_redis(worker.logs())[1]
    logs = worker.logs()
    assert UNRETRIEVED not in logs, logs
    assert "Traceback" not in logs, logs


# --- a Redis name that resolves slowly --------------------------------------------------------


class SilentDns:
    """A UDP socket on <address>:53 that reads every query and never answers: a resolver
    asking it waits its whole timeout, as during swarm changes when names resolve slowly."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((address, 53))
        except OSError as error:
            self.sock.close()
            pytest.fail(f"cannot listen on {address}:53 for the test's silent DNS: {error}")
        self.sock.settimeout(0.2)
        self.queries = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                self.sock.recv(4096)
                self.queries += 1

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def silent_dns() -> Iterator[SilentDns]:
    dns = SilentDns(f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.53")
    try:
        yield dns
    finally:
        dns.close()


def test_a_redis_name_that_resolves_slowly_leaves_no_exception_unretrieved(
    start_service: StartService, silent_dns: SilentDns, tmp_path: Path
) -> None:
    """The worker, in a mount namespace of its own whose /etc/resolv.conf names the silent
    DNS, is given REDIS_URL with a name: each connection attempt is cut by the 1 s connect
    timeout while the name is being resolved (the resolver gives up after 2 s)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test needs root and unshare(1) to give the worker its own resolv.conf")
    resolv, hosts = tmp_path / "resolv.conf", tmp_path / "hosts"
    resolv.write_text(
        f"nameserver {silent_dns.sock.getsockname()[0]}\noptions timeout:2 attempts:1\n"
    )
    hosts.write_text("127.0.0.1 localhost\n")
    rng, hasher = backends(start_service)
    metrics_port = free_port()
    env = {
        **os.environ,
        "RNG_URL": f"{rng.url}/32",
        "HASHER_URL": f"{hasher.url}/",
        "REDIS_URL": "redis://dc-slow-redis:6379/0",
        "WORKER_BACKOFF_MAX": "0.2",
        "WORKER_HEARTBEAT": "",
        "HOST": LOOPBACK,
        "WORKER_METRICS_PORT": str(metrics_port),
    }
    script = (
        'mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && exec "$3" worker.py'
    )
    log = tmp_path / "worker-dns.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", script, "sh", str(resolv), str(hosts), sys.executable],
            cwd=SERVICES_DIR / "worker",
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    worker = ServiceProcess("worker", env={"WORKER_METRICS_PORT": str(metrics_port)}, proc=proc)
    worker.log_path = log
    try:
        wait_for(lambda: "redis failing" in worker.logs())
        # Attempts are one after the other, each cut at 1 s: by the fourth failure the first
        # attempts' resolutions (2 s) have ended, and their errors would have been reported.
        wait_for(lambda: metrics_of(worker).value(ERRORS, kind="redis") >= 4, timeout=30)
        assert silent_dns.queries > 0  # the names went to the silent DNS
        loops, _coins, owed_hashes, _owed_coins = stop_worker(worker)
    finally:
        worker.stop()
    logs = worker.logs()
    assert loops > 0 and owed_hashes == loops  # mining went on; nothing could be written
    assert count(logs, "redis failing") == 1, logs
    assert UNRETRIEVED not in logs, logs
    assert "Traceback" not in logs, logs
