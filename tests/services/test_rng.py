"""rng against a real uvicorn server on a free loopback port."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from dockercoins.bench.metrics_page import MetricsPage

from tests.support.servers import LOOPBACK, ServiceProcess

StartService = Callable[..., ServiceProcess]


@pytest.fixture(scope="module")
def quick_rng(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One rng with no delay shared by the bad-input table (stopped even on failure)."""
    log_path: Path = tmp_path_factory.mktemp("rng") / "rng.log"
    rng = ServiceProcess(name="rng", env={"RNG_DELAY": "0"}, log_path=log_path)
    try:
        rng.start()
        yield rng
    finally:
        rng.stop()


def test_index_names_the_host(start_service: StartService) -> None:
    rng = start_service("rng")
    answer = httpx.get(rng.url + "/", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == f"RNG running on {socket.gethostname()}\n"


def test_answers_n_random_bytes(start_service: StartService) -> None:
    rng = start_service("rng", RNG_DELAY="0")
    with httpx.Client(base_url=rng.url, timeout=5) as client:
        first, second = client.get("/32"), client.get("/32")
        empty = client.get("/0")
    for answer in (first, second, empty):
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/octet-stream"
    assert len(first.content) == len(second.content) == 32
    assert first.content != second.content
    assert empty.content == b""


def test_default_cap_is_one_mebibyte(start_service: StartService) -> None:
    rng = start_service("rng", RNG_DELAY="0")
    with httpx.Client(base_url=rng.url, timeout=10) as client:
        at_cap = client.get("/1048576")
        above = client.get("/1048577")
    assert at_cap.status_code == 200
    assert len(at_cap.content) == 1048576
    assert above.status_code == 400
    assert "at most 1048576" in above.json()["error"]


def test_cap_is_a_setting(start_service: StartService) -> None:
    rng = start_service("rng", RNG_DELAY="0", RNG_MAX_BYTES="100")
    with httpx.Client(base_url=rng.url, timeout=5) as client:
        assert len(client.get("/100").content) == 100
        assert client.get("/101").status_code == 400


def service_intervals(url: str, count: int) -> list[tuple[float, float]]:
    """Send `count` requests at once; each answer's server-side service interval.

    rng puts the monotonic times at which it started and finished producing an answer in
    X-Rng-Started / X-Rng-Finished. They come from one clock in one process, so whether two
    intervals overlap is a fact about the server, not a timing guess on the client side.
    """

    async def fetch_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            return await asyncio.gather(*(client.get("/8") for _ in range(count)))

    answers = asyncio.run(fetch_all())
    assert all(answer.status_code == 200 for answer in answers), "no request may be refused"
    return sorted(
        (float(a.headers["x-rng-started"]), float(a.headers["x-rng-finished"])) for a in answers
    )


def overlapping_pairs(intervals: list[tuple[float, float]]) -> int:
    return sum(
        1
        for i, (start_a, end_a) in enumerate(intervals)
        for start_b, end_b in intervals[i + 1 :]
        if start_a < end_b and start_b < end_a
    )


def test_one_at_a_time_with_concurrency_1(start_service: StartService) -> None:
    rng = start_service("rng", RNG_DELAY="0.2", RNG_CONCURRENCY="1")
    intervals = service_intervals(rng.url, 5)
    assert len(intervals) == 5  # all served: the extra requests waited, none was refused
    assert overlapping_pairs(intervals) == 0, intervals


def test_answers_overlap_with_concurrency_4(start_service: StartService) -> None:
    rng = start_service("rng", RNG_DELAY="0.5", RNG_CONCURRENCY="4")
    intervals = service_intervals(rng.url, 4)
    assert overlapping_pairs(intervals) > 0, intervals


BAD_PATHS = [
    "/abc",
    "/-1",
    "/+5",
    "/1.5",
    "/1e3",
    "/0x10",
    "/%20",
    "/%C2%B2",  # superscript two: a Unicode digit, not an ASCII one
    "/%D9%A1%D9%A2",  # Arabic-Indic digits
    "/1048577",
    "/99999999999999999999999999999",
    "/" + "9" * 5000,
    "/32/extra",
    "/docs",
    "/openapi.json",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_sizes_get_4xx(quick_rng: ServiceProcess, path: str) -> None:
    answer = httpx.get(quick_rng.url + path, timeout=5)
    assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/32"), ("PUT", "/32"), ("DELETE", "/"), ("POST", "/")]
)
def test_other_methods_get_405(quick_rng: ServiceProcess, method: str, path: str) -> None:
    answer = httpx.request(method, quick_rng.url + path, content=b"x", timeout=5)
    assert answer.status_code == 405


# --- /metrics ----------------------------------------------------------------------------------

REQUESTS = "dockercoins_rng_requests_total"
BYTES = "dockercoins_rng_bytes_total"
WAITS = "dockercoins_rng_wait_seconds_count"
WAITED = "dockercoins_rng_wait_seconds_sum"
QUEUE = "dockercoins_rng_queue_length"
ACTIVE = "dockercoins_rng_active_requests"
REFUSED = "dockercoins_rng_refused_total"


def page_of(answer: httpx.Response) -> MetricsPage:
    """The /metrics answer, parsed by prometheus_client.parser.text_string_to_metric_families."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return MetricsPage.parse(answer.text)


def test_metrics_count_answers_and_bytes(start_service: StartService) -> None:
    rng = start_service("rng", RNG_DELAY="0", DOCKERCOINS_NODE="node-7")
    with httpx.Client(base_url=rng.url, timeout=5) as client:
        before = page_of(client.get("/metrics"))
        for _ in range(3):
            assert len(client.get("/32").content) == 32
        assert client.get("/abc").status_code == 400  # refused: not an answer
        after = page_of(client.get("/metrics"))
    assert after.value(REQUESTS) - before.value(REQUESTS) == 3
    assert after.value(BYTES) - before.value(BYTES) == 96
    assert after.value(WAITS) - before.value(WAITS) == 3
    assert after.value(QUEUE) == 0
    identity = {"service": "rng", "hostname": socket.gethostname(), "node": "node-7"}
    assert after.value("dockercoins_instance_info", **identity) == 1
    assert after.value("process_cpu_seconds_total") > 0


def test_metrics_answer_at_once_while_requests_queue(start_service: StartService) -> None:
    """8 requests behind one slot of 0.2 s: /metrics is not one of them, so it answers at
    once and sees the queue; when they are all served the queue is back to 0."""
    rng = start_service("rng", RNG_DELAY="0.2", RNG_CONCURRENCY="1")

    async def scenario() -> tuple[list[float], list[float], MetricsPage]:
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=rng.url, timeout=30, limits=limits) as client:
            waiting = [asyncio.create_task(client.get("/8")) for _ in range(8)]
            queues: list[float] = []
            took: list[float] = []
            while not all(task.done() for task in waiting):
                started = time.monotonic()
                page = page_of(await client.get("/metrics"))
                took.append(time.monotonic() - started)
                queues.append(page.value(QUEUE))
                await asyncio.sleep(0.05)
            assert all(task.result().status_code == 200 for task in waiting)
            return queues, took, page_of(await client.get("/metrics"))

    queues, took, final = asyncio.run(scenario())
    assert max(queues) >= 5, queues  # up to 7 wait behind the one being served
    assert max(took) < 0.2, took  # never waited for a 0.2 s turn
    assert final.value(QUEUE) == 0
    assert final.value(REQUESTS) == 8
    assert final.value(WAITS) == 8
    # They waited 0, 0.2, ..., 1.4 s for their turns: 5.6 s in all.
    assert 5.0 < final.value(WAITED) < 7.0, final.value(WAITED)


def test_metrics_off_is_404_and_sizes_still_work(start_service: StartService) -> None:
    rng = start_service("rng", RNG_DELAY="0", METRICS="0")
    with httpx.Client(base_url=rng.url, timeout=5) as client:
        assert client.get("/metrics").status_code == 404
        assert len(client.get("/32").content) == 32
        assert client.get("/abc").status_code == 400


# --- a full queue, and the order of arrivals ---------------------------------------------------


async def arrived(client: httpx.AsyncClient) -> float:
    """Requests rng has taken in so far: answered, waiting or being served (from /metrics,
    which is never queued)."""
    page = page_of(await client.get("/metrics"))
    return page.value(REQUESTS) + page.value(QUEUE) + page.value(ACTIVE)


async def until_arrived(client: httpx.AsyncClient, count: int) -> None:
    """Poll /metrics until rng has taken in `count` requests (bounded: 20 s)."""
    async with asyncio.timeout(20):
        while True:
            if await arrived(client) >= count:
                return
            await asyncio.sleep(0.005)


def test_full_queue_answers_503_with_retry_after_at_once(start_service: StartService) -> None:
    """One served and one waiting (RNG_MAX_WAITING=1, 1.5 s each, so the gate stays full while
    the test asks): the next requests are refused with 503 and Retry-After while the queue
    stays at 1; GET / still answers; both taken are served, and once there is room again a
    request is taken."""
    rng = start_service("rng", RNG_DELAY="1.5", RNG_CONCURRENCY="1", RNG_MAX_WAITING="1")

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=rng.url, timeout=30, limits=limits) as client:
            taken = []
            for n in range(2):
                taken.append(asyncio.create_task(client.get("/8")))
                await until_arrived(client, n + 1)
            refused = await asyncio.gather(*(client.get("/8") for _ in range(3)))
            page = page_of(await client.get("/metrics"))
            health = await client.get("/")
            for answer in refused:
                assert answer.status_code == 503
                assert answer.headers["retry-after"] == "2"  # 1 waiting x 1.5 s, rounded up
                assert "busy" in answer.json()["error"]
            assert (page.value(ACTIVE), page.value(QUEUE), page.value(REFUSED)) == (1, 1, 3)
            assert health.status_code == 200
            assert [(await task).status_code for task in taken] == [200] * 2
            assert (await client.get("/8")).status_code == 200
            assert page_of(await client.get("/metrics")).value(REQUESTS) == 3

    asyncio.run(scenario())
    assert "Traceback" not in rng.logs()


def test_many_clients_are_answered_in_the_order_they_arrived(
    start_service: StartService,
) -> None:
    """25 clients, each on a connection of its own, start their requests one after another:
    client n+1 only once rng's /metrics counts client n in (so the arrival order is known,
    not guessed from timing). With the default settings (0.1 s, one at a time) they are
    served in that order: the server's start stamps and the order the answers come back in
    both follow it."""
    rng = start_service("rng")
    clients = 25

    async def scenario() -> tuple[list[int], list[float]]:
        back: list[int] = []
        limits = httpx.Limits(max_connections=1)
        watcher = httpx.AsyncClient(base_url=rng.url, timeout=30)
        pool = [
            httpx.AsyncClient(base_url=rng.url, timeout=60, limits=limits) for _ in range(clients)
        ]
        try:

            async def one(n: int) -> float:
                answer = await pool[n].get("/32")
                assert answer.status_code == 200, answer.text
                back.append(n)
                return float(answer.headers["x-rng-started"])

            tasks = []
            for n in range(clients):
                tasks.append(asyncio.create_task(one(n)))
                await until_arrived(watcher, n + 1)
            started = await asyncio.gather(*tasks)
        finally:
            for client in (watcher, *pool):
                await client.aclose()
        return back, started

    back, started = asyncio.run(scenario())
    assert back == list(range(clients))
    assert started == sorted(started), started
    assert len(set(started)) == clients


def test_a_client_that_gave_up_does_not_get_a_turn(start_service: StartService) -> None:
    """A is served (1 s), B waits and hangs up, C waits behind B: when A is done B's turn is
    skipped, so only A and C are answered (and counted), and the queue is empty after."""
    rng = start_service("rng", RNG_DELAY="1", RNG_CONCURRENCY="1")

    async def scenario() -> MetricsPage:
        limits = httpx.Limits(max_connections=5)
        async with httpx.AsyncClient(base_url=rng.url, timeout=30, limits=limits) as client:
            first = asyncio.create_task(client.get("/8"))
            await until_arrived(client, 1)
            _, writer = await asyncio.open_connection(LOOPBACK, rng.port)
            writer.write(b"GET /8 HTTP/1.1\r\nHost: rng\r\n\r\n")
            await writer.drain()
            await until_arrived(client, 2)
            writer.close()  # B gives up while it waits
            await writer.wait_closed()
            last = asyncio.create_task(client.get("/8"))
            await until_arrived(client, 3)
            assert (await first).status_code == 200
            assert (await last).status_code == 200
            return page_of(await client.get("/metrics"))

    page = asyncio.run(scenario())
    assert (page.value(REQUESTS), page.value(WAITS), page.value(QUEUE)) == (2, 2, 0)
