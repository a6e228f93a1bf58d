"""rng's pure parts: size parsing, settings and the FIFO gate."""

from __future__ import annotations

import asyncio

import pytest
from rng import FifoGate, Settings, SizeError, parse_size


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
    assert Settings.from_env({}) == Settings()
    assert Settings().delay == 0.1
    assert Settings().concurrency == 1
    assert Settings().max_bytes == 1048576
    custom = Settings.from_env(
        {"RNG_DELAY": "0", "RNG_CONCURRENCY": "4", "RNG_MAX_BYTES": "10", "PORT": "8001"}
    )
    assert (custom.delay, custom.concurrency, custom.max_bytes, custom.port) == (0, 4, 10, 8001)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RNG_DELAY", "-1"),
        ("RNG_DELAY", "fast"),
        ("RNG_DELAY", "nan"),
        ("RNG_CONCURRENCY", "0"),
        ("RNG_CONCURRENCY", "two"),
        ("RNG_MAX_BYTES", "-5"),
        ("PORT", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("ACCESS_LOG", "maybe"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


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
