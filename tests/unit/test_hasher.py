"""hasher's pure parts: the up-front Content-Length check and the settings."""

from __future__ import annotations

import pytest
from hasher import BodyError, check_declared_length
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
    assert (Settings().delay, Settings().max_bytes) == (0.1, 1048576)
    custom = Settings.from_env({"HASHER_DELAY": "0.25", "HASHER_MAX_BYTES": "7"})
    assert (custom.delay, custom.max_bytes) == (0.25, 7)


def test_settings_every_variable_overridden() -> None:
    custom = Settings.from_env(
        {
            "HOST": "::1",
            "PORT": "8002",
            "HASHER_DELAY": " 0 ",
            "HASHER_MAX_BYTES": "1048577",
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
        LOG_LEVEL="WARNING",
        ACCESS_LOG=True,
        METRICS=False,
        DOCKERCOINS_NODE="node-1",
    )
