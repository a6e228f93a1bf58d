"""Worker pieces on their own: settings (the rules it shares with the other services are in
test_settings.py), URL targets, address rotation, connection retirement (against a throwaway
aiohttp server in the test), outage logging, the ledger, the metrics read from them."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import webui_settings
from aiohttp import web
from dockercoins.bench.metrics_page import MetricsPage
from redis.asyncio.connection import UnixDomainSocketConnection
from spread_http import (
    AddressBook,
    RequestFailed,
    Resolver,
    SpreadingClient,
    Target,
    retry_after_seconds,
)
from worker import new_worker_id, valid_digest
from worker_ledger import Ledger
from worker_metrics import MiningState, WorkerMetrics, address_label
from worker_outage import Outage
from worker_redis import ResolvingConnection, ResolvingSSLConnection, connect
from worker_settings import Settings, redacted_url

from tests.support.servers import free_port


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolver_of(answers: list[list[str]]) -> tuple[Resolver, list[str]]:
    """A resolver that returns the given lists in turn (the last one forever) and records
    the names it was asked for."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked) - 1, len(answers) - 1)]

    return resolve, asked


# --- settings -----------------------------------------------------------------------------


def test_settings_defaults_match_the_design() -> None:
    settings = Settings.from_env({})
    assert settings.rng_url == "http://rng/32"
    assert settings.hasher_url == "http://hasher/"
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.delay == 0.1
    assert settings.concurrency == 1
    assert settings.heartbeat == "/tmp/worker-heartbeat"
    assert settings.stats is False
    assert settings.metrics_port == 9100
    assert settings.max_owed_hashes == 100_000


def test_settings_read_from_env() -> None:
    settings = Settings.from_env(
        {
            "RNG_URL": "http://10.0.0.5:81/16",
            "WORKER_DELAY": "0",
            "WORKER_CONCURRENCY": "32",
            "WORKER_STATS": "1",
            "LOG_LEVEL": "debug",
        }
    )
    assert (settings.rng_url, settings.delay, settings.concurrency) == (
        "http://10.0.0.5:81/16",
        0.0,
        32,
    )
    assert settings.stats is True
    assert settings.log_level == "DEBUG"


def test_empty_heartbeat_means_no_heartbeat_file() -> None:
    assert Settings.from_env({"WORKER_HEARTBEAT": ""}).heartbeat == ""
    assert Settings.from_env({"WORKER_HEARTBEAT": " /run/beat "}).heartbeat == "/run/beat"


def test_every_variable_overridden() -> None:
    environ = {
        "RNG_URL": "http://rng:8001/16",
        "HASHER_URL": "http://hasher:8002/",
        "REDIS_URL": "redis://:pw@db:6380/2",
        "WORKER_DELAY": "0.5",
        "WORKER_CONCURRENCY": "16",
        "WORKER_FLUSH_INTERVAL": "0.01",
        "WORKER_BACKOFF_MAX": "0.05",
        "WORKER_HTTP_TIMEOUT": "3",
        "WORKER_DNS_TTL": "0",
        "WORKER_CONN_MAX_AGE": "5",
        "WORKER_SHUTDOWN_TIMEOUT": "1.5",
        "WORKER_HEARTBEAT": "/run/beat",
        "WORKER_STATS": "off",
        "WORKER_STATS_WARMUP": "2",
        "LOG_LEVEL": "critical",
        "METRICS": "no",
        "WORKER_METRICS_PORT": "65535",
        "HOST": " 127.0.0.1 ",
        "DOCKERCOINS_NODE": "node-4",
        "WORKER_MAX_OWED_HASHES": "500",
    }
    assert Settings.from_env(environ) == Settings(
        "http://rng:8001/16",
        "http://hasher:8002/",
        "redis://:pw@db:6380/2",
        0.5,
        16,
        0.01,
        0.05,
        3.0,
        0.0,
        5.0,
        1.5,
        "/run/beat",
        False,
        2.0,
        "CRITICAL",
        False,
        65535,
        "127.0.0.1",
        "node-4",
        500,
    )


# --- targets and address rotation -----------------------------------------------------------


