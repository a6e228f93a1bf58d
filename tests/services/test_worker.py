"""The worker as a real process against real rng, hasher and Redis: it mines, survives
outages of each of them without losing a hash, stops cleanly on SIGTERM/SIGINT, and its
/metrics tell what it did. Restarts of Redis, lost replies and the cap on what is owed:
test_worker_exactly_once.py; bad answers from rng and hasher: test_worker_faults.py."""

from __future__ import annotations

import hashlib
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import httpx
import pytest
import redis
from dockercoins.bench.metrics_page import MetricsPage

from tests.support.servers import LOOPBACK, RedisServer, ServiceProcess, free_port, wait_for

StartService = Callable[..., ServiceProcess]

STOPPED = re.compile(r"stopped after (\d+) loops \((\d+) coins\); (\d+) hashes and (\d+) coins")
CONFIRMED = re.compile(
    r"worker (\S+): Redis confirmed (\d+) hashes and (\d+) coins in (\d+) flushes"
)
# The worker's own deadline after a signal is WORKER_SHUTDOWN_TIMEOUT (0.8 s) for the last
# write plus 0.2 s for closing: about 1 s. The test allows docker stop's grace period, so a
# busy 2-core machine does not make it fail; a worker that hangs still does.
EXIT_BOUND = 10.0
LEDGER_SEQ = "dockercoins:ledger:seq"
LEDGER_HASHES = "dockercoins:ledger:hashes"


def db_of(server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)


def hashes(server: RedisServer) -> int:
    return int(db_of(server).get("hashes") or 0)


def wallet_of(server: RedisServer) -> dict[bytes, bytes]:
    """The `wallet` hash, raw bytes (the client does not decode)."""
    raw: dict[bytes, bytes] = db_of(server).hgetall("wallet")  # type: ignore[assignment]
    return raw


def backends(start_service: StartService) -> tuple[ServiceProcess, ServiceProcess]:
    rng = start_service("rng", RNG_DELAY="0", RNG_CONCURRENCY="8", ACCESS_LOG="1")
    hasher = start_service("hasher", HASHER_DELAY="0")
    return rng, hasher


class HasUrl(Protocol):
    """rng or hasher: a ServiceProcess, or a server of the test's own."""

    @property
    def url(self) -> str: ...


def start_worker(
    start_service: StartService,
    rng: HasUrl,
    hasher: HasUrl,
    server: RedisServer,
    tmp_path: Path,
    **env: str,
) -> ServiceProcess:
    settings = {
        "RNG_URL": f"{rng.url}/32",
        "HASHER_URL": f"{hasher.url}/",
        "REDIS_URL": server.url,
        "WORKER_DELAY": "0.005",
        "WORKER_CONCURRENCY": "4",
        "WORKER_BACKOFF_MAX": "0.5",
        "WORKER_HEARTBEAT": str(tmp_path / "heartbeat"),
        "WORKER_METRICS_PORT": str(free_port()),
        **env,
    }
    return start_service("worker", wait=False, **settings)


def metrics_of(worker: ServiceProcess) -> MetricsPage:
    """The worker's /metrics, parsed by prometheus_client.parser.text_string_to_metric_families."""
    url = f"http://{LOOPBACK}:{worker.env['WORKER_METRICS_PORT']}/metrics"
    answer = httpx.get(url, timeout=2)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return MetricsPage.parse(answer.text)


