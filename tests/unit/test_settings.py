"""The settings rules the four services share, checked once for each: the shared defaults,
empty values and unknown variables, every refused value as one line `NAME='value' must ...`,
the same answers for variables of the same kind, and the real process refusing a bad one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from types import ModuleType

import hasher_settings
import pytest
import rng_settings
import webui_settings
import worker_settings

from tests.support.servers import SERVICES_DIR


@dataclass(frozen=True)
class Service:
    """One service's settings module and what the shared checks need to know of it."""

    name: str
    settings: ModuleType
    serves_http: bool  # reads PORT and ACCESS_LOG (the worker serves no HTTP of its own)
    node_default: str | None
    variables: tuple[str, ...]  # every variable where an empty value means the default
    unknown: tuple[str, ...]  # near misses of its variables' names, all ignored
    refused: tuple[tuple[str, tuple[str, ...]], ...]  # its own variables' refused values
    two_bad: tuple[tuple[tuple[str, str], ...], str]  # two bad variables and the one line
    process_env: tuple[str, str]  # the bad variable the real process is started with
    process_line: str  # how the process's one line of output ends

    def __str__(self) -> str:
        return self.name


SHARED_TWO_BAD = (
    (("PORT", "0"), ("ACCESS_LOG", "maybe")),
    "PORT='0' must be greater than or equal to 1; "
    "ACCESS_LOG='maybe' must be 1/0, true/false, yes/no or on/off",
)
SERVER_NAMES = ("HOST", "PORT", "LOG_LEVEL", "ACCESS_LOG", "METRICS", "DOCKERCOINS_NODE")

RNG = Service(
    name="rng",
    settings=rng_settings,
    serves_http=True,
    node_default=None,
    variables=(*SERVER_NAMES, "RNG_DELAY", "RNG_CONCURRENCY", "RNG_MAX_BYTES", "RNG_MAX_WAITING"),
    unknown=("rng_delay", "RNG_DELAYS", "DELAY"),
    refused=(
        ("RNG_DELAY", ("-1", "fast", "nan", "inf", "+0.5", "1e-3", "1_000", "9" * 400)),
        ("RNG_CONCURRENCY", ("0", "two", "+5", "1_000", "2.0")),
        ("RNG_MAX_BYTES", ("-5", "9" * 19)),
        ("RNG_MAX_WAITING", ("-1", "lots", "1.5", "9" * 19)),
    ),
    two_bad=SHARED_TWO_BAD,
    process_env=("RNG_CONCURRENCY", "+5"),
    process_line=" ERROR rng: bad setting: RNG_CONCURRENCY='+5' must be a whole number"
    " (digits 0-9 only)",
)
HASHER = Service(
    name="hasher",
    settings=hasher_settings,
    serves_http=True,
    node_default=None,
    variables=(*SERVER_NAMES, "HASHER_DELAY", "HASHER_MAX_BYTES", "HASHER_MAX_BODIES"),
    unknown=("hasher_delay", "HASHER_DELAYS", "DELAY"),
    refused=(
        ("HASHER_DELAY", ("-0.1", "inf", "nan", "slow", "+5", "1_000", "1e3")),
        ("HASHER_MAX_BYTES", ("x", "-1", "+5", "1_000", "1e6", "9" * 19)),
        ("HASHER_MAX_BODIES", ("0", "-1", "2.5", "many")),
    ),
    two_bad=SHARED_TWO_BAD,
    process_env=("HASHER_DELAY", "-1"),
    process_line=" ERROR hasher: bad setting: HASHER_DELAY='-1' must be a decimal number"
    " such as 0, 2 or 0.25",
)
WEBUI = Service(
    name="webui",
    settings=webui_settings,
    serves_http=True,
    node_default=None,
    variables=(*SERVER_NAMES, "REDIS_URL", "REDIS_TIMEOUT", "PROMETHEUS_URL"),
    unknown=("redis_url", "REDIS_URLS", "WEBUI_PORT"),
    refused=(
        ("REDIS_URL", ("http://redis/", "redis://", "redis:///0", "redis://redis:99999/0")),
        ("REDIS_URL", ("unix://", "redis")),
        ("REDIS_TIMEOUT", ("0", "0.001", "soon", "+1", "1_0", "inf")),
        ("PROMETHEUS_URL", ("prometheus:9090", "ftp://prometheus/", "http://")),
        ("PROMETHEUS_URL", ("http://prometheus:99999", "redis://prometheus:9090")),
    ),
    two_bad=SHARED_TWO_BAD,
    process_env=("REDIS_URL", "redis://:hunter2@redis:http/0"),
    process_line=" ERROR webui: bad setting: REDIS_URL='redis://:***@redis:http/0' must look"
    " like redis://HOST:PORT/DB (or rediss://..., unix:///PATH)",
)
WORKER = Service(
    name="worker",
    settings=worker_settings,
    serves_http=False,
    node_default="",
    variables=(
        *("RNG_URL", "HASHER_URL", "REDIS_URL", "WORKER_DELAY", "WORKER_CONCURRENCY"),
        *("WORKER_FLUSH_INTERVAL", "WORKER_BACKOFF_MAX", "WORKER_HTTP_TIMEOUT", "WORKER_DNS_TTL"),
        *("WORKER_CONN_MAX_AGE", "WORKER_SHUTDOWN_TIMEOUT", "WORKER_STATS", "WORKER_STATS_WARMUP"),
        *("LOG_LEVEL", "METRICS", "WORKER_METRICS_PORT", "HOST", "DOCKERCOINS_NODE"),
        "WORKER_MAX_OWED_HASHES",
    ),
    unknown=("worker_delay", "WORKER_DELAYS", "PORT"),
    refused=(
        ("WORKER_DELAY", ("fast", "-1", "nan", "+0.5", "1_000", "1e-3", "inf")),
        ("WORKER_CONCURRENCY", ("0", "2.5", "+5", "1_000", "9" * 19)),
        ("RNG_URL", ("ftp://rng/32", "http://rng:port/32")),
        ("HASHER_URL", ("http:///",)),
        ("REDIS_URL", ("http://redis", "redis://")),
        ("WORKER_FLUSH_INTERVAL", ("0",)),
        ("WORKER_BACKOFF_MAX", ("0.01",)),
        ("WORKER_HTTP_TIMEOUT", ("0.001",)),
        ("WORKER_DNS_TTL", ("-1",)),
        ("WORKER_CONN_MAX_AGE", ("soon",)),
        ("WORKER_SHUTDOWN_TIMEOUT", ("nan",)),
        ("WORKER_STATS_WARMUP", ("-0.5",)),
        ("WORKER_STATS", ("maybe",)),
        ("WORKER_METRICS_PORT", ("0", "65536", "http")),
        ("WORKER_MAX_OWED_HASHES", ("0", "-1", "1e5", "100_000", "many", "9" * 19)),
    ),
    two_bad=(
        (("WORKER_CONCURRENCY", "0"), ("WORKER_STATS", "maybe")),
        "WORKER_CONCURRENCY='0' must be greater than or equal to 1; "
        "WORKER_STATS='maybe' must be 1/0, true/false, yes/no or on/off",
    ),
    process_env=("WORKER_CONCURRENCY", "1_000"),
    process_line=" ERROR worker bad setting: WORKER_CONCURRENCY='1_000' must be a whole number "
    "(digits 0-9 only)",
)
SERVICES = (RNG, HASHER, WEBUI, WORKER)

