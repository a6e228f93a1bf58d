"""webui: the DockerCoins page and the /json numbers it charts.

GET / redirects to /index.html; GET /json answers {"coins": HLEN wallet, "hashes": GET hashes
(0 when unset), "now": Unix time}; 503 with a JSON error while Redis is unreachable.
GET /ledger answers what the workers wrote: {"hashes": GET hashes, "workers": {worker id:
{"seq": its last write's sequence number, "hashes": the hashes it wrote}}} from the hashes
dockercoins:ledger:seq and dockercoins:ledger:hashes (field = worker id), all read in one
MULTI/EXEC so the numbers agree with each other; 503 like /json while Redis is unreachable.
GET /rng-rates answers rng's answers per second per instance as Prometheus sees them (always
200; see webui_rates.py). GET /metrics serves webui's own metrics (see webui_metrics.py). The
page and its assets (the vendored chart library too) are static files from ./static.

Settings (environment, read and checked in webui_settings.py): HOST (0.0.0.0), PORT (80),
REDIS_URL (redis://redis:6379/0), REDIS_PASSWORD_FILE (empty: no password; a file holding
it, read once at start, never logged), REDIS_TIMEOUT (1.0 s, connect and reply), LOG_LEVEL
(INFO), ACCESS_LOG (0), METRICS (1), PROMETHEUS_URL (unset), DOCKERCOINS_NODE (unset).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from webui_metrics import MetricsMiddleware, WebuiMetrics
from webui_rates import NOT_CONFIGURED, RatesError, answer, query_rates
from webui_settings import Settings, redacted_url, redis_password

log = logging.getLogger("webui")

STATIC_DIR = Path(__file__).resolve().parent / "static"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NO_STORE = {"Cache-Control": "no-store"}
_INTEGER = re.compile(r"-?[0-9]+")
PROMETHEUS_TIMEOUT = 1.5  # seconds for one query; the page asks every 2 s
# Written by the workers with each INCRBY of `hashes`: hash field = worker id.
LEDGER_SEQ_KEY = "dockercoins:ledger:seq"
LEDGER_HASHES_KEY = "dockercoins:ledger:hashes"
# Redis reads in flight at once (the pool's size); more wait their turn in arrival order.
# Without the turns, redis-py's pool refuses a read past its size at once ("Too many
# connections"), which under load turned into 503s blaming Redis.
REDIS_MAX_CONNECTIONS = 32
BUSY = {**NO_STORE, "Retry-After": "1"}


class StatsError(Exception):
    """The numbers cannot be read right now."""


def parse_count(raw: bytes | str | None, what: str) -> int:
    """A whole number as the workers store it (`what` names it in the error); 0 when unset."""
    if raw is None:
        return 0
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    # ASCII digits with an optional minus, as Redis writes integers: int() alone would also
    # take "1_000", " 7 " or Unicode digits.
    if not _INTEGER.fullmatch(text):
        raise StatsError(f"{what} holds {text[:40]!r}, not an integer")
    return int(text)


def parse_hashes(raw: bytes | str | None) -> int:
    """The `hashes` counter as stored by the workers; 0 when unset."""
    return parse_count(raw, "key 'hashes'")


def worker_name(raw: bytes) -> str:
    """A worker id (a hash field) as a JSON key; bytes that are not UTF-8 are shown escaped."""
    return raw.decode("utf-8", "backslashreplace")


def parse_ledger(
    raw_hashes: bytes | str | None,
    seqs: Mapping[bytes, bytes],
    counts: Mapping[bytes, bytes],
) -> dict[str, Any]:
    """The /ledger answer from `hashes` and the two ledger hashes; a worker found in only one
    of them has 0 for the other."""
    workers: dict[str, dict[str, int]] = {}
    for field in sorted({*seqs, *counts}, key=worker_name):
        name = worker_name(field)
        workers[name] = {
            "seq": parse_count(seqs.get(field), f"{LEDGER_SEQ_KEY} field {name[:40]!r}"),
            "hashes": parse_count(counts.get(field), f"{LEDGER_HASHES_KEY} field {name[:40]!r}"),
        }
    return {"hashes": parse_hashes(raw_hashes), "workers": workers}


class Health:
    """Logs one line when a dependency goes away and one when it comes back, not one per
    request: `gone` % reason, then `back`."""

    def __init__(self, gone: str, back: str) -> None:
        self.gone = gone
        self.back = back
        self.reachable = True

    def ok(self) -> None:
        if not self.reachable:
            log.info(self.back)
        self.reachable = True

    def failed(self, reason: str) -> None:
        if self.reachable:
            log.warning(self.gone, reason)
        self.reachable = False


async def read_stats(redis: Redis, within: float) -> dict[str, int | float]:
    """{"coins", "hashes", "now"} in one round trip; StatsError when Redis cannot answer."""
    try:
        async with asyncio.timeout(within):
            async with redis.pipeline(transaction=False) as pipe:
                pipe.hlen("wallet")
                pipe.get("hashes")
                coins, raw_hashes = await pipe.execute()
    except TimeoutError:
        raise StatsError(f"no answer within {within:g} s") from None
    except (RedisError, OSError) as exc:
        raise StatsError(str(exc) or type(exc).__name__) from None
    return {"coins": int(coins), "hashes": parse_hashes(raw_hashes), "now": time.time()}


async def read_ledger(redis: Redis, within: float) -> dict[str, Any]:
    """{"hashes", "workers"} in one MULTI/EXEC; StatsError when Redis cannot answer."""
    try:
        async with asyncio.timeout(within):
            async with redis.pipeline(transaction=True) as pipe:
                pipe.get("hashes")
                pipe.hgetall(LEDGER_SEQ_KEY)
                pipe.hgetall(LEDGER_HASHES_KEY)
                raw_hashes, seqs, counts = await pipe.execute()
    except TimeoutError:
        raise StatsError(f"no answer within {within:g} s") from None
    except (RedisError, OSError) as exc:
        raise StatsError(str(exc) or type(exc).__name__) from None
    return parse_ledger(raw_hashes, seqs, counts)


def create_app(settings: Settings, redis_password: str | None = None) -> FastAPI:
    """The app; `redis_password` (read from REDIS_PASSWORD_FILE) authenticates every
    connection to Redis."""
    health = Health("redis unreachable: %s", "redis reachable again")
    rates_health = Health("rng rates unavailable: %s", "rng rates available again")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Short timeouts and no retries: /json must answer quickly, and the page retries.
        # `turns` below keeps the reads in flight within the pool's size.
        app.state.redis = Redis.from_url(
            settings.redis_url,
            password=redis_password,
            max_connections=REDIS_MAX_CONNECTIONS,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        try:
            yield
        finally:
            await app.state.redis.aclose()

    app = FastAPI(title="webui", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    if settings.metrics:  # off: no route, no middleware, no cost
        metrics = WebuiMetrics(node=settings.node or "")
        app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
        app.add_api_route("/metrics", metrics.endpoint, methods=["GET"], include_in_schema=False)

    @app.get("/")
    async def index() -> RedirectResponse:
        return RedirectResponse("/index.html", status_code=302)

    # asyncio.Semaphore hands a freed turn to the oldest waiter (Python 3.11), so no read
    # waits behind newcomers.
    turns = asyncio.Semaphore(REDIS_MAX_CONNECTIONS)
    within = 2 * settings.redis_timeout

    async def from_redis(read: Callable[[Redis, float], Awaitable[dict[str, Any]]]) -> JSONResponse:
        """read(redis, within) as the answer; 503 when Redis cannot answer, or when no turn
        to ask it comes within `within` (webui is busy: Redis is not the one to blame)."""
        try:
            async with asyncio.timeout(within):
                await turns.acquire()
        except TimeoutError:
            error = f"webui busy: no turn to read redis within {within:g} s"
            return JSONResponse({"error": error}, status_code=503, headers=BUSY)
        try:
            numbers = await read(app.state.redis, within)
        except StatsError as exc:
            health.failed(str(exc))
            return JSONResponse(
                {"error": f"redis unavailable: {exc}"}, status_code=503, headers=NO_STORE
            )
        finally:
            turns.release()
        health.ok()
        return JSONResponse(numbers, headers=NO_STORE)

    @app.get("/json")
    async def stats() -> JSONResponse:
        return await from_redis(read_stats)

    @app.get("/ledger")
    async def ledger() -> JSONResponse:
        return await from_redis(read_ledger)

    @app.get("/rng-rates")
    async def rng_rates() -> JSONResponse:
        if not settings.prometheus_url:
            return JSONResponse(answer(None, NOT_CONFIGURED), headers=NO_STORE)
        try:
            async with asyncio.timeout(2 * PROMETHEUS_TIMEOUT):
                series = await query_rates(settings.prometheus_url, PROMETHEUS_TIMEOUT)
        except TimeoutError:
            reason = f"Prometheus unreachable: no answer within {PROMETHEUS_TIMEOUT:g} s"
        except RatesError as exc:
            reason = str(exc)
        else:
            rates_health.ok()
            return JSONResponse(answer(series), headers=NO_STORE)
        rates_health.failed(reason)
        return JSONResponse(answer(None, reason), headers=NO_STORE)

    # Last, so that / and /json above win; StaticFiles refuses paths outside STATIC_DIR.
    app.mount("/", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def main() -> int:
    try:
        settings = Settings.from_env()
        password = redis_password(settings)
    except ValueError as exc:
        logging.basicConfig(format=LOG_FORMAT)
        log.error("bad setting: %s", exc)
        return 2
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    log.info(
        "webui starting on %s:%d: redis %s (%s, timeout %.2f s), prometheus %s, metrics %s",
        settings.host,
        settings.port,
        redacted_url(settings.redis_url),
        "password from REDIS_PASSWORD_FILE" if password is not None else "no password",
        settings.redis_timeout,
        redacted_url(settings.prometheus_url) if settings.prometheus_url else "not configured",
        "on" if settings.metrics else "off",
    )
    uvicorn.run(
        create_app(settings, password),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=settings.access_log,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