def test_target_keeps_name_port_path_and_query() -> None:
    target = Target.parse("http://rng:8001/32?x=1")
    assert (target.host, target.port, target.path, target.query) == ("rng", 8001, "/32", "x=1")
    assert target.host_header == "rng:8001"
    assert str(target.url_for("10.0.0.7")) == "http://10.0.0.7:8001/32?x=1"
    assert str(target.url_for("fd00::7")) == "http://[fd00::7]:8001/32?x=1"
    assert Target.parse("http://hasher/").port == 80
    assert Target.parse("http://hasher").path == "/"


def test_rotation_is_round_robin_over_every_address() -> None:
    async def scenario() -> list[str]:
        resolve, _ = resolver_of([["10.0.0.3", "10.0.0.1", "10.0.0.2"]])
        book = AddressBook(Target.parse("http://rng/32"), resolve, ttl=1.0, clock=FakeClock())
        await book.refresh()
        return [book.next_address() for _ in range(9)]

    picked = asyncio.run(scenario())
    assert Counter(picked) == {"10.0.0.1": 3, "10.0.0.2": 3, "10.0.0.3": 3}
    assert picked[:3] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_address_list_is_cached_for_ttl_then_resolved_again() -> None:
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        clock = FakeClock()
        resolve, asked = resolver_of([["10.0.0.1"], ["10.0.0.1", "10.0.0.2"]])
        book = AddressBook(Target.parse("http://rng/32"), resolve, ttl=1.0, clock=clock)
        await book.refresh()
        first = [book.next_address() for _ in range(4)]
        clock.now += 0.5
        await book.refresh()  # still fresh: not asked again
        assert len(asked) == 1
        clock.now += 0.6
        await book.refresh()  # stale: a new instance shows up
        second = [book.next_address() for _ in range(4)]
        return first, second, asked

    first, second, asked = asyncio.run(scenario())
    assert set(first) == {"10.0.0.1"}
    assert set(second) == {"10.0.0.1", "10.0.0.2"}
    assert asked == ["rng", "rng"]


def test_an_address_marked_down_is_skipped_until_the_next_resolution() -> None:
    async def scenario() -> tuple[set[str], set[str]]:
        clock = FakeClock()
        resolve, _ = resolver_of([["10.0.0.1", "10.0.0.2"]])
        book = AddressBook(Target.parse("http://rng/32"), resolve, ttl=1.0, clock=clock)
        await book.refresh()
        book.mark_down("10.0.0.1")
        while_down = {book.next_address() for _ in range(4)}
        clock.now += 2
        await book.refresh()
        after = {book.next_address() for _ in range(4)}
        return while_down, after

    while_down, after = asyncio.run(scenario())
    assert while_down == {"10.0.0.2"}
    assert after == {"10.0.0.1", "10.0.0.2"}


def test_an_ip_literal_is_never_resolved() -> None:
    async def scenario() -> list[str]:
        resolve, asked = resolver_of([["10.9.9.9"]])
        book = AddressBook(Target.parse("http://127.0.0.1:8001/32"), resolve)
        await book.refresh()
        assert book.next_address() == "127.0.0.1"
        return asked

    assert asyncio.run(scenario()) == []


def test_a_name_that_does_not_resolve_is_a_request_failure() -> None:
    async def scenario() -> None:
        async def broken(host: str, port: int) -> list[str]:
            raise OSError("Name or service not known")

        book = AddressBook(Target.parse("http://rng/32"), broken)
        await book.refresh()

    with pytest.raises(RequestFailed, match="cannot resolve rng"):
        asyncio.run(scenario())


# --- the client against a throwaway server in the test ---------------------------------------


@asynccontextmanager
async def counting_servers(
    hosts: list[str],
) -> AsyncIterator[tuple[int, Counter[str], set[str], set[str]]]:
    """aiohttp servers on every host (same port), counting requests per server address and
    the distinct client connections (peer host:port) seen, and the Host headers."""
    port = free_port()
    per_server: Counter[str] = Counter()
    connections: set[str] = set()
    host_headers: set[str] = set()

    async def handle(request: web.Request) -> web.Response:
        assert request.transport is not None
        sockname = request.transport.get_extra_info("sockname")
        peer = request.transport.get_extra_info("peername")
        per_server[str(sockname[0])] += 1
        connections.add(f"{peer[0]}:{peer[1]}")
        host_headers.add(request.headers.get("Host", ""))
        body = await request.read()
        return web.Response(body=body or b"x" * 32)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for host in hosts:
        await web.TCPSite(runner, host, port).start()
    try:
        yield port, per_server, connections, host_headers
    finally:
        await runner.cleanup()


