"""hasher: POST / answers the lowercase hex sha256 of the body, slowly but many at once.

The body is hashed as it streams in, never held whole. What bounds memory under load is the
number of hash requests held at once, HASHER_MAX_BODIES: each holds about 64 KiB of unread
body at most (uvicorn stops reading a connection past that, give or take one read) plus the
chunk being hashed. A POST / that comes when that many are held gets 503 at once, with
Retry-After and the connection closed, its body unread; GET / (the health check's route) is
never refused.

Settings (environment, read and checked in hasher_settings.py): HOST (0.0.0.0), PORT (80),
HASHER_DELAY (0.1 s per answer; requests are not serialised), HASHER_MAX_BYTES (1048576; a
larger body gets 413 without being read into memory), HASHER_MAX_BODIES (256), LOG_LEVEL
(INFO), ACCESS_LOG (0), METRICS (1: GET /metrics answers the Prometheus metrics of
hasher_metrics.py; 0: 404), DOCKERCOINS_NODE (empty; the swarm node's name, for the metrics).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import socket
import sys
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from hasher_metrics import CONTENT_TYPE, HasherMetrics
from hasher_settings import Settings
from starlette.requests import ClientDisconnect

log = logging.getLogger("hasher")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
METRICS_PATH = "/metrics"
_DIGITS = re.compile(r"[0-9]+")


class BodyError(ValueError):
    """The request body cannot be hashed; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_declared_length(header: str | None, max_bytes: int) -> None:
    """Reject a body from its Content-Length alone, before reading any of it."""
    if header is None:
        return
    text = header.strip()
    if not _DIGITS.fullmatch(text):
        raise BodyError(400, f"bad Content-Length {header[:40]!r}")
    if len(text.lstrip("0")) > len(str(max_bytes)) or int(text) > max_bytes:
        raise BodyError(413, f"body larger than {max_bytes} bytes")


async def hash_stream(request: Request, max_bytes: int) -> tuple[str, int]:
    """sha256 of the body, read chunk by chunk, and the body's length; stops as soon as it
    passes max_bytes."""
    digest = hashlib.sha256()
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise BodyError(413, f"body larger than {max_bytes} bytes")
        digest.update(chunk)
    return digest.hexdigest(), total


class Holds:
    """Counts the hash requests held right now and refuses one past `limit`."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.held = 0

    def take(self) -> bool:
        """Hold one more if there is room; False (nothing taken) when `limit` are held."""
        if self.held >= self.limit:
            return False
        self.held += 1
        return True

    def give_back(self) -> None:
        if self.held <= 0:
            raise RuntimeError("give_back() without take()")
        self.held -= 1


# The body of a hash request, for the OpenAPI schema (not served; the fuzz tests read it).
BODY_SCHEMA = {
    "requestBody": {
        "required": False,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="hasher", docs_url=None, redoc_url=None, openapi_url=None)
    banner = f"HASHER running on {socket.gethostname()}\n"
    holds = Holds(settings.max_bodies)
    metrics = HasherMetrics(settings.node or "", lambda: holds.held) if settings.metrics else None
    # Whole seconds: a held request is done within about one delay.
    busy_headers = {"Retry-After": str(max(1, math.ceil(settings.delay))), "Connection": "close"}

    @app.get("/")
    async def index() -> PlainTextResponse:
        return PlainTextResponse(banner)

    if metrics is not None:

        @app.get(METRICS_PATH)
        async def metrics_page() -> Response:
            return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.post("/", openapi_extra=BODY_SCHEMA)
    async def hash_body(request: Request) -> Response:
        if not holds.take():
            if metrics is not None:
                metrics.refused.inc()
            # Not read: the body stays on the wire, so the connection is closed after this.
            message = f"hasher is busy: {holds.limit} hash requests held at once; retry later"
            return JSONResponse({"error": message}, status_code=503, headers=busy_headers)
        try:
            return await answer(request)
        finally:
            holds.give_back()

    async def answer(request: Request) -> Response:
        began = time.perf_counter()
        try:
            check_declared_length(request.headers.get("content-length"), settings.max_bytes)
            hexdigest, size = await hash_stream(request, settings.max_bytes)
        except BodyError as exc:
            # The unread rest of the body stays on the wire: close the connection after this.
            return JSONResponse(
                {"error": str(exc)}, status_code=exc.status, headers={"Connection": "close"}
            )
        except ClientDisconnect:
            return JSONResponse({"error": "client went away"}, status_code=400)
        started = time.monotonic()
        if settings.delay > 0:
            await asyncio.sleep(settings.delay)
        finished = time.monotonic()
        # Server-side interval of the delay (monotonic clock of this process): lets a client
        # see that answers are produced at the same time, without timing anything.
        headers = {"X-Hasher-Started": f"{started:.6f}", "X-Hasher-Finished": f"{finished:.6f}"}
        if metrics is not None:
            metrics.answered(size, time.perf_counter() - began)
        return PlainTextResponse(hexdigest, headers=headers)

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
        "hasher starting on %s:%d: delay %.3f s, bodies up to %d bytes, %d at once, metrics %s",
        settings.host,
        settings.port,
        settings.delay,
        settings.max_bytes,
        settings.max_bodies,
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
