"""Two rng instances behind one name: the worker's requests reach both.

The name must resolve to both addresses without touching the machine's /etc/hosts: the
worker runs in a private mount namespace (`unshare -m`) where a hosts file written by the
test is bind-mounted over /etc/hosts. The worker resolves the name like in a swarm with
`--endpoint-mode dnsrr`, where the service name resolves to every task's address.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
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
NAME = "dockercoins-rng-spread-test"
SERVED = r'"GET /32 HTTP/1.1" 200'


def _why_no_private_hosts(tmp_path: Path) -> str | None:
    """Why the worker cannot get a private /etc/hosts here (None: it can)."""
    if shutil.which("unshare") is None:
        return "unshare(1) is missing (apt-get install util-linux)"
    if os.geteuid() != 0:
        return "needs root for `unshare -m` and a bind mount over /etc/hosts"
    probe = tmp_path / "hosts-probe"
    probe.write_text("127.0.0.1 localhost\n")
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind {probe} /etc/hosts"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if result.returncode != 0:
        return f"`unshare -m` with a bind mount over /etc/hosts failed: {result.stderr.strip()}"
    return None


@pytest.fixture
def worker_in_namespace(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory: run worker.py with `hosts` lines as its /etc/hosts; stopped after the test."""
    why = _why_no_private_hosts(tmp_path)
    if why:
        pytest.fail(f"cannot give the worker its own /etc/hosts: {why}")
    started: list[subprocess.Popen[bytes]] = []

    def start(hosts: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
        hosts_file = tmp_path / "hosts"
        hosts_file.write_text(hosts)
        script = f'mount --bind "{hosts_file}" /etc/hosts && exec "{sys.executable}" worker.py'
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["unshare", "-m", "sh", "-c", script],
                cwd=SERVICES_DIR / "worker",
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def test_requests_spread_over_two_rng_instances_behind_one_name(
    start_service: StartService,
    redis_server: RedisServer,
    worker_in_namespace: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    port = free_port()
    rngs = [
        start_service("rng", wait=False, HOST=host, PORT=str(port), RNG_DELAY="0", ACCESS_LOG="1")
        for host in ("127.0.0.1", "127.0.0.2")
    ]
    for host in ("127.0.0.1", "127.0.0.2"):
        wait_for(lambda h=host: httpx.get(f"http://{h}:{port}/", timeout=1).status_code == 200)
    hasher = start_service("hasher", HASHER_DELAY="0")

    # One loop, one kept-alive connection per address: without rotation, one rng only.
    log = tmp_path / "worker.log"
    metrics_port = free_port()
    worker = worker_in_namespace(
        f"127.0.0.1 localhost\n127.0.0.1 {NAME}\n127.0.0.2 {NAME}\n",
        log,
        RNG_URL=f"http://{NAME}:{port}/32",
        HASHER_URL=f"{hasher.url}/",
        REDIS_URL=redis_server.url,
        WORKER_DELAY="0.005",
        WORKER_CONCURRENCY="1",
        WORKER_CONN_MAX_AGE="3600",
        WORKER_HEARTBEAT=str(tmp_path / "heartbeat"),
        HOST=LOOPBACK,
        WORKER_METRICS_PORT=str(metrics_port),
    )
    wait_for(lambda: all(len(re.findall(SERVED, rng.logs())) >= 20 for rng in rngs), timeout=30)
    # The worker's metrics name each rng that answered by IP:port, about half each.
    page = MetricsPage.parse(httpx.get(f"http://{LOOPBACK}:{metrics_port}/metrics").text)
    answered = [
        page.value(
            "dockercoins_worker_upstream_requests_total", service="rng", address=f"{host}:{port}"
        )
        for host in ("127.0.0.1", "127.0.0.2")
    ]
    assert min(answered) >= 10, answered
    assert abs(answered[0] - answered[1]) <= 1, answered
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=5) == 0, log.read_text()

    served = [len(re.findall(SERVED, rng.logs())) for rng in rngs]
    # Round-robin: the two counts differ by at most one.
    assert abs(served[0] - served[1]) <= 1, served
    db = redis.Redis(host="127.0.0.1", port=redis_server.port)
    loops = int(re.findall(r"stopped after (\d+) loops", log.read_text())[0])
    assert int(db.get("hashes") or 0) == loops
    assert sum(served) >= loops
