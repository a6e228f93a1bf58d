"""rng's pure parts: size parsing, settings, the FIFO gate and its cap on waiting requests."""

from __future__ import annotations

import asyncio

import pytest
from rng import FifoGate, QueueFull, SizeError, parse_size, retry_after
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
    assert Settings().max_waiting == 100
    custom = Settings.from_env(
        {
            "RNG_DELAY": "0",
            "RNG_CONCURRENCY": "4",
            "RNG_MAX_BYTES": "10",
            "RNG_MAX_WAITING": "0",
            "PORT": "8001",
        }
    )
    assert (custom.delay, custom.concurrency, custom.max_bytes, custom.port) == (0, 4, 10, 8001)
    assert custom.max_waiting == 0


def test_settings_every_variable_overridden() -> None:
    custom = Settings.from_env(
        {
            "HOST": " 127.0.0.1 ",
            "PORT": "65535",
            "RNG_DELAY": "0.25",
            "RNG_CONCURRENCY": "007",
            "RNG_MAX_WAITING": " 5000 ",
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
        RNG_MAX_WAITING=5000,
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


@pytest.mark.parametrize("value", ["-1", "many", "1.5", "+3", "9" * 19])
def test_max_waiting_refuses_what_is_not_a_whole_number(value: str) -> None:
    with pytest.raises(ValueError, match="RNG_MAX_WAITING="):
        Settings.from_env({"RNG_MAX_WAITING": value})


def test_full_queue_refuses_at_once_and_takes_again_after_a_turn() -> None:
    async def scenario() -> list[str]:
        gate = FifoGate(1, max_waiting=2)
        order: list[str] = []
        await gate.acquire()  # the one being served

        async def holder(name: str) -> None:
            async with gate:
                order.append(name)

        queued = [asyncio.create_task(holder(f"queued {n}")) for n in range(2)]
        await asyncio.sleep(0)
        assert (gate.active, gate.waiting, gate.full()) == (1, 2, True)
        with pytest.raises(QueueFull):
            await gate.acquire()
        assert (gate.active, gate.waiting) == (1, 2)  # the refused one left no trace
        gate.release()  # "queued 0" gets the slot: one place in the queue is free again
        await asyncio.sleep(0)
        assert not gate.full()
        late = asyncio.create_task(holder("late"))
        await asyncio.gather(*queued, late)
        assert (gate.active, gate.waiting) == (0, 0)
        return order

    assert asyncio.run(scenario()) == ["queued 0", "queued 1", "late"]


def test_no_waiting_allowed_still_serves_a_free_slot() -> None:
    async def scenario() -> None:
        gate = FifoGate(2, max_waiting=0)
        await gate.acquire()
        await gate.acquire()  # both slots free: nobody waits, nobody is refused
        with pytest.raises(QueueFull):
            await gate.acquire()
        gate.release()
        await gate.acquire()
        assert gate.active == 2

    asyncio.run(scenario())


def test_slot_owed_to_a_waiter_is_not_free_for_a_newcomer() -> None:
    """Between a release and the waiter running, the slot is the waiter's: with the queue at
    its cap a newcomer is refused rather than overtaking."""

    async def scenario() -> None:
        gate = FifoGate(1, max_waiting=1)
        await gate.acquire()
        waiter = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        gate.release()  # handed to `waiter`, which has not run yet
        with pytest.raises(QueueFull):
            await gate.acquire()
        await waiter
        assert (gate.active, gate.waiting) == (1, 0)

    asyncio.run(scenario())


def test_gate_rejects_a_negative_cap() -> None:
    with pytest.raises(ValueError, match="max_waiting"):
        FifoGate(1, max_waiting=-1)


@pytest.mark.parametrize(
    ("waiting", "delay", "capacity", "seconds"),
    [
        *[(100, 0.1, 1, 10), (0, 0.1, 1, 1), (5, 0.0, 1, 1), (3, 0.25, 2, 1), (9, 0.5, 2, 3)],
        *[(100, 5.0, 1, 60), (1, 0.01, 1, 1)],
    ],
)
def test_retry_after_is_the_time_to_drain_in_whole_seconds(
    waiting: int, delay: float, capacity: int, seconds: int
) -> None:
    assert retry_after(waiting, delay, capacity) == seconds
