"""The images' health checks (services/<name>/<name>_probe.py) run as the HEALTHCHECK runs
them (python -I -S, standard library only), against the services as real processes on free
loopback ports: healthy when the service answers on the port asked, as the contract says,
also when it is busy or its own dependencies are away; unhealthy on any other port or
answer. The worker's: fresh while it waits on services that are down or never answer,
stale while its event loop is stopped (SIGSTOP)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from dockercoins.bench.metrics_page import MetricsPage

from tests.support.servers import (
    LOOPBACK,
    SERVICES_DIR,
    RedisServer,
    ServiceProcess,
    free_port,
    wait_for,
)

StartService = Callable[..., ServiceProcess]


def probe(service: str, *args: str) -> tuple[int, str]:
    """(exit status, its one line) of services/<service>/<service>_probe.py ARGS."""
    script = SERVICES_DIR / service / f"{service}_probe.py"
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(script), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return proc.returncode, lines[0]


def test_rng_probe_answers_at_once_while_the_queue_is_full(start_service: StartService) -> None:
    rng = start_service("rng", RNG_DELAY="2", RNG_MAX_WAITING="2")
    assert probe("rng", str(rng.port)) == (0, f"rng serves 32 random bytes on port {rng.port}")

    def ask() -> None:
        with httpx.Client(timeout=20) as client:
            client.get(f"{rng.url}/32")

    queued = [threading.Thread(target=ask, daemon=True) for _ in range(3)]
    for thread in queued:
        thread.start()

    def full() -> bool:  # one served, two waiting (/metrics is never queued)
        page = MetricsPage.parse(httpx.get(f"{rng.url}/metrics", timeout=5).text)
        return page.value("dockercoins_rng_queue_length") == 2

    wait_for(full, timeout=15, interval=0.1)
    # the queue takes 4 s or more to drain, the probe gives up after 2 s: it did not wait
    status, line = probe("rng", str(rng.port))
    assert (status, line) == (0, f"rng serves 32 random bytes on port {rng.port}")
    for thread in queued:
        thread.join(30)


def test_rng_probe_fails_on_another_port_or_another_service(start_service: StartService) -> None:
    hasher = start_service("hasher", HASHER_DELAY="0")
    nobody = free_port()
    status, line = probe("rng", str(nobody))
    assert status == 1
    assert line.startswith(f"unhealthy: GET /health on port {nobody}: ")
    assert "refused" in line
    assert probe("rng", str(hasher.port)) == (
        1,
        f"unhealthy: GET /health on port {hasher.port} answered 404",
    )


def test_hasher_probe_checks_the_digest_and_takes_shed_load_as_healthy(
    start_service: StartService,
) -> None:
    quick = start_service("hasher", HASHER_DELAY="0")
    assert probe("hasher", str(quick.port)) == (0, f"hasher hashes on port {quick.port}")
    rng = start_service("rng", RNG_DELAY="0")
    assert probe("hasher", str(rng.port)) == (
        1,
        f"unhealthy: POST / on port {rng.port} answered 405",
    )
    hasher = start_service("hasher", HASHER_DELAY="5", HASHER_MAX_BODIES="1")
    held = threading.Thread(
        target=lambda: httpx.post(hasher.url + "/", content=b"x", timeout=20), daemon=True
    )
    held.start()  # holds the one body allowed for 5 s

    def holding() -> bool:
        page = MetricsPage.parse(httpx.get(f"{hasher.url}/metrics", timeout=5).text)
        return page.value("dockercoins_hasher_requests_in_progress") == 1

    wait_for(holding, timeout=15, interval=0.1)
    status, line = probe("hasher", str(hasher.port))
    assert status == 0
    assert line.startswith(f"hasher on port {hasher.port} is busy (503, Retry-After ")
    held.join(20)


def test_webui_probe_is_healthy_with_or_without_redis(
    start_service: StartService, redis_server: RedisServer
) -> None:
    webui = start_service("webui", REDIS_URL=redis_server.url)
    assert probe("webui", str(webui.port)) == (0, f"webui serves on port {webui.port}: 0 hashes")
    redis_server.stop()
    status, line = probe("webui", str(webui.port))
    assert status == 0
    assert line.startswith(f"webui serves on port {webui.port}; redis unavailable: ")
    nobody = free_port()
    status, line = probe("webui", str(nobody))
    assert status == 1
    assert line.startswith(f"unhealthy: GET /index.html on port {nobody}: ")


@pytest.mark.parametrize("service", ["rng", "hasher", "webui"])
def test_probes_take_one_port_argument(service: str) -> None:
    status, line = probe(service, "eighty")
    assert status == 2
    assert line.startswith("usage: ")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a stuck rng)."""
    listener = socket.create_server((LOOPBACK, 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_worker_heartbeat_stays_fresh_while_it_waits_on_services_that_never_answer(
    start_service: StartService, tmp_path: Path, silent_server: int
) -> None:
    beat = tmp_path / "heartbeat"
    worker = start_service(
        "worker",
        RNG_URL=f"http://{LOOPBACK}:{silent_server}/32",
        HASHER_URL=f"http://{LOOPBACK}:{free_port()}/",
        REDIS_URL=f"redis://{LOOPBACK}:{free_port()}/0",
        WORKER_HEARTBEAT=str(beat),
        WORKER_HTTP_TIMEOUT="1",
        METRICS="0",
    )
    wait_for(beat.exists, timeout=15)
    # three request timeouts and several failed flushes later, still fresh
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        status, line = probe("worker", str(beat))
        assert status == 0, line
        time.sleep(0.5)
    assert "heartbeat stopped" not in worker.logs()

    assert worker.proc is not None
    os.kill(worker.proc.pid, signal.SIGSTOP)  # the event loop stops: nothing beats
    try:
        wait_for(lambda: probe("worker", str(beat))[0] == 1, timeout=20, interval=0.5)
        status, line = probe("worker", str(beat))
        assert line.startswith("unhealthy: heartbeat ")
        assert "event loop is stuck" in line
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    wait_for(lambda: probe("worker", str(beat))[0] == 0, timeout=10, interval=0.5)


def test_worker_probe_without_a_heartbeat_file(tmp_path: Path) -> None:
    status, line = probe("worker", str(tmp_path / "none"))
    assert status == 1
    assert line.startswith("unhealthy: no heartbeat file: ")
