"""webui: the DockerCoins page and the /json numbers it charts.

GET / redirects to /index.html; GET /json answers {"coins": HLEN wallet, "hashes": GET hashes
(0 when unset), "now": Unix time}; 503 with a JSON error while Redis is unreachable. The
page and its assets (the vendored chart library too) are static files from ./static.

Settings (environment): HOST (0.0.0.0), PORT (80), REDIS_URL (redis://redis:6379/0),
REDIS_TIMEOUT (1.0 s, connect and reply), LOG_LEVEL (INFO), ACCESS_LOG (0).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("webui")

STATIC_DIR = Path(__file__).resolve().parent / "static"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NO_STORE = {"Cache-Control": "no-store"}
_DIGITS = re.compile(r"[0-9]+")


def _env_float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not value >= minimum or value == float("inf"):
        raise ValueError(f"{name}={raw!r} must be a finite number >= {minimum}")
    return value


def _env_int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not _DIGITS.fullmatch(raw) or int(raw) < minimum:
        raise ValueError(f"{name}={raw!r} must be an integer >= {minimum}")
    return int(raw)


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} must be 1/0, true/false, yes/no or on/off")


def _env_log_level(env: Mapping[str, str]) -> str:
    level = env.get("LOG_LEVEL", "").strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise ValueError(f"LOG_LEVEL={level!r} must be one of {', '.join(LOG_LEVELS)}")
    return level


def _env_redis_url(env: Mapping[str, str]) -> str:
    url = env.get("REDIS_URL", "").strip() or Settings.redis_url
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ValueError(f"REDIS_URL={redacted_url(url)!r} must look like redis://HOST:PORT/DB")
    return url


def redacted_url(url: str) -> str:
    """The URL without its password, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 80
    redis_url: str = "redis://redis:6379/0"
    redis_timeout: float = 1.0
    log_level: str = "INFO"
    access_log: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Every setting of the service, read once; ValueError names the bad variable."""
        return cls(
            host=env.get("HOST", "").strip() or cls.host,
            port=_env_int(env, "PORT", cls.port, minimum=1),
            redis_url=_env_redis_url(env),
            redis_timeout=_env_float(env, "REDIS_TIMEOUT", cls.redis_timeout, minimum=0.01),
            log_level=_env_log_level(env),
            access_log=_env_bool(env, "ACCESS_LOG", cls.access_log),
        )


class StatsError(Exception):
    """The numbers cannot be read right now."""


def parse_hashes(raw: bytes | str | None) -> int:
    """The `hashes` counter as stored by the workers; 0 when unset."""
    if raw is None:
        return 0
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    try:
        return int(text)
    except ValueError:
        raise StatsError(f"key 'hashes' holds {text[:40]!r}, not an integer") from None


class RedisHealth:
    """Logs one line when Redis goes away and one when it comes back, not one per request."""

    def __init__(self) -> None:
        self.reachable = True

    def ok(self) -> None:
        if not self.reachable:
            log.info("redis reachable again")
        self.reachable = True

    def failed(self, reason: str) -> None:
        if self.reachable:
            log.warning("redis unreachable: %s", reason)
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


def create_app(settings: Settings) -> FastAPI:
    health = RedisHealth()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Short timeouts and no retries: /json must answer quickly, and the page retries.
        app.state.redis = Redis.from_url(
            settings.redis_url,
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

    @app.get("/")
    async def index() -> RedirectResponse:
        return RedirectResponse("/index.html", status_code=302)

    @app.get("/json")
    async def stats() -> JSONResponse:
        try:
            numbers = await read_stats(app.state.redis, 2 * settings.redis_timeout)
        except StatsError as exc:
            health.failed(str(exc))
            return JSONResponse(
                {"error": f"redis unavailable: {exc}"}, status_code=503, headers=NO_STORE
            )
        health.ok()
        return JSONResponse(numbers, headers=NO_STORE)

    # Last, so that / and /json above win; StaticFiles refuses paths outside STATIC_DIR.
    app.mount("/", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def main() -> int:
    try:
        settings = Settings.from_env(os.environ)
    except ValueError as exc:
        logging.basicConfig(format=LOG_FORMAT)
        log.error("bad setting: %s", exc)
        return 2
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    log.info(
        "webui starting on %s:%d: redis %s (timeout %.2f s)",
        settings.host,
        settings.port,
        redacted_url(settings.redis_url),
        settings.redis_timeout,
    )
    uvicorn.run(
        create_app(settings),
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
