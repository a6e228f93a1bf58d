"""The worker's settings: every environment variable it reads, read and checked in one place.

Variables and defaults: see worker.py's docstring.

Rules, the same in all four services: a value is trimmed and an empty one means the default;
whole numbers are ASCII digits only (no sign, '_', point or exponent, at most 18 digits);
decimals are digits with an optional .fraction (no sign, exponent, inf or nan); flags are
1/0, true/false, yes/no or on/off; LOG_LEVEL is DEBUG, INFO, WARNING, ERROR or CRITICAL in
any case; other variables are ignored; a bad value is one line: NAME='value' must be ...
The one exception is WORKER_HEARTBEAT, where empty keeps its meaning: no heartbeat file.
Each service folder is its own Docker build context, so each carries its own copy of these rules.
Not pydantic-settings like the others: it and pydantic add 8.0 MB installed, taking this image
from base + 28.3 MB to about base + 36 MB, over its base + 30 MB budget; so a small parser
here gives the same answers (tests/unit/test_settings.py checks them against the other three).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from spread_http import Target

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FLAGS = {"1": True, "true": True, "yes": True, "on": True}
FLAGS |= {"0": False, "false": False, "no": False, "off": False}
MAX_DIGITS = 18
BACKOFF_START = 0.05
_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


class SettingsError(ValueError):
    """Bad environment variables; the message is one line naming each with its value."""


def redacted_url(url: str) -> str:
    """The URL without its password, fit for a log line."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(an unreadable URL)"
    if password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{netloc}").geturl()


