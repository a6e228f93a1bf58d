"""`bench pipeline --compare-clients`: a GET-then-POST loop run in this process with httpx
(keep-alive) and with plain aiohttp keep-alive (no rotation), against the same rng and
hasher as the worker, so the worker's client choice can be checked against the
alternatives on this machine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

LoopBody = Callable[[], Awaitable[None]]


def _cpu_seconds() -> float:
    """CPU time (user + system) this process has used."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class ClientRate:
    """Loops per second and the CPU time the client spent per loop."""

    loops_per_second: float
    cpu_us_per_loop: float


async def _drive(body: LoopBody, concurrency: int, warmup: float, duration: float) -> ClientRate:
    """Run `body` in `concurrency` tasks; loops per second over the measured window and
    the CPU time this process spent per loop."""
    counted = 0
    measuring = False
    stop = False

    async def one() -> None:
        nonlocal counted
        while not stop:
            await body()
            if measuring:
                counted += 1

    tasks = [asyncio.create_task(one()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    measuring = True
    started, cpu = time.monotonic(), _cpu_seconds()
    await asyncio.sleep(duration)
    measuring = False
    elapsed, cpu = time.monotonic() - started, _cpu_seconds() - cpu
    stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    return ClientRate(counted / max(elapsed, 1e-9), 1e6 * cpu / max(counted, 1))


async def httpx_rate(
    urls: dict[str, str], concurrency: int, warmup: float, duration: float
) -> ClientRate:
    """GET rng then POST hasher with one httpx.AsyncClient (keep-alive)."""
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=10, trust_env=False) as client:

        async def body() -> None:
            data = (await client.get(urls["rng"])).content
            (await client.post(urls["hasher"], content=data)).raise_for_status()

        return await _drive(body, concurrency, warmup, duration)


async def aiohttp_rate(
    urls: dict[str, str], concurrency: int, warmup: float, duration: float
) -> ClientRate:
    """GET rng then POST hasher with one aiohttp session (keep-alive, no rotation)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def body() -> None:
            async with session.get(urls["rng"]) as answer:
                data = await answer.read()
            async with session.post(urls["hasher"], data=data) as answer:
                await answer.read()
                answer.raise_for_status()

        return await _drive(body, concurrency, warmup, duration)


def run_async(coroutine: Awaitable[ClientRate]) -> ClientRate:
    """Run one loop to the end on a fresh event loop (uvloop when installed)."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)  # type: ignore[arg-type]
