"""webui's pure parts: reading the counter, hiding passwords, settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from webui import StatsError, parse_hashes
from webui_settings import Settings, redacted_url

from tests.support.servers import SERVICES_DIR

NAMES = (
    *("HOST", "PORT", "REDIS_URL", "REDIS_TIMEOUT", "LOG_LEVEL", "ACCESS_LOG"),
    *("METRICS", "PROMETHEUS_URL", "DOCKERCOINS_NODE"),
)


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
        ("redis://:secret@[::1", "(an unreadable URL)"),
    ],
)
def test_redacted_url(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_settings_defaults_and_env() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings().redis_url == "redis://redis:6379/0"
    custom = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:7000/1", "REDIS_TIMEOUT": "0.2"})
    assert (custom.redis_url, custom.redis_timeout) == ("redis://127.0.0.1:7000/1", 0.2)


def test_metrics_on_and_prometheus_not_configured_by_default() -> None:
    defaults = Settings.from_env({})
    assert defaults.metrics is True
    assert defaults.prometheus_url is None
    assert defaults.node is None


@pytest.mark.parametrize(
    ("value", "on"),
    [("1", True), ("on", True), ("YES", True), ("true", True), ("0", False), (" off ", False)],
)
def test_metrics_flag(value: str, on: bool) -> None:
    assert Settings.from_env({"METRICS": value}).metrics is on


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


@pytest.mark.parametrize("empty", ["", " ", "\t"])
def test_empty_values_mean_the_default(empty: str) -> None:
    assert Settings.from_env(dict.fromkeys(NAMES, empty)) == Settings()


def test_unknown_variables_are_ignored() -> None:
    assert Settings.from_env({"redis_url": "x", "REDIS_URLS": "x", "WEBUI_PORT": "x"}) == (
        Settings()
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_URL", "http://redis/"),
        ("REDIS_URL", "redis://"),
        ("REDIS_URL", "redis:///0"),
        ("REDIS_URL", "redis://redis:99999/0"),
        ("REDIS_URL", "unix://"),
        ("REDIS_URL", "redis"),
        ("REDIS_TIMEOUT", "0"),
        ("REDIS_TIMEOUT", "0.001"),
        ("REDIS_TIMEOUT", "soon"),
        ("REDIS_TIMEOUT", "+1"),
        ("REDIS_TIMEOUT", "1_0"),
        ("REDIS_TIMEOUT", "inf"),
        ("PORT", "http"),
        ("PORT", "+80"),
        ("PORT", "8_080"),
        ("PORT", "65536"),
        ("LOG_LEVEL", "LOUD"),
        ("ACCESS_LOG", "maybe"),
        ("METRICS", "2"),
        ("METRICS", "enabled"),
        ("PROMETHEUS_URL", "prometheus:9090"),
        ("PROMETHEUS_URL", "ftp://prometheus/"),
        ("PROMETHEUS_URL", "http://"),
        ("PROMETHEUS_URL", "http://prometheus:99999"),
        ("PROMETHEUS_URL", "redis://prometheus:9090"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name) as caught:
        Settings.from_env({name: value})
    assert re.fullmatch(rf"{name}={re.escape(repr(value))} must [^\n]+", str(caught.value))


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


def test_the_service_refuses_a_bad_variable_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "webui.py"],
        cwd=SERVICES_DIR / "webui",
        env={**os.environ, "REDIS_URL": "redis://:hunter2@redis:http/0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        " ERROR webui: bad setting: REDIS_URL='redis://:***@redis:http/0' must look like "
        "redis://HOST:PORT/DB (or rediss://..., unix:///PATH)"
    )
