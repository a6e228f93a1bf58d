"""rng against a real uvicorn server on a free loopback port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

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