def stop_worker(worker: ServiceProcess, signum: int = signal.SIGTERM) -> tuple[int, ...]:
    """Signal the worker; it must exit 0 (within EXIT_BOUND s). The numbers of its last log
    line: (loops, coins, hashes not confirmed, coins not confirmed)."""
    assert worker.proc is not None
    assert worker.proc.poll() is None, f"the worker exited before the signal:\n{worker.logs()}"
    worker.proc.send_signal(signum)
    try:
        code = worker.proc.wait(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not exit within {EXIT_BOUND} s of the signal")
    assert code == 0, worker.logs()
    found = STOPPED.findall(worker.logs())
    assert len(found) == 1, worker.logs()
    return tuple(int(n) for n in found[0])


def confirmed_by_redis(logs: str) -> tuple[str, int, int, int]:
    """From a stopped worker's last line: (worker id, hashes, coins, flushes) that Redis
    confirmed to it."""
    found = CONFIRMED.findall(logs)
    assert len(found) == 1, logs
    worker_id, confirmed_hashes, coins, flushes = found[0]
    return worker_id, int(confirmed_hashes), int(coins), int(flushes)


def ledger_of(server: RedisServer, worker_id: str) -> tuple[int, int, int]:
    """(last flush applied, hashes applied) of `worker_id` in Redis's ledger, and `hashes`,
    read in one transaction (a flush still in a socket may be applied meanwhile)."""
    with db_of(server).pipeline(transaction=True) as pipe:
        pipe.hget(LEDGER_SEQ, worker_id)
        pipe.hget(LEDGER_HASHES, worker_id)
        pipe.get("hashes")
        seq, applied, total = pipe.execute()
    return int(seq or 0), int(applied or 0), int(total or 0)


def count(text: str, pattern: str) -> int:
    return len(re.findall(pattern, text))


def test_worker_mines_real_coins(
    start_service: StartService, redis_server: RedisServer, tmp_path: Path
) -> None:
    rng, hasher = backends(start_service)
    worker = start_worker(start_service, rng, hasher, redis_server, tmp_path)
    wait_for(lambda: hashes(redis_server) > 0)
    first = hashes(redis_server)
    wait_for(lambda: hashes(redis_server) > first)
    wait_for(lambda: db_of(redis_server).hlen("wallet") >= 3, timeout=30)
    assert (tmp_path / "heartbeat").exists()
    loops, coins, owed_hashes, owed_coins = stop_worker(worker)

    wallet = wallet_of(redis_server)
    assert wallet
    for digest, data in wallet.items():
        assert digest.startswith(b"0")
        assert len(data) == 32
        assert hashlib.sha256(data).hexdigest().encode() == digest
    assert (owed_hashes, owed_coins) == (0, 0)
    assert hashes(redis_server) == loops
    assert len(wallet) == coins


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_worker_and_writes_what_it_owes(
    start_service: StartService, redis_server: RedisServer, tmp_path: Path, signum: int
) -> None:
    rng, hasher = backends(start_service)
    # A flush interval far longer than the test: everything is still owed at the signal.
    worker = start_worker(
        start_service, rng, hasher, redis_server, tmp_path, WORKER_FLUSH_INTERVAL="3600"
    )
    wait_for(lambda: count(rng.logs(), r'"GET /32 HTTP/1.1" 200') >= 20)
    assert hashes(redis_server) == 0
    loops, coins, owed_hashes, owed_coins = stop_worker(worker, signum)
    assert loops > 0
    assert (owed_hashes, owed_coins) == (0, 0)
    assert hashes(redis_server) == loops
    assert db_of(redis_server).hlen("wallet") == coins


def test_redis_outage_loses_no_hash(
    start_service: StartService, redis_server: RedisServer, tmp_path: Path
) -> None:
    rng, hasher = backends(start_service)
    worker = start_worker(start_service, rng, hasher, redis_server, tmp_path)
    wait_for(lambda: hashes(redis_server) > 0)

    # Stop Redis with its data saved (the fixture runs it without persistence), so the
    # counter survives the restart and must end equal to every loop the worker did.
    db_of(redis_server).shutdown(save=True)
    assert redis_server.proc is not None
    redis_server.proc.wait(timeout=10)
    wait_for(lambda: "redis failing" in worker.logs())
    served = count(rng.logs(), r'"GET /32 HTTP/1.1" 200')
    wait_for(lambda: count(rng.logs(), r'"GET /32 HTTP/1.1" 200') >= served + 50)  # mining on
    redis_server.start()
    wait_for(lambda: "redis is back" in worker.logs())
    wait_for(lambda: hashes(redis_server) > 0)

    loops, _coins, owed_hashes, _owed_coins = stop_worker(worker)
    logs = worker.logs()
    assert count(logs, "redis failing") == 1, logs
    assert count(logs, "redis is back") == 1, logs
    assert owed_hashes == 0
    assert hashes(redis_server) == loops
    for digest, data in wallet_of(redis_server).items():
        assert hashlib.sha256(data).hexdigest().encode() == digest


@pytest.mark.parametrize("kind", ["rng", "hasher"])
def test_worker_recovers_from_rng_and_hasher_outages(
    start_service: StartService, redis_server: RedisServer, tmp_path: Path, kind: str
) -> None:
    rng, hasher = backends(start_service)
    worker = start_worker(start_service, rng, hasher, redis_server, tmp_path)
    wait_for(lambda: hashes(redis_server) > 0)

    down = rng if kind == "rng" else hasher
    down.stop()
    wait_for(lambda: f"{kind} failing" in worker.logs())
    # Let several attempts fail (the back-off is capped at 0.5 s in this test).
    time.sleep(1.5)
    before = hashes(redis_server)
    down.start()  # same port
    wait_for(lambda: f"{kind} is back" in worker.logs())
    wait_for(lambda: hashes(redis_server) > before)

    loops, _coins, owed_hashes, _owed_coins = stop_worker(worker)
    logs = worker.logs()
    assert count(logs, f"{kind} failing") == 1, logs
    back = re.findall(rf"{kind} is back after [0-9.]+ s \((\d+) failed attempts\)", logs)
    assert len(back) == 1, logs
    assert int(back[0]) > 1  # many attempts, one line
    assert owed_hashes == 0
    assert hashes(redis_server) == loops


def test_a_wallet_of_the_wrong_type_writes_nothing_until_it_can_write_everything(
    start_service: StartService, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The flush is one script that checks every key before its first write: with `wallet`
    not a hash nothing at all is written (not even the hashes), the flush is retried with
    the same number, and once the wallet can take the coins everything is written once."""
    db = db_of(redis_server)
    db.set("wallet", "not a hash")
    rng, hasher = backends(start_service)
    worker = start_worker(start_service, rng, hasher, redis_server, tmp_path)
    wait_for(lambda: "redis failing" in worker.logs() and "WRONGTYPE" in worker.logs())
    wait_for(lambda: metrics_of(worker).value(ERRORS, kind="redis") >= 3)
    assert hashes(redis_server) == 0
    assert db.hlen(LEDGER_SEQ) == db.hlen(LEDGER_HASHES) == 0
    db.delete("wallet")
    wait_for(lambda: "redis is back" in worker.logs())
    wait_for(lambda: hashes(redis_server) > 0)
    loops, coins, owed_hashes, owed_coins = stop_worker(worker)
    worker_id, confirmed, confirmed_coins, flushes = confirmed_by_redis(worker.logs())
    assert (owed_hashes, owed_coins) == (0, 0)
    assert hashes(redis_server) == loops == confirmed
    assert db.hlen("wallet") == coins == confirmed_coins
    assert ledger_of(redis_server, worker_id) == (flushes, confirmed, confirmed)
    assert count(worker.logs(), "redis failing") == 1


def test_sigterm_with_redis_hung_still_exits_in_time_and_says_what_it_could_not_write(
    start_service: StartService, redis_server: RedisServer, tmp_path: Path
) -> None:
    rng, hasher = backends(start_service)
    worker = start_worker(start_service, rng, hasher, redis_server, tmp_path)
    wait_for(lambda: hashes(redis_server) > 0)
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    try:
        served = count(rng.logs(), r'"GET /32 HTTP/1.1" 200')
        wait_for(lambda: count(rng.logs(), r'"GET /32 HTTP/1.1" 200') >= served + 20)
        loops, _coins, owed_hashes, _owed_coins = stop_worker(worker)
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert owed_hashes > 0  # reported, not silently dropped
    worker_id, confirmed, _confirmed_coins, flushes = confirmed_by_redis(worker.logs())
    assert loops == confirmed + owed_hashes
    # What Redis applied is at least what it confirmed (a flush cut off by the deadline may
    # have been applied too), and never more than the worker computed.
    seq, applied, total = ledger_of(redis_server, worker_id)
    assert seq >= flushes
    assert confirmed <= applied == total <= loops


# --- /metrics ----------------------------------------------------------------------------------

LOOPS = "dockercoins_worker_loops_total"
HASHES = "dockercoins_worker_hashes_total"
COINS = "dockercoins_worker_coins_total"
PENDING = "dockercoins_worker_pending_hashes"
CONFIRMED_HASHES = "dockercoins_worker_confirmed_hashes_total"
CONFIRMED_COINS = "dockercoins_worker_confirmed_coins_total"
CONFIRMED_SEQ = "dockercoins_worker_confirmed_seq"
FLUSHES = "dockercoins_worker_flushes_total"
ERRORS = "dockercoins_worker_errors_total"
ANSWERED = "dockercoins_worker_upstream_requests_total"
LATENCIES = "dockercoins_worker_upstream_seconds_count"


def test_worker_metrics_follow_the_mining(
    start_service: StartService, redis_server: RedisServer, tmp_path: Path
) -> None:
    rng, hasher = backends(start_service)
    worker = start_worker(
        start_service,
        rng,
        hasher,
        redis_server,
        tmp_path,
        WORKER_FLUSH_INTERVAL="0.1",
        DOCKERCOINS_NODE="node-3",
    )
    wait_for(lambda: metrics_of(worker).value(HASHES) >= 20)
    first = metrics_of(worker)
    wait_for(lambda: metrics_of(worker).value(LOOPS) > first.value(LOOPS))
    wait_for(lambda: metrics_of(worker).value(HASHES) > first.value(HASHES))
    page = metrics_of(worker)
    answered = {
        (dict(labels)["service"], dict(labels)["address"]): value
        for (name, labels), value in page.samples.items()
        if name == ANSWERED
    }
    rng_address, hasher_address = f"{LOOPBACK}:{rng.port}", f"{LOOPBACK}:{hasher.port}"
    assert set(answered) == {("rng", rng_address), ("hasher", hasher_address)}
    assert all(value >= page.value(LOOPS) for value in answered.values())
    assert page.value(LATENCIES, service="rng") >= first.value(LOOPS)
    assert page.value(LATENCIES, service="hasher") >= first.value(LOOPS)
    identity = {"service": "worker", "hostname": socket.gethostname(), "node": "node-3"}
    assert page.value("dockercoins_instance_info", **identity) == 1

    # Without rng no loop ends; what was computed is written, then nothing is pending.
    rng.stop()
    wait_for(lambda: metrics_of(worker).value(ERRORS, kind="rng") >= 4)
    wait_for(lambda: metrics_of(worker).value(PENDING) == 0)
    last = metrics_of(worker)
    assert last.value(HASHES) == hashes(redis_server) == last.value(LOOPS)
    assert last.value(COINS) == db_of(redis_server).hlen("wallet")
    assert last.value(ERRORS, kind="hasher") == last.value(ERRORS, kind="redis") == 0
    # The same counts per worker id, as `dockercoins verify` reads them, match the ledger.
    (worker_id,) = {
        dict(labels)["worker_id"] for (name, labels) in last.samples if name == CONFIRMED_SEQ
    }
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}-[0-9a-f]{{8}}", worker_id)
    seq = int(last.value(CONFIRMED_SEQ, worker_id=worker_id))
    assert last.value(CONFIRMED_HASHES, worker_id=worker_id) == last.value(HASHES)
    assert last.value(CONFIRMED_COINS, worker_id=worker_id) == last.value(COINS)
    assert ledger_of(redis_server, worker_id) == (seq, last.value(HASHES), hashes(redis_server))
    assert last.value(FLUSHES, result="applied") == seq > 1
    assert last.value(FLUSHES, result="already_applied") == 0
    assert last.value("dockercoins_worker_mining_paused") == 0
    assert last.value("dockercoins_worker_max_owed_hashes") == 100_000
    loops, coins, _owed_hashes, _owed_coins = stop_worker(worker)
    assert (loops, coins) == (last.value(LOOPS), last.value(COINS))
    assert confirmed_by_redis(worker.logs()) == (worker_id, loops, coins, seq)


def test_metrics_off_leaves_the_port_closed(
    start_service: StartService, redis_server: RedisServer, tmp_path: Path
) -> None:
    rng, hasher = backends(start_service)
    worker = start_worker(start_service, rng, hasher, redis_server, tmp_path, METRICS="0")
    wait_for(lambda: hashes(redis_server) > 0)
    port = int(worker.env["WORKER_METRICS_PORT"])
    with pytest.raises(ConnectionRefusedError), socket.create_connection((LOOPBACK, port), 1):
        pass
    stop_worker(worker)
    assert "metrics on" not in worker.logs()


def test_a_busy_metrics_port_is_logged_and_mining_goes_on(
    start_service: StartService, redis_server: RedisServer, tmp_path: Path
) -> None:
    rng, hasher = backends(start_service)
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        worker = start_worker(
            start_service, rng, hasher, redis_server, tmp_path, WORKER_METRICS_PORT=str(port)
        )
        wait_for(lambda: hashes(redis_server) > 0)
        loops, *_ = stop_worker(worker)
    assert count(worker.logs(), f"no /metrics: cannot listen on {LOOPBACK}:{port}") == 1
    assert hashes(redis_server) == loops
