"""rng: GET /<n> answers n random bytes, slowly and one request at a time on purpose.

Settings (environment): HOST (0.0.0.0), PORT (80), RNG_DELAY (0.1 s per answer),
RNG_CONCURRENCY (1 answer at a time; the others wait their turn in arrival order),
RNG_MAX_BYTES (1048576), LOG_LEVEL (INFO), ACCESS_LOG (0).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response

log = logging.getLogger("rng")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_DIGITS = re.compile(r"[0-9]+")


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name}={raw!r} must be a finite number >= 0")
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


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 80
    delay: float = 0.1
    concurrency: int = 1
    max_bytes: int = 1048576
    log_level: str = "INFO"
    access_log: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Every setting of the service, read once; ValueError names the bad variable."""
        return cls(
            host=env.get("HOST", "").strip() or cls.host,
            port=_env_int(env, "PORT", cls.port, minimum=1),
            delay=_env_float(env, "RNG_DELAY", cls.delay),
            concurrency=_env_int(env, "RNG_CONCURRENCY", cls.concurrency, minimum=1),
            max_bytes=_env_int(env, "RNG_MAX_BYTES", cls.max_bytes, minimum=0),
            log_level=_env_log_level(env),
            access_log=_env_bool(env, "ACCESS_LOG", cls.access_log),
        )


class SizeError(ValueError):
    """The requested number of bytes is not acceptable."""


def parse_size(text: str, max_bytes: int) -> int:
    """The n of GET /<n>: ASCII digits only (no sign, point or exponent), at most max_bytes."""
    if not _DIGITS.fullmatch(text):
        raise SizeError(f"size must be a non-negative integer, got {text[:40]!r}")
    # Compare lengths before int(): Python refuses to parse very long digit strings.
    if len(text.lstrip("0")) > len(str(max_bytes)) or int(text) > max_bytes:
        raise SizeError(f"size must be at most {max_bytes} bytes")
    return int(text)


class FifoGate:
    """Lets at most `capacity` holders in at once; the others wait in arrival order.

    A released slot is handed straight to the oldest waiter, so a newcomer can never
    overtake a request that is already queued.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def acquire(self) -> None:
        if self.active < self.capacity and not self._waiters:
            self.active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot reached us just as we were cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter; `active` is unchanged
                return
        if self.active <= 0:
            raise RuntimeError("release() without acquire()")
        self.active -= 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="rng", docs_url=None, redoc_url=None, openapi_url=None)
    gate = FifoGate(settings.concurrency)
    banner = f"RNG running on {socket.gethostname()}\n"

    @app.get("/")
    async def index() -> PlainTextResponse:
        return PlainTextResponse(banner)

    @app.get("/{size}")
    async def random_bytes(size: str) -> Response:
        try:
            count = parse_size(size, settings.max_bytes)
        except SizeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        async with gate:
            started = time.monotonic()
            if settings.delay > 0:
                await asyncio.sleep(settings.delay)
            data = os.urandom(count)
            finished = time.monotonic()
        # Server-side service interval (monotonic clock of this process): lets a client
        # see whether two answers were produced at the same time, without timing anything.
        headers = {"X-Rng-Started": f"{started:.6f}", "X-Rng-Finished": f"{finished:.6f}"}
        return Response(data, media_type="application/octet-stream", headers=headers)

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
        "rng starting on %s:%d: delay %.3f s, concurrency %d, at most %d bytes",
        settings.host,
        settings.port,
        settings.delay,
        settings.concurrency,
        settings.max_bytes,
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
