"""webui's pure parts: reading the counter and the ledger, hiding passwords, settings."""

from __future__ import annotations

import pytest
from webui import StatsError, parse_hashes, parse_ledger
from webui_settings import Settings, redacted_url


@pytest.mark.parametrize(("raw", "value"), [(None, 0), (b"0", 0), (b"1234", 1234), ("77", 77)])
def test_counter_values(raw: bytes | str | None, value: int) -> None:
    assert parse_hashes(raw) == value


@pytest.mark.parametrize("raw", [b"many", b"1.5", b"", "\xff", b" 7", b"1_000", "\u0663", b"+5"])
def test_counter_garbage(raw: bytes | str) -> None:
    with pytest.raises(StatsError, match="not an integer"):
        parse_hashes(raw)


def test_ledger_joins_the_two_hashes_by_worker() -> None:
    seqs = {b"w-1": b"12", b"w-2": b"3", b"only-seq": b"1"}
    counts = {b"w-1": b"4000", b"w-2": b"75", b"only-hashes": b"9"}
    assert parse_ledger(b"4084", seqs, counts) == {
        "hashes": 4084,
        "workers": {
            "only-hashes": {"seq": 0, "hashes": 9},
            "only-seq": {"seq": 1, "hashes": 0},
            "w-1": {"seq": 12, "hashes": 4000},
            "w-2": {"seq": 3, "hashes": 75},
        },
    }


def test_empty_ledger() -> None:
    assert parse_ledger(None, {}, {}) == {"hashes": 0, "workers": {}}


def test_ledger_worker_ids_that_are_not_utf8_stay_apart() -> None:
    answer = parse_ledger(b"2", {b"\xff": b"1", b"\xfe": b"1"}, {b"\xff": b"1", b"\xfe": b"1"})
    assert answer["workers"] == {
        "\\xfe": {"seq": 1, "hashes": 1},
        "\\xff": {"seq": 1, "hashes": 1},
    }


@pytest.mark.parametrize(
    ("seqs", "counts", "named"),
    [
        ({b"w": b"x"}, {}, "dockercoins:ledger:seq field 'w'"),
        ({}, {b"w": b"1.0"}, "dockercoins:ledger:hashes field 'w'"),
    ],
)
def test_ledger_garbage_names_the_key_and_field(
    seqs: dict[bytes, bytes], counts: dict[bytes, bytes], named: str
) -> None:
    with pytest.raises(StatsError, match="not an integer") as caught:
        parse_ledger(b"1", seqs, counts)
    assert str(caught.value).startswith(named)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("redis://:secret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://user:secret@redis:6379/0", "redis://user:***@redis:6379/0"),
        ("redis://:secret@[::1", "(an unreadable URL)"),
    ],
)
def test_redacted_url(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_settings_defaults_and_env() -> None:
    assert Settings().redis_url == "redis://redis:6379/0"
    custom = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:7000/1", "REDIS_TIMEOUT": "0.2"})
    assert (custom.redis_url, custom.redis_timeout) == ("redis://127.0.0.1:7000/1", 0.2)


def test_prometheus_not_configured_by_default() -> None:
    assert Settings.from_env({}).prometheus_url is None


@pytest.mark.parametrize(
    "url",
    [
        "http://prometheus:9090",
        "http://127.0.0.1:9090/",
        "https://metrics.example:443/prometheus",
        "http://[::1]:9090",
    ],
)
def test_prometheus_url(url: str) -> None:
    assert Settings.from_env({"PROMETHEUS_URL": f" {url} "}).prometheus_url == url


def test_settings_every_variable_overridden() -> None:
    custom = Settings.from_env(
        {
            "HOST": "127.0.0.1",
            "PORT": "8080",
            "REDIS_URL": " unix:///run/redis.sock ",
            "REDIS_TIMEOUT": "0.01",
            "LOG_LEVEL": "error",
            "ACCESS_LOG": "TRUE",
            "METRICS": "no",
            "PROMETHEUS_URL": "http://prometheus:9090",
            "DOCKERCOINS_NODE": " node2 ",
        }
    )
    assert custom == Settings(
        HOST="127.0.0.1",
        PORT=8080,
        REDIS_URL="unix:///run/redis.sock",
        REDIS_TIMEOUT=0.01,
        LOG_LEVEL="ERROR",
        ACCESS_LOG=True,
        METRICS=False,
        PROMETHEUS_URL="http://prometheus:9090",
        DOCKERCOINS_NODE="node2",
    )
    assert Settings.from_env({"REDIS_URL": "rediss://:pw@db:6380"}).redis_url == (
        "rediss://:pw@db:6380"
    )


def test_bad_redis_url_error_hides_the_password() -> None:
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"REDIS_URL": "http://:hunter2@redis/"})
    assert "hunter2" not in str(caught.value)
    assert str(caught.value).startswith("REDIS_URL='http://:***@redis/' must look like redis://")


def test_bad_prometheus_url_error_hides_the_password() -> None:
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"PROMETHEUS_URL": "ftp://admin:hunter2@prometheus/"})
    assert "hunter2" not in str(caught.value)
    assert str(caught.value) == (
        "PROMETHEUS_URL='ftp://admin:***@prometheus/' must look like http://HOST:PORT "
        "(or https://...)"
    )
