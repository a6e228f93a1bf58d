"""webui's Prometheus metrics: requests by route template and status, their durations, and
the instance's identity (dockercoins_instance_info), served at GET /metrics."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SERVICE = "webui"
UNMATCHED = "(unmatched)"  # the route label of a request no route took


class WebuiMetrics:
    """One registry per app, so that several apps in one process (tests) do not collide."""

    def __init__(self, node: str) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        instance = Info(
            "dockercoins_instance",
            "Which service this is, on which host and swarm node",
            registry=self.registry,
        )
        instance.info({"service": SERVICE, "hostname": socket.gethostname(), "node": node})
        self.requests = Counter(
            "dockercoins_webui_requests",
            "HTTP requests answered, by route template and status code",
            ["route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "dockercoins_webui_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route"],
            registry=self.registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.duration.labels(route=route).observe(seconds)

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics: the Prometheus text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route that takes the request, chosen as Starlette's router
    chooses (the first full match, else the first partial one): "/json", "/{path}" for the
    static files. A bounded set of labels, whatever paths clients ask for."""
    chosen = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            chosen = route
            break
        if match is Match.PARTIAL and chosen is None:
            chosen = route
    if isinstance(chosen, Mount):
        return f"{chosen.path}/{{path}}"
    path = getattr(chosen, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class MetricsMiddleware:
    """Pure ASGI middleware counting and timing every HTTP request (none for lifespan)."""

    def __init__(self, app: ASGIApp, metrics: WebuiMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # the app's, read at each request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_template(self.routes, scope)
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.observe(route, status, time.perf_counter() - started)
