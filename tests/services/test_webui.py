"""webui against a real uvicorn server and a real redis-server."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.servers import SERVICES_DIR, RedisServer, ServiceProcess, free_port, wait_for

StartService = Callable[..., ServiceProcess]
VENDOR = SERVICES_DIR / "webui" / "static" / "vendor" / "uplot"


def redis_client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)


def test_json_reports_coins_and_hashes(
    start_service: StartService, redis_server: RedisServer
) -> None:
    webui = start_service("webui", REDIS_URL=redis_server.url)
    store = redis_client(redis_server)
    store.set("hashes", 1234)
    store.hset("wallet", mapping={"0abc": b"\x01" * 32, "0def": b"\x02" * 32, "0123": b"x"})
    before = time.time()
    answer = httpx.get(webui.url + "/json", timeout=5)
    after = time.time()
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    data = answer.json()
    assert set(data) == {"coins", "hashes", "now"}
    assert (data["coins"], data["hashes"]) == (3, 1234)
    assert isinstance(data["now"], float)
    assert before - 1 <= data["now"] <= after + 1  # it is Unix time, not a monotonic clock


def test_json_counts_zero_when_nothing_is_stored(
    start_service: StartService, redis_server: RedisServer
) -> None:
    webui = start_service("webui", REDIS_URL=redis_server.url)
    data = httpx.get(webui.url + "/json", timeout=5).json()
    assert (data["coins"], data["hashes"]) == (0, 0)


def test_json_is_503_while_redis_is_away_and_recovers(
    start_service: StartService, redis_server: RedisServer
) -> None:
    webui = start_service("webui", REDIS_URL=redis_server.url, REDIS_TIMEOUT="0.5")
    redis_client(redis_server).set("hashes", 42)
    assert httpx.get(webui.url + "/json", timeout=5).json()["hashes"] == 42

    redis_server.stop()
    for _ in range(3):  # repeated failures stay clean 503s
        answer = httpx.get(webui.url + "/json", timeout=10)
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"].startswith("redis unavailable")

    redis_server.start()  # same port, empty data (no persistence)
    redis_client(redis_server).set("hashes", 7)
    wait_for(lambda: httpx.get(webui.url + "/json", timeout=5).status_code == 200)
    assert httpx.get(webui.url + "/json", timeout=5).json()["hashes"] == 7
    logs = webui.logs()
    assert logs.count("redis unreachable") == 1, logs  # one line per event, not per request
    assert "redis reachable again" in logs
    assert "Traceback" not in logs


def test_json_is_503_while_redis_hangs(
    start_service: StartService, redis_server: RedisServer
) -> None:
    """A Redis that accepts but never answers (SIGSTOP) must not hang /json."""
    webui = start_service("webui", REDIS_URL=redis_server.url, REDIS_TIMEOUT="0.3")
    assert httpx.get(webui.url + "/json", timeout=5).status_code == 200
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        answer = httpx.get(webui.url + "/json", timeout=10)
        assert answer.status_code == 503
        assert "redis unavailable" in answer.json()["error"]
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: httpx.get(webui.url + "/json", timeout=5).status_code == 200)


def test_json_is_503_when_redis_was_never_there(start_service: StartService) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    webui = start_service("webui", REDIS_URL=nobody, REDIS_TIMEOUT="0.5")
    answer = httpx.get(webui.url + "/json", timeout=10)
    assert answer.status_code == 503
    assert "error" in answer.json()


def test_json_is_503_when_the_keys_hold_garbage(
    start_service: StartService, redis_server: RedisServer
) -> None:
    webui = start_service("webui", REDIS_URL=redis_server.url)
    store = redis_client(redis_server)
    store.set("hashes", "many")
    answer = httpx.get(webui.url + "/json", timeout=5)
    assert answer.status_code == 503
    assert "not an integer" in answer.json()["error"]
    store.set("hashes", 1)
    store.set("wallet", "not a hash")  # HLEN on a string: a WRONGTYPE error from Redis
    assert httpx.get(webui.url + "/json", timeout=5).status_code == 503


# --- /ledger -----------------------------------------------------------------------------------

SEQ_KEY = "dockercoins:ledger:seq"
HASHES_KEY = "dockercoins:ledger:hashes"


def test_ledger_reports_each_worker(start_service: StartService, redis_server: RedisServer) -> None:
    webui = start_service("webui", REDIS_URL=redis_server.url)
    assert httpx.get(webui.url + "/ledger", timeout=5).json() == {"hashes": 0, "workers": {}}
    store = redis_client(redis_server)
    store.set("hashes", 130)
    store.hset(SEQ_KEY, mapping={"worker-a": 7, "worker-b": 2})
    store.hset(HASHES_KEY, mapping={"worker-a": 100, "worker-b": 30})
    answer = httpx.get(webui.url + "/ledger", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json() == {
        "hashes": 130,
        "workers": {"worker-a": {"seq": 7, "hashes": 100}, "worker-b": {"seq": 2, "hashes": 30}},
    }


def test_ledger_numbers_agree_while_workers_write(
    start_service: StartService, redis_server: RedisServer
) -> None:
    """Writers add to `hashes` and their ledger fields in one MULTI/EXEC each, as the workers
    do; every /ledger read meanwhile must see `hashes` equal to the sum over the workers and
    each worker's hashes equal to 10 x its seq: all three keys are read in one transaction."""
    webui = start_service("webui", REDIS_URL=redis_server.url)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        store = redis_client(redis_server)
        try:
            for _ in range(2000):  # bounded; stopped sooner once the reads are done
                if stop.is_set():
                    return
                with store.pipeline(transaction=True) as pipe:
                    pipe.incrby("hashes", 10)
                    pipe.hincrby(SEQ_KEY, name, 1)
                    pipe.hincrby(HASHES_KEY, name, 10)
                    pipe.execute()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    seen = []
    try:
        with httpx.Client(base_url=webui.url, timeout=5) as client:
            for _ in range(150):
                answer = client.get("/ledger")
                assert answer.status_code == 200, answer.text
                seen.append(answer.json())
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    for data in seen:
        workers = data["workers"]
        assert data["hashes"] == sum(w["hashes"] for w in workers.values()), data
        assert all(w["hashes"] == 10 * w["seq"] for w in workers.values()), data
    assert seen[-1]["hashes"] > seen[0]["hashes"]  # the writers did write meanwhile


