"""hasher's pure parts: the up-front Content-Length check and the settings."""

from __future__ import annotations

import pytest
from hasher import BodyError, Settings, check_declared_length


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
    assert Settings.from_env({}) == Settings()
    assert (Settings().delay, Settings().max_bytes) == (0.1, 1048576)
    custom = Settings.from_env({"HASHER_DELAY": "0.25", "HASHER_MAX_BYTES": "7"})
    assert (custom.delay, custom.max_bytes) == (0.25, 7)


@pytest.mark.parametrize(
    ("name", "value"),
    [("HASHER_DELAY", "-0.1"), ("HASHER_DELAY", "inf"), ("HASHER_MAX_BYTES", "x")],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})
