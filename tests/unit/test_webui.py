"""webui's pure parts: reading the counter, hiding passwords, settings."""

from __future__ import annotations

import pytest
from webui import Settings, StatsError, parse_hashes, redacted_url


@pytest.mark.parametrize(("raw", "value"), [(None, 0), (b"0", 0), (b"1234", 1234), ("77", 77)])
def test_counter_values(raw: bytes | str | None, value: int) -> None:
    assert parse_hashes(raw) == value


@pytest.mark.parametrize("raw", [b"many", b"1.5", b"", "\xff"])
def test_counter_garbage(raw: bytes | str) -> None:
    with pytest.raises(StatsError, match="not an integer"):
        parse_hashes(raw)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("redis://:secret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://user:secret@redis:6379/0", "redis://user:***@redis:6379/0"),
    ],
)
def test_redacted_url(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_settings_defaults_and_env() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings().redis_url == "redis://redis:6379/0"
    custom = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:7000/1", "REDIS_TIMEOUT": "0.2"})
    assert (custom.redis_url, custom.redis_timeout) == ("redis://127.0.0.1:7000/1", 0.2)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_URL", "http://redis/"),
        ("REDIS_URL", "redis://"),
        ("REDIS_TIMEOUT", "0"),
        ("REDIS_TIMEOUT", "soon"),
        ("PORT", "http"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_bad_redis_url_error_hides_the_password() -> None:
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"REDIS_URL": "http://:hunter2@redis/"})
    assert "hunter2" not in str(caught.value)