# Refused values of the variables several services read (PORT and ACCESS_LOG: not the worker).
SHARED_REFUSED = (
    ("PORT", ("0", "65536", "http", "80.0", "+80", "8_080")),
    ("LOG_LEVEL", ("LOUD", "WARN")),
    ("ACCESS_LOG", ("maybe", "t", "y")),
    ("METRICS", ("maybe", "2", "enabled")),
)


def _reads(service: Service, name: str) -> bool:
    return name in service.variables


REFUSED = [
    pytest.param(service, name, value, id=f"{service}-{name}={value[:20]}")
    for service in SERVICES
    for name, values in (*SHARED_REFUSED, *service.refused)
    if _reads(service, name)
    for value in values
]


@pytest.mark.parametrize("service", SERVICES, ids=str)
def test_shared_defaults(service: Service) -> None:
    settings = service.settings.Settings.from_env({})
    assert settings == service.settings.Settings()
    assert (settings.host, settings.log_level) == ("0.0.0.0", "INFO")
    assert settings.metrics is True
    assert settings.node == service.node_default
    if service.serves_http:
        assert (settings.port, settings.access_log) == (80, False)


@pytest.mark.parametrize("service", SERVICES, ids=str)
@pytest.mark.parametrize("empty", ["", " ", "\t"])
def test_empty_values_mean_the_default(service: Service, empty: str) -> None:
    Settings = service.settings.Settings
    assert Settings.from_env(dict.fromkeys(service.variables, empty)) == Settings()


@pytest.mark.parametrize("service", SERVICES, ids=str)
def test_unknown_variables_are_ignored(service: Service) -> None:
    Settings = service.settings.Settings
    assert Settings.from_env(dict.fromkeys(service.unknown, "x")) == Settings()


@pytest.mark.parametrize("service", SERVICES, ids=str)
@pytest.mark.parametrize(
    ("value", "on"),
    [("1", True), ("on", True), ("YES", True), ("true", True), ("0", False), (" off ", False)],
)
def test_metrics_flag(service: Service, value: str, on: bool) -> None:
    assert service.settings.Settings.from_env({"METRICS": value}).metrics is on