def test_client_spreads_requests_over_two_real_servers_and_keeps_the_host_header() -> None:
    async def scenario() -> tuple[Counter[str], int, set[str]]:
        servers = counting_servers(["127.0.0.1", "127.0.0.2"])
        async with servers as (port, per_server, conns, host_headers):
            resolve, _ = resolver_of([["127.0.0.1", "127.0.0.2"]])
            client = SpreadingClient(resolve=resolve, max_age=3600)
            target = Target.parse(f"http://rng:{port}/32")
            try:
                for _ in range(20):
                    assert len(await client.request("GET", target)) == 32
            finally:
                await client.close()
            return Counter(per_server), len(conns), host_headers

    per_server, connections, host_headers = asyncio.run(scenario())
    assert per_server == {"127.0.0.1": 10, "127.0.0.2": 10}
    assert connections == 2  # kept alive: one connection per address
    assert len(host_headers) == 1
    assert host_headers.pop().startswith("rng:")


def test_connections_are_retired_after_max_age() -> None:
    """One address (like a swarm VIP): connections must not live forever."""

    async def scenario() -> tuple[int, int]:
        async with counting_servers(["127.0.0.1"]) as (port, _, conns, _h):
            clock = FakeClock()
            client = SpreadingClient(max_age=1.0, clock=clock)
            target = Target.parse(f"http://127.0.0.1:{port}/32")
            try:
                for _ in range(5):
                    await client.request("GET", target)
                kept_alive = len(conns)
                for _ in range(3):
                    clock.now += 1.5
                    for _ in range(5):
                        await client.request("GET", target)
            finally:
                await client.close()
            return kept_alive, len(conns)

    kept_alive, total = asyncio.run(scenario())
    assert kept_alive == 1
    assert total == 4


def test_refused_address_is_skipped_within_the_same_request() -> None:
    async def scenario() -> Counter[str]:
        async with counting_servers(["127.0.0.1"]) as (port, per_server, _c, _h):
            resolve, _ = resolver_of([["127.0.0.1", "127.0.0.3"]])  # nothing on 127.0.0.3
            client = SpreadingClient(resolve=resolve)
            target = Target.parse(f"http://rng:{port}/32")
            try:
                for _ in range(6):
                    await client.request("GET", target)
            finally:
                await client.close()
            return Counter(per_server)

    assert asyncio.run(scenario()) == {"127.0.0.1": 6}


def test_non_200_and_refused_connection_are_request_failures() -> None:
    async def scenario() -> None:
        client = SpreadingClient(timeout=2)
        try:
            with pytest.raises(RequestFailed, match=r"127\.0\.0\.1"):
                await client.request("GET", Target.parse(f"http://127.0.0.1:{free_port()}/32"))
        finally:
            await client.close()

    asyncio.run(scenario())


# --- outage logging, ledger --------------------------------------------------------------------


def test_outage_logs_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="worker")
    outage = Outage("rng", backoff_max=2.0)
    delays = [outage.failed("connection refused") for _ in range(12)]
    outage.succeeded()
    outage.succeeded()
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if "rng failing" in m]) == 1
    assert len([m for m in messages if "rng is back" in m and "12 failed attempts" in m]) == 1
    assert delays[0] < delays[1] < delays[2]
    assert max(delays) == 2.0
    assert delays == sorted(delays)


def test_outage_hold_keeps_every_loop_off_for_a_while() -> None:
    outage = Outage("rng", backoff_max=2.0)
    assert outage.held_for() == 0
    outage.hold(30)
    outage.hold(1)  # a shorter hold does not shorten the longer one
    assert 29 < outage.held_for() <= 30


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds(" 3 ") == 3.0
    assert retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    for unreadable in ("-1", "soon", "1e3", ""):
        assert retry_after_seconds(unreadable) is None


