"""hasher's pure parts: the up-front Content-Length check, the count of requests held and
the settings."""

from __future__ import annotations

import pytest
from hasher import BodyError, Holds, check_declared_length
from hasher_settings import Settings


@pytest.mark.parametrize("header", [None, "0", "100", "0100"])
def test_acceptable_lengths(header: str | None) -> None:
    check_declared_length(header, 100)


@pytest.mark.parametrize(
    ("header", "status"),
    [("101", 413), ("9" * 5000, 413), ("abc", 400), ("-1", 400), ("1e3", 400), ("", 400)],
)
def test_refused_lengths(header: str, status: int) -> None:
    with pytest.raises(BodyError) as caught:
        check_declared_length(header, 100)
    assert caught.value.status == status


def test_settings_defaults_and_env() -> None:
    assert (Settings().delay, Settings().max_bytes, Settings().max_bodies) == (0.1, 1048576, 256)
    custom = Settings.from_env(
        {"HASHER_DELAY": "0.25", "HASHER_MAX_BYTES": "7", "HASHER_MAX_BODIES": "3"}
    )
    assert (custom.delay, custom.max_bytes, custom.max_bodies) == (0.25, 7, 3)


def test_settings_every_variable_overridden() -> None:
    custom = Settings.from_env(
        {
            "HOST": "::1",
            "PORT": "8002",
            "HASHER_DELAY": " 0 ",
            "HASHER_MAX_BYTES": "1048577",
            "HASHER_MAX_BODIES": "0100",
            "LOG_LEVEL": "Warning",
            "ACCESS_LOG": "on",
            "METRICS": "No",
            "DOCKERCOINS_NODE": "node-1",
        }
    )
    assert custom == Settings(
        HOST="::1",
        PORT=8002,
        HASHER_DELAY=0.0,
        HASHER_MAX_BYTES=1048577,
        HASHER_MAX_BODIES=100,
        LOG_LEVEL="WARNING",
        ACCESS_LOG=True,
        METRICS=False,
        DOCKERCOINS_NODE="node-1",
    )


@pytest.mark.parametrize("value", ["0", "-1", "lots", "2.5", "9" * 19])
def test_max_bodies_must_be_a_whole_number_of_at_least_one(value: str) -> None:
    with pytest.raises(ValueError, match="HASHER_MAX_BODIES="):
        Settings.from_env({"HASHER_MAX_BODIES": value})


def test_holds_refuse_past_the_limit_and_take_again_when_one_is_given_back() -> None:
    holds = Holds(2)
    assert holds.take()
    assert holds.take()
    assert not holds.take()
    assert holds.held == 2  # a refusal holds nothing
    holds.give_back()
    assert holds.take()
    holds.give_back()
    holds.give_back()
    assert holds.held == 0
    with pytest.raises(RuntimeError):
        holds.give_back()


def test_holds_need_room_for_one() -> None:
    with pytest.raises(ValueError):
        Holds(0)