def test_ledger_is_503_while_redis_is_away_and_for_garbage(
    start_service: StartService, redis_server: RedisServer
) -> None:
    webui = start_service("webui", REDIS_URL=redis_server.url, REDIS_TIMEOUT="0.5")
    store = redis_client(redis_server)
    store.hset(SEQ_KEY, "w", "seven")
    answer = httpx.get(webui.url + "/ledger", timeout=5)
    assert answer.status_code == 503
    assert "dockercoins:ledger:seq field 'w'" in answer.json()["error"]
    store.delete(SEQ_KEY)
    store.set(HASHES_KEY, "not a hash")  # HGETALL on a string: WRONGTYPE inside the EXEC
    assert httpx.get(webui.url + "/ledger", timeout=5).status_code == 503
    store.delete(HASHES_KEY)
    assert httpx.get(webui.url + "/ledger", timeout=5).status_code == 200

    redis_server.stop()
    answer = httpx.get(webui.url + "/ledger", timeout=10)
    assert answer.status_code == 503
    assert answer.json()["error"].startswith("redis unavailable")
    assert "Traceback" not in webui.logs()


@pytest.fixture(scope="module")
def quick_webui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One webui (with a real Redis) shared by the tests that only fetch pages."""
    workdir: Path = tmp_path_factory.mktemp("webui")
    store = RedisServer(workdir=workdir)
    webui = ServiceProcess(
        name="webui", env={"REDIS_URL": store.url}, log_path=workdir / "webui.log"
    )
    try:
        store.start()
        webui.start()
        yield webui
    finally:
        webui.stop()
        store.stop()


def test_root_redirects_to_the_page(quick_webui: ServiceProcess) -> None:
    answer = httpx.get(quick_webui.url + "/", timeout=5)
    assert answer.is_redirect
    assert answer.headers["location"] == "/index.html"


def test_page_and_assets_are_served(quick_webui: ServiceProcess) -> None:
    with httpx.Client(base_url=quick_webui.url, timeout=5) as client:
        page = client.get("/index.html")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>DockerCoins</title>" in page.text
        for asset in (
            "/app.js",
            "/rng-rates.js",
            "/style.css",
            "/favicon.svg",
            "/vendor/uplot/uPlot.iife.min.js",
            "/vendor/uplot/uPlot.min.css",
        ):
            assert asset.lstrip("/") in page.text or asset == "/app.js"
            assert client.get(asset).status_code == 200, asset
        assert "https://" not in page.text.replace("https://github.com", "")  # no CDN


def test_chart_library_is_vendored_with_its_licence() -> None:
    licence = (VENDOR / "LICENSE").read_text()
    assert "MIT License" in licence
    assert "Leon Sorokin" in licence
    library = (VENDOR / "uPlot.iife.min.js").read_text()
    assert "uPlot" in library
    assert "1.6.32" in (VENDOR / "README.md").read_text()


BAD_REQUESTS = [
    ("GET", "/nope.html", 404),
    ("GET", "/../webui.py", 404),
    ("GET", "/%2e%2e/webui.py", 404),
    ("GET", "/vendor/../../webui.py", 404),
    ("GET", "/vendor/uplot/", 404),
    ("GET", "/json/extra", 404),
    ("GET", "/index.html/x", 404),
    ("GET", "/%00", 404),
    ("POST", "/json", 405),
    ("POST", "/ledger", 405),
    ("GET", "/ledger/x", 404),
    ("DELETE", "/json", 405),
    ("PUT", "/index.html", 405),
    ("POST", "/", 405),
    ("POST", "/rng-rates", 405),
    ("POST", "/metrics", 405),
]


@pytest.mark.parametrize(("method", "path", "expected"), BAD_REQUESTS)
def test_bad_requests_get_4xx(
    quick_webui: ServiceProcess, method: str, path: str, expected: int
) -> None:
    answer = httpx.request(method, quick_webui.url + path, content=b"{}", timeout=5)
    assert answer.status_code == expected, (method, path, answer.status_code)
