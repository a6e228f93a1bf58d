"""Schemathesis (and plain hypothesis) against rng, hasher and webui as real uvicorn servers.

The OpenAPI schema is the one FastAPI builds from each app (not served: openapi_url=None),
with what FastAPI cannot know written in: rng's <n> is a whole number from 0 to
RNG_MAX_BYTES, hasher takes any bytes (and odd Expect / Content-Encoding headers), webui
serves static files that answer Range and conditional headers. Every generated request must
get an answer below 500 (schemathesis' not_a_server_error check), the answers must be the
right ones where the contract says what they are, and the process must still be running,
with no traceback in its log, when the run is over. Derandomized: CI runs the same examples.
"""

from __future__ import annotations

import collections
import copy
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hasher
import hasher_settings
import pytest
import redis
import requests
import rng
import rng_settings
import schemathesis
import webui
import webui_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error

from tests.support.servers import RedisServer, ServiceProcess

RNG_CAP = 1048576  # RNG_MAX_BYTES, the default
HASHER_CAP = 64  # HASHER_MAX_BYTES: small, so that generated bodies pass it often
Counts = collections.Counter[str]
AnyCase = Case[Any]


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """schemathesis sends with requests; no proxies from the environment for loopback."""
    with requests.Session() as opened:
        opened.trust_env = False
        yield opened


