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

from tests.support.servers import ServiceProcess

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