def test_worker_id_is_the_hostname_and_8_random_hex_digits() -> None:
    first, second = new_worker_id(), new_worker_id()
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}-[0-9a-f]{{8}}", first)
    assert first != second


def test_a_retired_session_whose_close_fails_leaves_no_exception_unretrieved() -> None:
    reported: list[dict[str, object]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, c: reported.append(c))
        client = SpreadingClient()

        async def failing_close() -> None:
            raise OSError("close failed")

        task = asyncio.get_running_loop().create_task(failing_close())
        client._closing.add(task)
        task.add_done_callback(client._closed)
        await asyncio.sleep(0.01)
        del task
        gc.collect()
        assert not client._closing

    asyncio.run(scenario())
    assert reported == []


def test_redis_names_are_resolved_by_the_worker_and_tls_still_checks_the_name() -> None:
    plain = connect("redis://redis:6379/0").connection_pool
    tls = connect("rediss://redis:6380/0").connection_pool
    unix = connect("unix:///run/redis.sock").connection_pool
    assert plain.connection_class is ResolvingConnection
    assert tls.connection_class is ResolvingSSLConnection
    assert unix.connection_class is UnixDomainSocketConnection
    connection = ResolvingSSLConnection(host="redis", port=6380)
    connection._address = "10.0.0.5"
    arguments = connection._connection_arguments()
    assert (arguments["host"], arguments["server_hostname"]) == ("10.0.0.5", "redis")
    assert arguments["ssl"] is not None
    over_tcp = ResolvingConnection(host="redis", port=6379)
    over_tcp._address = "10.0.0.5"
    assert dict(over_tcp._connection_arguments()) == {"host": "10.0.0.5", "port": 6379}


def test_ledger_owes_every_loop_and_every_coin_until_written() -> None:
    ledger = Ledger()
    for digest, data in (("0" + "a" * 63, b"coin"), ("f" * 64, b"nothing")):
        ledger.reserve()
        ledger.record(digest, data)
    assert (ledger.loops, ledger.owed_hashes, ledger.coins, ledger.under_way) == (2, 2, 1, 0)
    assert ledger.owed_coins == {"0" + "a" * 63: b"coin"}


def test_valid_digest() -> None:
    assert valid_digest("0" * 64)
    assert not valid_digest("0" * 63)
    assert not valid_digest("G" * 64)
    assert not valid_digest("<html>" + "0" * 58)


def test_redis_password_is_not_logged() -> None:
    assert redacted_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redacted_url("redis://me:s3cret@redis/0") == "redis://me:***@redis/0"
    assert redacted_url("redis://redis:6379/0") == "redis://redis:6379/0"
    assert redacted_url("redis://:s3cret@[::1") == "(an unreadable URL)"
    assert redacted_url("redis://:s3cret@redis/0") == webui_settings.redacted_url(
        "redis://:s3cret@redis/0"
    )


def test_a_failed_flush_is_sent_again_unchanged_and_new_work_waits_for_the_next() -> None:
    ledger = Ledger()
    assert ledger.next_flush() is None  # nothing owed, nothing sent
    ledger.reserve()
    ledger.record("0" + "a" * 63, b"coin")
    ledger.reserve()
    ledger.record("f" * 64, b"nothing")
    first = ledger.next_flush()
    assert first is not None
    assert (first.seq, first.hashes, first.coins) == (1, 2, {"0" + "a" * 63: b"coin"})
    ledger.reserve()
    ledger.record("0" + "b" * 63, b"coin 2")  # done while flush 1 is being sent
    assert ledger.next_flush() is first  # failed: the same number and the same amounts
    assert (ledger.unconfirmed_hashes, ledger.unconfirmed_coins) == (3, 2)
    ledger.confirm(first, applied=False)  # Redis had applied it before: confirmed
    second = ledger.next_flush()
    assert second is not None
    assert (second.seq, second.hashes, second.coins) == (2, 1, {"0" + "b" * 63: b"coin 2"})
    ledger.confirm(second, applied=True)
    assert ledger.next_flush() is None
    assert (ledger.loops, ledger.confirmed_hashes, ledger.unconfirmed_hashes) == (3, 3, 0)
    assert (ledger.coins, ledger.confirmed_coins, ledger.confirmed_seq) == (2, 2, 2)
    assert (ledger.applied, ledger.already_applied) == (1, 1)


