"""webui's settings: every environment variable it reads, read and checked in one place.

HOST (0.0.0.0), PORT (80), REDIS_URL (redis://redis:6379/0), REDIS_PASSWORD_FILE (empty: no
password; else a file holding Redis's password, e.g. a secret in /run/secrets, read once at
start by redis_password below), REDIS_TIMEOUT (1.0 s, connect and reply), LOG_LEVEL (INFO),
ACCESS_LOG (0), METRICS (1: serve /metrics), PROMETHEUS_URL (unset: /rng-rates answers that
Prometheus is not configured), DOCKERCOINS_NODE (the node's name for the metrics' instance
label; the swarm sets it).

Rules, the same in all four services: a value is trimmed and an empty one means the default;
whole numbers are ASCII digits only (no sign, '_', point or exponent, at most 18 digits);
decimals are digits with an optional .fraction (no sign, exponent, inf or nan); flags are
1/0, true/false, yes/no or on/off; LOG_LEVEL is DEBUG, INFO, WARNING, ERROR or CRITICAL in
any case; other variables are ignored; a bad value is one line: NAME='value' must be ...
Each service folder is its own Docker build context, so each carries its own copy of these rules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, FiniteFloat, ValidationError, field_validator
from pydantic_core import PydanticUseDefault
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FLAGS = {"1": True, "true": True, "yes": True, "on": True}
FLAGS |= {"0": False, "false": False, "no": False, "off": False}
MAX_DIGITS = 18
_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


class SettingsError(ValueError):
    """Bad environment variables; the message is one line naming each with its value."""


def _whole(value: object) -> object:
    if not isinstance(value, str):
        return value
    if not _WHOLE.fullmatch(value):
        raise ValueError("must be a whole number (digits 0-9 only)")
    if len(value.lstrip("0")) > MAX_DIGITS:
        raise ValueError(f"must be a whole number of at most {MAX_DIGITS} digits")
    return int(value)


def _decimal(value: object) -> object:
    if not isinstance(value, str):
        return value
    if not _DECIMAL.fullmatch(value):
        raise ValueError("must be a decimal number such as 0, 2 or 0.25")
    return float(value)


def _flag(value: object) -> object:
    if not isinstance(value, str):
        return value
    if value.lower() not in FLAGS:
        raise ValueError("must be 1/0, true/false, yes/no or on/off")
    return FLAGS[value.lower()]


def _log_level(value: object) -> object:
    if isinstance(value, str) and value.upper() in LOG_LEVELS:
        return value.upper()
    raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")


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
    """http:// or https:// with a host (and a valid port if any)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _http_url(value: object) -> object:
    if isinstance(value, str) and is_http_url(value):
        return value
    raise ValueError("must look like http://HOST:PORT (or https://...)")


def _redis_url(value: object) -> object:
    if isinstance(value, str) and is_redis_url(value):
        return value
    raise ValueError("must look like redis://HOST:PORT/DB (or rediss://..., unix:///PATH)")


Whole = Annotated[int, BeforeValidator(_whole)]
Decimal = Annotated[FiniteFloat, BeforeValidator(_decimal)]
Flag = Annotated[bool, BeforeValidator(_flag)]
LogLevel = Annotated[str, BeforeValidator(_log_level)]
RedisUrl = Annotated[str, BeforeValidator(_redis_url)]
HttpUrl = Annotated[str, BeforeValidator(_http_url)]


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source reading `environ` instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k: v for k, v in self.environ.items() if not (self.env_ignore_empty and v == "")}


def _one_line(error: ValidationError, environ: Mapping[str, str]) -> str:
    found = []
    for detail in error.errors():
        name = str(detail["loc"][0]) if detail["loc"] else "?"
        reason = detail["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
        raw = environ.get(name, "").strip()
        shown = redacted_url(raw) if name.endswith("_URL") else raw
        found.append(f"{name}={shown!r} {reason}")
    return "; ".join(found)


class ServiceSettings(BaseSettings):
    """Each field's alias is its variable; Settings() alone is the defaults, from_env() reads."""

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True
    )

    @field_validator("*", mode="before")
    @classmethod
    def _trimmed(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise PydanticUseDefault
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the environment comes in through from_env only

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The settings from `environ` (default os.environ); SettingsError names what is bad."""
        environ = os.environ if environ is None else environ
        try:
            return cls(**_EnvironSource(cls, environ)())
        except ValidationError as error:
            raise SettingsError(_one_line(error, environ)) from None


class Settings(ServiceSettings):
    host: str = Field(default="0.0.0.0", alias="HOST")
    port: Whole = Field(default=80, alias="PORT", ge=1, le=65535)
    redis_url: RedisUrl = Field(default="redis://redis:6379/0", alias="REDIS_URL")
    redis_password_file: str | None = Field(default=None, alias="REDIS_PASSWORD_FILE")
    redis_timeout: Decimal = Field(default=1.0, alias="REDIS_TIMEOUT", ge=0.01)
    log_level: LogLevel = Field(default="INFO", alias="LOG_LEVEL")
    access_log: Flag = Field(default=False, alias="ACCESS_LOG")
    metrics: Flag = Field(default=True, alias="METRICS")
    prometheus_url: HttpUrl | None = Field(default=None, alias="PROMETHEUS_URL")
    node: str | None = Field(default=None, alias="DOCKERCOINS_NODE")


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
