"""rng: GET /<n> answers n random bytes, slowly and one request at a time on purpose.

GET /, GET /health and GET /metrics answer at once, never queued behind the random bytes:
/health answers HEALTH_BYTES random bytes (the health check's route: rng_probe.py, run by
the image's HEALTHCHECK); /metrics serves the Prometheus metrics (rng_metrics.py), 404 with
METRICS=0.
When RNG_MAX_WAITING requests already wait their turn, a new GET /<n> is not queued: it gets
503 at once with Retry-After (whole seconds, about how long the queue takes to drain, 1 to 60).
A request whose client hung up while it waited is skipped when its turn comes.

Settings (environment, read and checked in rng_settings.py): HOST (0.0.0.0), PORT (80),
RNG_DELAY (0.1 s per answer), RNG_CONCURRENCY (1 answer at a time; the others wait their turn
in arrival order), RNG_MAX_WAITING (100), RNG_MAX_BYTES (1048576), LOG_LEVEL (INFO),
ACCESS_LOG (0), METRICS (1), DOCKERCOINS_NODE (empty; the swarm node's name, for the metrics).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import socket
import sys
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from rng_metrics import CONTENT_TYPE, RngMetrics
from rng_settings import Settings

log = logging.getLogger("rng")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
METRICS_PATH = "/metrics"
HEALTH_PATH = "/health"
HEALTH_BYTES = 32  # what /health answers (rng_probe.py checks the length)
_DIGITS = re.compile(r"[0-9]+")


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


class QueueFull(Exception):
    """The gate's queue is at its cap: the request is refused instead of waiting."""


def retry_after(waiting: int, delay: float, capacity: int) -> int:
    """Whole seconds a refused client should wait: about the time the queue takes to drain,
    at least 1 and at most 60."""
    return max(1, min(60, math.ceil(waiting * delay / capacity)))


class FifoGate:
    """Lets at most `capacity` holders in at once; the others wait in arrival order, at most
    `max_waiting` of them: when that many wait and no slot is free, acquire() raises QueueFull
    at once (None: no cap).

    asyncio.Semaphore keeps the queue: on Python 3.11 (checked on 3.11.2 and 3.11.7) release()
    hands the slot straight to the oldest waiter, so a newcomer cannot overtake a queued
    request, and a waiter cancelled just as it was handed the slot passes it on. This wrapper
    adds the counts (`active`, `waiting`) for logs and metrics.
    """

    def __init__(self, capacity: int, max_waiting: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if max_waiting is not None and max_waiting < 0:
            raise ValueError("max_waiting must be at least 0")
        self.capacity = capacity
        self.max_waiting = max_waiting
        self.active = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(capacity)

    def full(self) -> bool:
        """True when a newcomer would have to wait and the queue is already at its cap."""
        if self.max_waiting is None:
            return False
        # locked(): no slot free right now, or queued waiters that a free slot is owed to.
        return self._slots.locked() and self.waiting >= self.max_waiting

    async def acquire(self) -> None:
        if self.full():
            raise QueueFull(f"{self.waiting} requests already wait their turn")
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        if self.active <= 0:
            raise RuntimeError("release() without acquire()")
        self.active -= 1
        self._slots.release()

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
    gate = FifoGate(settings.concurrency, settings.max_waiting)
    banner = f"RNG running on {socket.gethostname()}\n"
    metrics = None
    if settings.metrics:
        metrics = RngMetrics(settings.node or "", lambda: gate.waiting, lambda: gate.active)

    @app.get("/")
    async def index() -> PlainTextResponse:
        return PlainTextResponse(banner)

    # Declared before /{size}, which would take "metrics" for a (bad) size; never gated.
    @app.get(METRICS_PATH)
    async def metrics_page() -> Response:
        if metrics is None:
            return JSONResponse({"error": "metrics are off (METRICS=0)"}, status_code=404)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    # Declared before /{size} too; never gated: a health check must not wait behind the
    # workers (nor take a worker's turn), yet it gets random bytes as they do.
    @app.get(HEALTH_PATH)
    async def health() -> Response:
        return Response(os.urandom(HEALTH_BYTES), media_type="application/octet-stream")

    @app.get("/{size}")
    async def random_bytes(size: str, request: Request) -> Response:
        try:
            count = parse_size(size, settings.max_bytes)
        except SizeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        queued = time.monotonic()
        try:
            await gate.acquire()
        except QueueFull as exc:
            if metrics is not None:
                metrics.refused.inc()
            seconds = retry_after(gate.waiting, settings.delay, settings.concurrency)
            return JSONResponse(
                {"error": f"rng is busy: {exc}; retry in {seconds} s"},
                status_code=503,
                headers={"Retry-After": str(seconds)},
            )
        try:
            # A client that gave up while it waited (a timeout, a worker stopped) does not
            # get its turn: the queue moves on at once instead of serving nobody.
            if await request.is_disconnected():
                return JSONResponse({"error": "client went away"}, status_code=400)
            started = time.monotonic()
            if settings.delay > 0:
                await asyncio.sleep(settings.delay)
            data = os.urandom(count)
            finished = time.monotonic()
        finally:
            gate.release()
        if metrics is not None:
            metrics.answered(count, started - queued)
        # Server-side service interval (monotonic clock of this process): lets a client
        # see whether two answers were produced at the same time, without timing anything.
        headers = {"X-Rng-Started": f"{started:.6f}", "X-Rng-Finished": f"{finished:.6f}"}
        return Response(data, media_type="application/octet-stream", headers=headers)

    return app


def main() -> int:
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        logging.basicConfig(format=LOG_FORMAT)
        log.error("bad setting: %s", exc)
        return 2
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    log.info(
        "rng starting on %s:%d: delay %.3f s, concurrency %d, at most %d waiting, "
        "at most %d bytes, metrics %s",
        settings.host,
        settings.port,
        settings.delay,
        settings.concurrency,
        settings.max_waiting,
        settings.max_bytes,
        "on" if settings.metrics else "off",
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