def test_the_cap_counts_what_is_owed_sent_and_under_way() -> None:
    ledger = Ledger(max_owed=3)
    ledger.reserve()
    ledger.record("f" * 64, b"x")
    ledger.next_flush()  # 1 hash being sent
    ledger.reserve()
    ledger.record("e" * 64, b"x")  # 1 owed
    ledger.reserve()  # 1 under way
    assert not ledger.has_room()
    ledger.release()  # that loop failed: it counts nothing and frees its place
    assert ledger.has_room()
    assert (ledger.loops, ledger.unconfirmed_hashes, ledger.under_way) == (2, 2, 0)


# --- metrics -----------------------------------------------------------------------------------


def test_address_label_is_ip_colon_port() -> None:
    assert address_label("10.0.0.7", 80) == "10.0.0.7:80"
    assert address_label("fd00::7", 8001) == "[fd00::7]:8001"


def test_metrics_are_read_from_the_ledger_the_outages_and_the_address_books() -> None:
    ledger = Ledger()
    for digest in ("0" + "a" * 63, "f" * 64):
        ledger.reserve()
        ledger.record(digest, b"x")
    flush = ledger.next_flush()
    assert flush is not None
    ledger.confirm(flush, applied=True)
    ledger.reserve()
    ledger.record("e" * 64, b"x")
    outages = {"rng": Outage("rng", 2.0), "redis": Outage("redis", 2.0)}
    for _ in range(3):
        outages["rng"].failed("refused")
    rng_book = AddressBook(Target.parse("http://10.0.0.1:8001/32"))
    rng_book.answered.update({"10.0.0.1": 5, "fd00::1": 2})
    hasher_book = AddressBook(Target.parse("http://127.0.0.1/"))
    upstreams = {"rng": rng_book, "hasher": hasher_book}
    state = MiningState(paused=True)
    metrics = WorkerMetrics("node-9", ledger, outages, upstreams, worker_id="w-1", state=state)
    metrics.observe(0.004, 0.0001)
    metrics.observe(0.006, 0.0002)

    page = MetricsPage.parse(metrics.exposition().decode())
    assert page.value("dockercoins_worker_loops_total") == 3
    assert page.value("dockercoins_worker_hashes_total") == 2
    assert page.value("dockercoins_worker_coins_total") == 1
    assert page.value("dockercoins_worker_pending_hashes") == 1
    assert page.value("dockercoins_worker_confirmed_hashes_total", worker_id="w-1") == 2
    assert page.value("dockercoins_worker_confirmed_coins_total", worker_id="w-1") == 1
    assert page.value("dockercoins_worker_confirmed_seq", worker_id="w-1") == 1
    assert page.value("dockercoins_worker_flushes_total", result="applied") == 1
    assert page.value("dockercoins_worker_flushes_total", result="already_applied") == 0
    assert page.value("dockercoins_worker_max_owed_hashes") == 100_000
    assert page.value("dockercoins_worker_mining_paused") == 1
    assert page.value("dockercoins_worker_errors_total", kind="rng") == 3
    assert page.value("dockercoins_worker_errors_total", kind="redis") == 0
    upstream = "dockercoins_worker_upstream_requests_total"
    assert page.value(upstream, service="rng", address="10.0.0.1:8001") == 5
    assert page.value(upstream, service="rng", address="[fd00::1]:8001") == 2
    answered = [dict(labels) for name, labels in page.samples if name == upstream]
    assert sorted(a["address"] for a in answered) == ["10.0.0.1:8001", "[fd00::1]:8001"]
    latency = "dockercoins_worker_upstream_seconds"
    assert page.value(f"{latency}_count", service="rng") == 2
    assert page.value(f"{latency}_sum", service="rng") == pytest.approx(0.01)
    assert page.value(f"{latency}_bucket", service="rng", le="0.005") == 1
    assert page.value(f"{latency}_bucket", service="hasher", le="0.00025") == 2
    info = {"service": "worker", "hostname": socket.gethostname(), "node": "node-9"}
    assert page.value("dockercoins_instance_info", **info) == 1
