"""rng's pure parts: size parsing, settings and the FIFO gate."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import pytest
from rng import FifoGate, SizeError, parse_size
from rng_settings import Settings

from tests.support.servers import SERVICES_DIR

NAMES = ("HOST", "PORT", "RNG_DELAY", "RNG_CONCURRENCY", "RNG_MAX_BYTES", "LOG_LEVEL", "ACCESS_LOG")
METRICS_NAMES = ("METRICS", "DOCKERCOINS_NODE")


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
    assert Settings().metrics is True
    assert Settings().node is None
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


@pytest.mark.parametrize("empty", ["", " ", "\t"])
def test_empty_values_mean_the_default(empty: str) -> None:
    assert Settings.from_env(dict.fromkeys((*NAMES, *METRICS_NAMES), empty)) == Settings()


def test_unknown_variables_are_ignored() -> None:
    assert Settings.from_env({"rng_delay": "x", "RNG_DELAYS": "x", "DELAY": "x"}) == Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RNG_DELAY", "-1"),
        ("RNG_DELAY", "fast"),
        ("RNG_DELAY", "nan"),
        ("RNG_DELAY", "inf"),
        ("RNG_DELAY", "+0.5"),
        ("RNG_DELAY", "1e-3"),
        ("RNG_DELAY", "1_000"),
        ("RNG_DELAY", "9" * 400),
        ("RNG_CONCURRENCY", "0"),
        ("RNG_CONCURRENCY", "two"),
        ("RNG_CONCURRENCY", "+5"),
        ("RNG_CONCURRENCY", "1_000"),
        ("RNG_CONCURRENCY", "2.0"),
        ("RNG_MAX_BYTES", "-5"),
        ("RNG_MAX_BYTES", "9" * 19),
        ("PORT", "0"),
        ("PORT", "65536"),
        ("PORT", "http"),
        ("LOG_LEVEL", "LOUD"),
        ("LOG_LEVEL", "WARN"),
        ("ACCESS_LOG", "maybe"),
        ("ACCESS_LOG", "t"),
        ("METRICS", "maybe"),
        ("METRICS", "2"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name) as caught:
        Settings.from_env({name: value})
    assert re.fullmatch(rf"{name}={re.escape(repr(value))} must be [^\n]+", str(caught.value))


def test_every_bad_variable_is_named_on_one_line() -> None:
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"PORT": "0", "ACCESS_LOG": "maybe"})
    assert str(caught.value) == (
        "PORT='0' must be greater than or equal to 1; "
        "ACCESS_LOG='maybe' must be 1/0, true/false, yes/no or on/off"
    )


def test_the_service_refuses_a_bad_variable_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "rng.py"],
        cwd=SERVICES_DIR / "rng",
        env={**os.environ, "RNG_CONCURRENCY": "+5"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        " ERROR rng: bad setting: RNG_CONCURRENCY='+5' must be a whole number (digits 0-9 only)"
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