@pytest.mark.parametrize(("service", "name", "value"), REFUSED)
def test_bad_settings_name_the_variable(service: Service, name: str, value: str) -> None:
    with pytest.raises(service.settings.SettingsError, match=name) as caught:
        service.settings.Settings.from_env({name: value})
    reason = "must look like" if name.endswith("_URL") else "must be"
    assert re.fullmatch(rf"{name}={re.escape(repr(value))} {reason} [^\n]+", str(caught.value))


@pytest.mark.parametrize("service", SERVICES, ids=str)
def test_every_bad_variable_is_named_on_one_line(service: Service) -> None:
    environ, line = service.two_bad
    with pytest.raises(ValueError) as caught:
        service.settings.Settings.from_env(dict(environ))
    assert str(caught.value) == line


@pytest.mark.parametrize("service", SERVICES, ids=str)
def test_the_service_refuses_a_bad_variable_in_one_line(service: Service) -> None:
    name, value = service.process_env
    done = subprocess.run(
        [sys.executable, f"{service.name}.py"],
        cwd=SERVICES_DIR / service.name,
        env={**os.environ, name: value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith(service.process_line)


# --- the same answers for variables of the same kind ----------------------------------------

# Variables of one kind and bound in each service: (settings module, variable, attribute).
SAME_KIND = {
    "whole >= 1": [
        (rng_settings, "RNG_CONCURRENCY", "concurrency"),
        (hasher_settings, "HASHER_MAX_BODIES", "max_bodies"),
        (worker_settings, "WORKER_CONCURRENCY", "concurrency"),
        (worker_settings, "WORKER_MAX_OWED_HASHES", "max_owed_hashes"),
    ],
    "whole >= 0": [
        (rng_settings, "RNG_MAX_BYTES", "max_bytes"),
        (rng_settings, "RNG_MAX_WAITING", "max_waiting"),
        (hasher_settings, "HASHER_MAX_BYTES", "max_bytes"),
    ],
    "decimal >= 0": [
        (rng_settings, "RNG_DELAY", "delay"),
        (hasher_settings, "HASHER_DELAY", "delay"),
        (worker_settings, "WORKER_DELAY", "delay"),
        (worker_settings, "WORKER_DNS_TTL", "dns_ttl"),
    ],
    "decimal >= 0.01": [
        (webui_settings, "REDIS_TIMEOUT", "redis_timeout"),
        (worker_settings, "WORKER_HTTP_TIMEOUT", "http_timeout"),
        (worker_settings, "WORKER_FLUSH_INTERVAL", "flush_interval"),
    ],
    "flag": [
        (rng_settings, "ACCESS_LOG", "access_log"),
        (hasher_settings, "ACCESS_LOG", "access_log"),
        (webui_settings, "ACCESS_LOG", "access_log"),
        (worker_settings, "WORKER_STATS", "stats"),
        (rng_settings, "METRICS", "metrics"),
        (hasher_settings, "METRICS", "metrics"),
        (worker_settings, "METRICS", "metrics"),
    ],
    "port": [
        (rng_settings, "PORT", "port"),
        (hasher_settings, "PORT", "port"),
        (worker_settings, "WORKER_METRICS_PORT", "metrics_port"),
    ],
    "log level": [
        (module, "LOG_LEVEL", "log_level")
        for module in (rng_settings, hasher_settings, webui_settings, worker_settings)
    ],
    "redis url": [
        (webui_settings, "REDIS_URL", "redis_url"),
        (worker_settings, "REDIS_URL", "redis_url"),
    ],
}
INPUTS = [
    *("", " ", "0", "1", "2", "007", " 3 ", "0.5", "0.01", "0.001", "2.0", "-1", "+5", "-0"),
    *("1_000", "1e3", ".5", "5.", "0x10", "inf", "nan", "five", "\u0663", "9" * 18, "9" * 19),
    *("9" * 400, "true", "Yes", "ON", "off", "maybe", "t", "y", "debug", "Warning", "WARN"),
    *("80", "65535", "65536", "100000"),
    *("redis://db:6379/1", "rediss://:pw@db", "unix:///run/r.sock", "redis://", "redis:///0"),
    *("redis://db:port/0", "http://db/", "redis://:pw@[::1"),
]


def outcome(module: ModuleType, name: str, attribute: str, raw: str) -> str:
    """What a service makes of NAME=raw: its value, or its error with the name left out."""
    try:
        settings = module.Settings.from_env({name: raw})
    except ValueError as error:
        return "refused: " + str(error).removeprefix(name)
    if not raw.strip():
        return "default" if settings == module.Settings.from_env({}) else "not the default"
    return f"{getattr(settings, attribute)!r}"


@pytest.mark.parametrize("kind", SAME_KIND)
def test_every_service_accepts_and_refuses_the_same_values(kind: str) -> None:
    for raw in INPUTS:
        seen = {f"{m.__name__} {n}": outcome(m, n, a, raw) for m, n, a in SAME_KIND[kind]}
        assert len(set(seen.values())) == 1, (kind, raw, seen)
