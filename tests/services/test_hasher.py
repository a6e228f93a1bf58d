"""hasher against a real uvicorn server on a free loopback port."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from dockercoins.bench.metrics_page import MetricsPage

from tests.support.servers import LOOPBACK, ServiceProcess

StartService = Callable[..., ServiceProcess]

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
SMALL_CAP = 1000


@pytest.fixture(scope="module")
def quick_hasher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One hasher with no delay and a 1000-byte cap, shared by the tests that only send
    requests (stopped even on failure)."""
    log_path: Path = tmp_path_factory.mktemp("hasher") / "hasher.log"
    env = {"HASHER_DELAY": "0", "HASHER_MAX_BYTES": str(SMALL_CAP)}
    hasher = ServiceProcess(name="hasher", env=env, log_path=log_path)
    try:
        hasher.start()
        yield hasher
    finally:
        hasher.stop()


def test_index_names_the_host(quick_hasher: ServiceProcess) -> None:
    answer = httpx.get(quick_hasher.url + "/", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == f"HASHER running on {socket.gethostname()}\n"


@pytest.mark.parametrize(
    ("body", "digest"),
    [(b"", EMPTY_SHA256), (b"abc", ABC_SHA256), (bytes(range(256)), None)],
)
def test_known_digests(quick_hasher: ServiceProcess, body: bytes, digest: str | None) -> None:
    answer = httpx.post(quick_hasher.url + "/", content=body, timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == (digest or hashlib.sha256(body).hexdigest())


def test_body_exactly_at_cap(quick_hasher: ServiceProcess) -> None:
    body = b"\x07" * SMALL_CAP
    answer = httpx.post(quick_hasher.url + "/", content=body, timeout=5)
    assert answer.status_code == 200
    assert answer.text == hashlib.sha256(body).hexdigest()


def test_body_above_cap_with_content_length(quick_hasher: ServiceProcess) -> None:
    answer = httpx.post(quick_hasher.url + "/", content=b"x" * (SMALL_CAP + 1), timeout=5)
    assert answer.status_code == 413


def test_chunked_body_above_cap(quick_hasher: ServiceProcess) -> None:
    def chunks() -> Iterator[bytes]:  # a generator: httpx sends it chunked, no Content-Length
        for _ in range(8):
            yield b"y" * 500

    answer = httpx.post(quick_hasher.url + "/", content=chunks(), timeout=5)
    assert answer.status_code == 413


def test_chunked_body_at_cap(quick_hasher: ServiceProcess) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"z" * (SMALL_CAP // 2)
        yield b"z" * (SMALL_CAP - SMALL_CAP // 2)

    answer = httpx.post(quick_hasher.url + "/", content=chunks(), timeout=5)
    assert answer.status_code == 200
    assert answer.text == hashlib.sha256(b"z" * SMALL_CAP).hexdigest()


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send `request` and read the answer without ever finishing the body."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            if not data:
                break
            received += data
        return received


def test_declared_length_above_cap_is_refused_before_the_body(
    quick_hasher: ServiceProcess,
) -> None:
    # Only the headers are sent: the 413 cannot come from having read the body.
    head = (f"POST / HTTP/1.1\r\nHost: hasher\r\nContent-Length: {SMALL_CAP + 1}\r\n\r\n").encode()
    assert raw_exchange(quick_hasher.port, head).startswith(b"HTTP/1.1 413 ")


def test_chunked_body_is_refused_as_soon_as_it_passes_the_cap(
    quick_hasher: ServiceProcess,
) -> None:
    # cap + 1 bytes in chunks, and never the final zero-length chunk: the 413 must come
    # while the body is still open, so the server stopped reading at the cap.
    head = b"POST / HTTP/1.1\r\nHost: hasher\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (SMALL_CAP // 2, b"q" * (SMALL_CAP // 2))
    last = b"1\r\nq\r\n"
    assert raw_exchange(quick_hasher.port, head + chunk + chunk + last).startswith(b"HTTP/1.1 413 ")


def test_default_cap_is_one_mebibyte(start_service: StartService) -> None:
    hasher = start_service("hasher", HASHER_DELAY="0")
    body = b"\xab" * 1048576
    with httpx.Client(base_url=hasher.url, timeout=10) as client:
        at_cap = client.post("/", content=body)
        above = client.post("/", content=body + b"!")
    assert at_cap.status_code == 200
    assert at_cap.text == hashlib.sha256(body).hexdigest()
    assert above.status_code == 413


def test_requests_are_served_at_the_same_time(start_service: StartService) -> None:
    """hasher puts the monotonic times of its delay's start and end in X-Hasher-Started /
    X-Hasher-Finished (one clock, one process): overlapping intervals show that requests
    were served together, without any timing threshold."""
    hasher = start_service("hasher", HASHER_DELAY="0.5")

    async def post_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=4)
        async with httpx.AsyncClient(base_url=hasher.url, timeout=30, limits=limits) as client:
            return await asyncio.gather(*(client.post("/", content=b"%d" % i) for i in range(4)))

    answers = asyncio.run(post_all())
    assert [a.text for a in answers] == [hashlib.sha256(b"%d" % i).hexdigest() for i in range(4)]
    intervals = sorted(
        (float(a.headers["x-hasher-started"]), float(a.headers["x-hasher-finished"]))
        for a in answers
    )
    overlaps = sum(
        1
        for i, (start_a, end_a) in enumerate(intervals)
        for start_b, end_b in intervals[i + 1 :]
        if start_a < end_b and start_b < end_a
    )
    assert overlaps > 0, intervals


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("PUT", "/", 405),
        ("DELETE", "/", 405),
        ("PATCH", "/", 405),
        ("POST", "/x", 404),
        ("POST", "/32", 404),
        ("GET", "/x", 404),
        ("POST", "//", 404),
    ],
)
def test_bad_routes_get_4xx(
    quick_hasher: ServiceProcess, method: str, path: str, expected: int
) -> None:
    answer = httpx.request(method, quick_hasher.url + path, content=b"abc", timeout=5)
    assert answer.status_code == expected


@pytest.mark.parametrize(
    "headers",
    [
        "Content-Length: abc\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 1e3\r\n",
        "Content-Length: 99999999999999999999999999\r\n",
        "Content-Length: 3\r\nContent-Length: 4\r\n",
        "Transfer-Encoding: gzip\r\n",
    ],
)
def test_bad_bodies_get_4xx(quick_hasher: ServiceProcess, headers: str) -> None:
    request = f"POST / HTTP/1.1\r\nHost: hasher\r\n{headers}\r\nabc".encode()
    status_line = raw_exchange(quick_hasher.port, request).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 4"), status_line


# --- /metrics ----------------------------------------------------------------------------------

REQUESTS = "dockercoins_hasher_requests_total"
BYTES = "dockercoins_hasher_bytes_total"
DURATIONS = "dockercoins_hasher_request_duration_seconds_count"
DURATION = "dockercoins_hasher_request_duration_seconds_sum"


def page_of(answer: httpx.Response) -> MetricsPage:
    """The /metrics answer, parsed by prometheus_client.parser.text_string_to_metric_families."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return MetricsPage.parse(answer.text)


def test_metrics_count_hashes_bytes_and_time(start_service: StartService) -> None:
    hasher = start_service(
        "hasher", HASHER_DELAY="0.05", HASHER_MAX_BYTES="100", DOCKERCOINS_NODE="node-5"
    )
    with httpx.Client(base_url=hasher.url, timeout=5) as client:
        before = page_of(client.get("/metrics"))
        for body in (b"a" * 10, b"b" * 20, b""):
            assert client.post("/", content=body).status_code == 200
        assert client.post("/", content=b"c" * 101).status_code == 413  # not hashed
        after = page_of(client.get("/metrics"))
    assert after.value(REQUESTS) - before.value(REQUESTS) == 3
    assert after.value(BYTES) - before.value(BYTES) == 30
    assert after.value(DURATIONS) - before.value(DURATIONS) == 3
    assert after.value(DURATION) - before.value(DURATION) >= 3 * 0.05
    identity = {"service": "hasher", "hostname": socket.gethostname(), "node": "node-5"}
    assert after.value("dockercoins_instance_info", **identity) == 1


def test_metrics_off_is_404_and_hashing_still_works(start_service: StartService) -> None:
    hasher = start_service("hasher", HASHER_DELAY="0", METRICS="off")
    with httpx.Client(base_url=hasher.url, timeout=5) as client:
        assert client.get("/metrics").status_code == 404
        assert client.post("/", content=b"abc").text == ABC_SHA256


# --- the cap on requests held at once ---------------------------------------------------------

IN_PROGRESS = "dockercoins_hasher_requests_in_progress"
REFUSED = "dockercoins_hasher_refused_total"


def test_requests_past_max_bodies_get_503_at_once(start_service: StartService) -> None:
    """HASHER_MAX_BODIES=2 with 1.5 s each: while two are held, more POSTs get 503 with
    Retry-After and the connection closed, even a body above the size cap (it is not read);
    GET / still answers; the two held are answered, and then there is room again."""
    hasher = start_service(
        "hasher", HASHER_DELAY="1.5", HASHER_MAX_BODIES="2", HASHER_MAX_BYTES="1000"
    )

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=hasher.url, timeout=30, limits=limits) as client:
            held = [asyncio.create_task(client.post("/", content=b"%d" % n)) for n in range(2)]
            async with asyncio.timeout(20):
                while True:
                    if page_of(await client.get("/metrics")).value(IN_PROGRESS) >= 2:
                        break
                    await asyncio.sleep(0.01)
            refused = await asyncio.gather(
                client.post("/", content=b"abc"), client.post("/", content=b"x" * 5000)
            )
            health = await client.get("/")
            page = page_of(await client.get("/metrics"))
            for answer in refused:
                assert answer.status_code == 503
                assert answer.headers["retry-after"] == "2"  # 1.5 s, rounded up
                assert answer.headers["connection"] == "close"
                assert "busy" in answer.json()["error"]
            assert health.status_code == 200
            assert (page.value(IN_PROGRESS), page.value(REFUSED)) == (2, 2)
            answers = await asyncio.gather(*held)
            assert [a.text for a in answers] == [
                hashlib.sha256(b"%d" % n).hexdigest() for n in range(2)
            ]
            assert (await client.post("/", content=b"abc")).text == ABC_SHA256
            assert page_of(await client.get("/metrics")).value(IN_PROGRESS) == 0

    asyncio.run(scenario())
    assert "Traceback" not in hasher.logs()