def is_redis_url(url: str) -> bool:
    """redis:// or rediss:// with a host (and a valid port if any), or unix:// with a path."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a bad port
    except ValueError:
        return False
    if parts.scheme == "unix":
        return bool(parts.path)
    return parts.scheme in ("redis", "rediss") and bool(parts.hostname)


def is_http_url(url: str) -> bool:
    try:
        Target.parse(url)
    except ValueError:
        return False
    return True


class _Reader:
    """Reads variables from `environ` by the rules above, noting every bad one."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def _raw(self, name: str) -> str:
        return self.environ.get(name, "").strip()

    def _bad(self, name: str, reason: str) -> None:
        raw = self._raw(name)
        shown = redacted_url(raw) if name.endswith("_URL") else raw
        self.problems.append(f"{name}={shown!r} {reason}")

    def whole(self, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
        raw = self._raw(name)
        if not raw:
            return default
        if not _WHOLE.fullmatch(raw):
            self._bad(name, "must be a whole number (digits 0-9 only)")
        elif len(raw.lstrip("0")) > MAX_DIGITS:
            self._bad(name, f"must be a whole number of at most {MAX_DIGITS} digits")
        elif int(raw) < minimum:
            self._bad(name, f"must be greater than or equal to {minimum}")
        elif maximum is not None and int(raw) > maximum:
            self._bad(name, f"must be less than or equal to {maximum}")
        else:
            return int(raw)
        return default

    def decimal(self, name: str, default: float, minimum: float) -> float:
        raw = self._raw(name)
        if not raw:
            return default
        if not _DECIMAL.fullmatch(raw):
            self._bad(name, "must be a decimal number such as 0, 2 or 0.25")
        elif not math.isfinite(float(raw)):
            self._bad(name, "must be a finite number")
        elif float(raw) < minimum:
            self._bad(name, f"must be greater than or equal to {minimum}")
        else:
            return float(raw)
        return default

    def flag(self, name: str, default: bool) -> bool:
        raw = self._raw(name).lower()
        if not raw:
            return default
        if raw not in FLAGS:
            self._bad(name, "must be 1/0, true/false, yes/no or on/off")
            return default
        return FLAGS[raw]

    def log_level(self, name: str, default: str) -> str:
        raw = self._raw(name).upper()
        if not raw:
            return default
        if raw not in LOG_LEVELS:
            self._bad(name, f"must be one of {', '.join(LOG_LEVELS)}")
            return default
        return raw

    def url(self, name: str, default: str, check: tuple[str, str]) -> str:
        """`check` is (kind, example): "http" for rng and hasher, "redis" for Redis."""
        raw = self._raw(name)
        if not raw:
            return default
        kind, example = check
        if not (is_http_url(raw) if kind == "http" else is_redis_url(raw)):
            self._bad(name, f"must look like {example}")
            return default
        return raw

    def string(self, name: str, default: str) -> str:
        """A string; empty means the default, like every other variable."""
        return self._raw(name) or default

    def text(self, name: str, default: str) -> str:
        """A string where empty is a value of its own (not the default)."""
        return self.environ.get(name, default).strip()


HTTP_URL = ("http", "http://HOST[:PORT]/PATH")
REDIS_URL = ("redis", "redis://HOST:PORT/DB (or rediss://..., unix:///PATH)")


@dataclass(frozen=True)
class Settings:
    """Everything the worker reads from its environment (see worker.py's docstring)."""

    rng_url: str = "http://rng/32"
    hasher_url: str = "http://hasher/"
    redis_url: str = "redis://redis:6379/0"
    delay: float = 0.1
    concurrency: int = 1
    flush_interval: float = 1.0
    backoff_max: float = 2.0
    http_timeout: float = 10.0
    dns_ttl: float = 1.0
    conn_max_age: float = 1.0
    shutdown_timeout: float = 0.8
    heartbeat: str = "/tmp/worker-heartbeat"
    stats: bool = False
    stats_warmup: float = 0.0
    log_level: str = "INFO"
    metrics: bool = True
    metrics_port: int = 9100
    host: str = "0.0.0.0"
    node: str = ""
    max_owed_hashes: int = 100_000
    redis_password_file: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings from `environ` (default os.environ); SettingsError names what is bad."""
        read = _Reader(os.environ if environ is None else environ)
        settings = cls(
            rng_url=read.url("RNG_URL", cls.rng_url, HTTP_URL),
            hasher_url=read.url("HASHER_URL", cls.hasher_url, HTTP_URL),
            redis_url=read.url("REDIS_URL", cls.redis_url, REDIS_URL),
            delay=read.decimal("WORKER_DELAY", cls.delay, 0),
            concurrency=read.whole("WORKER_CONCURRENCY", cls.concurrency, 1),
            flush_interval=read.decimal("WORKER_FLUSH_INTERVAL", cls.flush_interval, 0.01),
            backoff_max=read.decimal("WORKER_BACKOFF_MAX", cls.backoff_max, BACKOFF_START),
            http_timeout=read.decimal("WORKER_HTTP_TIMEOUT", cls.http_timeout, 0.01),
            dns_ttl=read.decimal("WORKER_DNS_TTL", cls.dns_ttl, 0),
            conn_max_age=read.decimal("WORKER_CONN_MAX_AGE", cls.conn_max_age, 0),
            shutdown_timeout=read.decimal("WORKER_SHUTDOWN_TIMEOUT", cls.shutdown_timeout, 0),
            heartbeat=read.text("WORKER_HEARTBEAT", cls.heartbeat),
            stats=read.flag("WORKER_STATS", cls.stats),
            stats_warmup=read.decimal("WORKER_STATS_WARMUP", cls.stats_warmup, 0),
            log_level=read.log_level("LOG_LEVEL", cls.log_level),
            metrics=read.flag("METRICS", cls.metrics),
            metrics_port=read.whole("WORKER_METRICS_PORT", cls.metrics_port, 1, 65535),
            host=read.string("HOST", cls.host),
            node=read.string("DOCKERCOINS_NODE", cls.node),
            max_owed_hashes=read.whole("WORKER_MAX_OWED_HASHES", cls.max_owed_hashes, 1),
            redis_password_file=read.string("REDIS_PASSWORD_FILE", cls.redis_password_file),
        )
        if read.problems:
            raise SettingsError("; ".join(read.problems))
        return settings


def redis_password(settings: Settings) -> str | None:
    """The password in the file REDIS_PASSWORD_FILE names (one trailing newline dropped, as
    `echo` writes it), read once at start; None when the variable is empty. SettingsError,
    one line naming the variable and never the password, when the file cannot be read,
    holds no password, or REDIS_URL carries a password too."""
    path = settings.redis_password_file
    if not path:
        return None
    where = f"REDIS_PASSWORD_FILE={path!r}"
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise SettingsError(f"{where} cannot be read: {error.strerror or error}") from None
    try:
        password = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{where} must hold UTF-8 text") from None
    password = password.removesuffix("\n")
    if not password:
        raise SettingsError(f"{where} holds no password (an empty file)")
    if urlsplit(settings.redis_url).password is not None:
        raise SettingsError(f"{where} and a password in REDIS_URL: give only one")
    return password
