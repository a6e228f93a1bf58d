"""rng's pure parts: size parsing, settings and the FIFO gate."""

from __future__ import annotations

import asyncio

import pytest
from rng import FifoGate, SizeError, parse_size
from rng_settings import Settings


@pytest.mark.parametrize(("text", "size"), [("0", 0), ("32", 32), ("0032", 32), ("100", 100)])
def test_good_sizes(text: str, size: int) -> None:
    assert parse_size(text, 100) == size


@pytest.mark.parametrize(
    "text", ["", "abc", "-1", "+1", "1.5", "1e3", " 1", "1 ", "²", "١٢", "101", "9" * 5000]
)
def test_bad_sizes(text: str) -> None:
    with pytest.raises(SizeError):
        parse_size(text, 100)


def test_settings_defaults_and_env() -> None:
    assert Settings().delay == 0.1
    assert Settings().concurrency == 1
    assert Settings().max_bytes == 1048576
    custom = Settings.from_env(
        {"RNG_DELAY": "0", "RNG_CONCURRENCY": "4", "RNG_MAX_BYTES": "10", "PORT": "8001"}
    )
    assert (custom.delay, custom.concurrency, custom.max_bytes, custom.port) == (0, 4, 10, 8001)


def test_settings_every_variable_overridden() -> None:
    custom = Settings.from_env(
        {
            "HOST": " 127.0.0.1 ",
            "PORT": "65535",
            "RNG_DELAY": "0.25",
            "RNG_CONCURRENCY": "007",
            "RNG_MAX_BYTES": "0",
            "LOG_LEVEL": "debug",
            "ACCESS_LOG": "Yes",
            "METRICS": "off",
            "DOCKERCOINS_NODE": " node-2 ",
        }
    )
    assert custom == Settings(
        HOST="127.0.0.1",
        PORT=65535,
        RNG_DELAY=0.25,
        RNG_CONCURRENCY=7,
        RNG_MAX_BYTES=0,
        LOG_LEVEL="DEBUG",
        ACCESS_LOG=True,
        METRICS=False,
        DOCKERCOINS_NODE="node-2",
    )


def test_gate_serves_waiters_in_arrival_order() -> None:
    async def scenario() -> list[int]:
        gate = FifoGate(1)
        order: list[int] = []

        async def holder(number: int) -> None:
            async with gate:
                order.append(number)
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(holder(n)) for n in range(6)]
        await asyncio.gather(*tasks)
        assert gate.active == 0
        return order

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4, 5]


def test_gate_never_lets_more_than_capacity_in() -> None:
    async def scenario() -> int:
        gate = FifoGate(3)
        inside = 0
        most = 0

        async def holder() -> None:
            nonlocal inside, most
            async with gate:
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                inside -= 1

        await asyncio.gather(*(holder() for _ in range(20)))
        return most

    assert asyncio.run(scenario()) == 3


def test_cancelled_waiter_does_not_leak_the_slot() -> None:
    async def scenario() -> list[str]:
        gate = FifoGate(1)
        order: list[str] = []
        await gate.acquire()
        cancelled = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)

        async def later() -> None:
            async with gate:
                order.append("later")

        waiting = asyncio.create_task(later())
        await asyncio.sleep(0)
        assert gate.waiting == 2
        cancelled.cancel()
        await asyncio.sleep(0)
        gate.release()
        await waiting
        assert gate.active == 0
        return order

    assert asyncio.run(scenario()) == ["later"]


def test_slot_handed_over_during_cancellation_is_passed_on() -> None:
    async def scenario() -> int:
        gate = FifoGate(1)
        await gate.acquire()
        first = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        second = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        gate.release()  # hands the slot to `first`...
        first.cancel()  # ...which is cancelled before it runs again
        await asyncio.gather(first, return_exceptions=True)
        await second  # the slot must reach `second`
        gate.release()
        return gate.active

    assert asyncio.run(scenario()) == 0


def test_newcomer_after_a_release_does_not_overtake_the_queue() -> None:
    async def scenario() -> list[str]:
        gate = FifoGate(1)
        order: list[str] = []
        await gate.acquire()

        async def holder(name: str) -> None:
            async with gate:
                order.append(name)

        queued = [asyncio.create_task(holder(f"queued {n}")) for n in range(3)]
        await asyncio.sleep(0)
        assert (gate.active, gate.waiting) == (1, 3)
        gate.release()  # the slot goes to "queued 0", which has not run yet...
        newcomer = asyncio.create_task(holder("newcomer"))  # ...so this one must queue
        await asyncio.gather(*queued, newcomer)
        assert (gate.active, gate.waiting) == (0, 0)
        return order

    assert asyncio.run(scenario()) == ["queued 0", "queued 1", "queued 2", "newcomer"]