def serve(name: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    service = ServiceProcess(name=name, env=env, log_path=log_dir / f"{name}.log")
    service.start()
    return service


def still_fine(service: ServiceProcess) -> None:
    """The process is still running and logged no traceback."""
    assert service.proc is not None
    assert service.proc.poll() is None, f"{service.name} exited: {service.logs()[-4000:]}"
    logs = service.logs()
    assert "Traceback" not in logs, logs[-4000:]
    assert "Exception in ASGI application" not in logs, logs[-4000:]


def send(case: AnyCase, base_url: str, session: requests.Session, counts: Counts) -> Any:
    """One generated request, checked by schemathesis for a 5xx; counted by status."""
    response = case.call_and_validate(
        base_url=base_url, session=session, checks=[not_a_server_error], timeout=30
    )
    counts[str(response.status_code)] += 1
    return response


def run(
    strategy: st.SearchStrategy[AnyCase], examples: int, each: Callable[[AnyCase], None]
) -> int:
    """Run `each` on `examples` generated cases; how many ran."""
    ran = 0

    @given(case=strategy)
    @fuzz_settings(examples)
    def one(case: AnyCase) -> None:
        nonlocal ran
        ran += 1
        each(case)

    one()
    return ran


# --- rng --------------------------------------------------------------------------------------


def rng_schema() -> Any:
    raw = copy.deepcopy(rng.create_app(rng_settings.Settings()).openapi())
    size = raw["paths"]["/{size}"]["get"]["parameters"][0]
    size["schema"] = {"type": "integer", "minimum": 0, "maximum": RNG_CAP}
    return schemathesis.openapi.from_dict(raw)


def test_rng_fuzzed(tmp_path: Path, session: requests.Session) -> None:
    service = serve("rng", {"RNG_DELAY": "0"}, tmp_path)
    try:
        schema = rng_schema()
        counts: Counts = collections.Counter()

        def good(case: AnyCase) -> None:
            answer = send(case, service.url, session, counts)
            assert answer.status_code == 200, case.formatted_path
            assert len(answer.content) == int(case.path_parameters["size"])

        def bad(case: AnyCase) -> None:
            answer = send(case, service.url, session, counts)
            assert 400 <= answer.status_code < 500, (case.formatted_path, answer.status_code)

        def anything(case: AnyCase) -> None:
            send(case, service.url, session, counts)

        operation = schema["/{size}"]["GET"]
        ran = run(operation.as_strategy(GenerationMode.POSITIVE), 150, good)
        ran += run(operation.as_strategy(GenerationMode.NEGATIVE), 150, bad)
        for path in ("/", "/metrics"):
            ran += run(schema[path]["GET"].as_strategy(), 5, anything)
        print(f"\nrng: {ran} requests, statuses {dict(counts)}")
        assert counts["200"] > 0
        assert sum(counts[str(status)] for status in range(400, 500)) > 0
        still_fine(service)
    finally:
        service.stop()


# --- hasher -----------------------------------------------------------------------------------


def hasher_schema(headers: tuple[str, ...] = ()) -> Any:
    raw = copy.deepcopy(hasher.create_app(hasher_settings.Settings()).openapi())
    raw["paths"]["/"]["post"]["parameters"] = [
        {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
        for name in headers
    ]
    return schemathesis.openapi.from_dict(raw)


def test_hasher_fuzzed(tmp_path: Path, session: requests.Session) -> None:
    env = {"HASHER_DELAY": "0", "HASHER_MAX_BYTES": str(HASHER_CAP)}
    service = serve("hasher", env, tmp_path)
    try:
        plain = hasher_schema()
        odd = hasher_schema(("Expect", "Content-Encoding", "Transfer-Encoding"))
        counts: Counts = collections.Counter()

        def hashed(case: AnyCase) -> None:
            answer = send(case, service.url, session, counts)
            body = getattr(case.body, "data", None)
            if isinstance(body, bytes) and len(body) > HASHER_CAP:
                assert answer.status_code == 413, answer.status_code
            elif isinstance(body, bytes):
                assert answer.status_code == 200, answer.status_code
                assert answer.text == hashlib.sha256(body).hexdigest()

        def anything(case: AnyCase) -> None:
            send(case, service.url, session, counts)

        ran = run(plain["/"]["POST"].as_strategy(), 200, hashed)
        # Odd framing headers: uvicorn refuses a bad Transfer-Encoding with 400 itself.
        ran += run(odd["/"]["POST"].as_strategy(), 100, anything)
        ran += run(plain["/"]["GET"].as_strategy(), 5, anything)
        print(f"\nhasher: {ran} requests, statuses {dict(counts)}")
        assert counts["200"] > 0 and counts["413"] > 0, counts
        still_fine(service)
    finally:
        service.stop()


# --- webui ------------------------------------------------------------------------------------

STATIC_HEADERS = ("Range", "If-Range", "If-None-Match", "If-Modified-Since", "Accept-Encoding")


def webui_schema() -> Any:
    """The app's routes, plus the static files it mounts: GET /index.html and GET /{asset},
    both with the headers a static file answers to."""
    raw = copy.deepcopy(webui.create_app(webui_settings.Settings()).openapi())
    headers = [
        {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
        for name in STATIC_HEADERS
    ]
    ok = {"200": {"description": "a file"}}
    raw["paths"]["/index.html"] = {"get": {"parameters": headers, "responses": ok}}
    asset = {"name": "asset", "in": "path", "required": True, "schema": {"type": "string"}}
    raw["paths"]["/{asset}"] = {"get": {"parameters": [asset, *headers], "responses": ok}}
    return schemathesis.openapi.from_dict(raw)


def test_webui_fuzzed(tmp_path: Path, session: requests.Session, redis_server: RedisServer) -> None:
    service = serve("webui", {"REDIS_URL": redis_server.url}, tmp_path)
    try:
        schema = webui_schema()
        counts: Counts = collections.Counter()
        store = redis.Redis.from_url(redis_server.url, socket_timeout=5)
        store.set("hashes", 12)
        store.hset("dockercoins:ledger:seq", mapping={"w1": 3})
        store.hset("dockercoins:ledger:hashes", mapping={"w1": 12})

        def anything(case: AnyCase) -> None:
            send(case, service.url, session, counts)

        def answered(case: AnyCase) -> None:
            assert send(case, service.url, session, counts).status_code == 200

        ran = run(schema["/index.html"]["GET"].as_strategy(), 150, anything)
        ran += run(schema["/{asset}"]["GET"].as_strategy(), 150, anything)
        for path in ("/json", "/ledger", "/rng-rates"):
            ran += run(schema[path]["GET"].as_strategy(), 5, answered)
        print(f"\nwebui: {ran} requests, statuses {dict(counts)}")
        still_fine(service)
    finally:
        service.stop()


# What a worker id and a count in the ledger may hold: anything Redis can.
blobs = st.binary(max_size=12) | st.integers().map(lambda n: str(n).encode())


def test_webui_ledger_from_any_redis_contents(
    tmp_path: Path, session: requests.Session, redis_server: RedisServer
) -> None:
    """Whatever the workers (or anyone) left in the ledger keys, GET /ledger answers 200 with
    the numbers or 503 naming what is wrong, never a 5xx of its own making."""
    service = serve("webui", {"REDIS_URL": redis_server.url}, tmp_path)
    store = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    counts: Counts = collections.Counter()
    try:

        @given(
            hashes=st.none() | blobs,
            seqs=st.dictionaries(blobs, blobs, max_size=4),
            totals=st.dictionaries(blobs, blobs, max_size=4),
        )
        @fuzz_settings(150)
        def ledger(
            hashes: bytes | None, seqs: dict[bytes, bytes], totals: dict[bytes, bytes]
        ) -> None:
            with store.pipeline(transaction=True) as pipe:
                pipe.delete("hashes", "dockercoins:ledger:seq", "dockercoins:ledger:hashes")
                if hashes is not None:
                    pipe.set("hashes", hashes)
                for key, fields in (("seq", seqs), ("hashes", totals)):
                    if fields:
                        mapping: dict[Any, Any] = fields  # redis-py's key type is invariant
                        pipe.hset(f"dockercoins:ledger:{key}", mapping=mapping)
                pipe.execute()
            answer = session.get(service.url + "/ledger", timeout=30)
            counts[str(answer.status_code)] += 1
            assert answer.status_code in (200, 503), answer.text
            if answer.status_code == 200:
                data = answer.json()
                assert len(data["workers"]) == len({*seqs, *totals})
            else:
                assert "not an integer" in answer.json()["error"]

        ledger()
        print(f"\nwebui /ledger: statuses {dict(counts)}")
        assert counts["200"] > 0 and counts["503"] > 0, counts
        still_fine(service)
    finally:
        service.stop()
