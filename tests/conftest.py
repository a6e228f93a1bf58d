"""Fixtures shared by every tier: a real Redis and the services as real processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.servers import RedisServer, ServiceProcess


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server on a free loopback port, stopped after the test even on failure."""
    server = RedisServer(workdir=tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Factory: start_service("rng", RNG_DELAY="0") -> a running ServiceProcess; all stopped
    after the test, even on failure. Logs go to tmp_path/<name>-<n>.log."""
    started: list[ServiceProcess] = []

    def start(name: str, wait: bool = True, **env: str) -> ServiceProcess:
        service = ServiceProcess(
            name=name, env=env, log_path=tmp_path / f"{name}-{len(started)}.log"
        )
        started.append(service)
        service.start(wait=wait)
        return service

    try:
        yield start
    finally:
        for service in reversed(started):
            service.stop()
