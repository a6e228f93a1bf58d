"""Hypothesis against every service's settings parser (services/*/*_settings.py).

For any environment (its variables' names with arbitrary strings, near-miss and unrelated
names, the odd characters a real environment can hold), Settings.from_env either returns
settings that are valid, or raises the module's SettingsError with one line naming the bad
variables: the one error each service's main() turns into exit 2. Any other exception fails.
EXAMPLES per service, derandomized so that a run in CI is the same run as on a laptop.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import math
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import hasher_settings
import pytest
import rng_settings
import webui_settings
import worker_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

EXAMPLES = 300
MODULES = (rng_settings, hasher_settings, webui_settings, worker_settings)
# A variable whose empty value is a value of its own, not the default.
EMPTY_IS_A_VALUE = {"WORKER_HEARTBEAT"}


def variables(module: ModuleType) -> tuple[str, ...]:
    """Every variable the module reads: the pydantic fields' aliases, or the names the
    worker's small parser asks for (read.kind("NAME", ...))."""
    if issubclass(module.Settings, BaseModel):
        fields = module.Settings.model_fields.values()
        return tuple(sorted(str(field.alias) for field in fields))
    source = inspect.getsource(module.Settings.from_env)
    return tuple(sorted(set(re.findall(r'read\.\w+\(\s*"([A-Z_]+)"', source))))


def test_every_parser_reads_variables() -> None:
    """The fuzzing below is only as good as these lists."""
    for module in MODULES:
        names = variables(module)
        assert {"LOG_LEVEL", "METRICS", "HOST"} <= set(names), (module.__name__, names)
    assert {"RNG_DELAY", "RNG_MAX_WAITING"} <= set(variables(rng_settings))
    assert {"HASHER_MAX_BYTES", "HASHER_MAX_BODIES"} <= set(variables(hasher_settings))
    assert {"REDIS_URL", "WORKER_DELAY"} <= set(variables(worker_settings))


# Strings a value may be: shaped like the good ones and their near misses, plus anything.
ODD_CHARACTERS = "\u0663\u00b2\uff11\u2009\u00a0\x00\x1b\n\t\r\udc80\udcff_-+.eE:/@[]%"
characters = st.characters(codec=None) | st.sampled_from(ODD_CHARACTERS)
numbers = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=True).map(str),
    st.from_regex(r"\s*0*[0-9]{0,25}(\.[0-9]{0,6})?\s*", fullmatch=True),
)
words = st.sampled_from(
    [
        *("1", "0", "true", "False", "YES", "no", "on", "OFF", "maybe", "debug", "Warning"),
        *("WARN", "critical", "nan", "inf", "-0", "0.0", "1e3", "65535", "65536", "9" * 19),
        *("", " "),
    ]
)
hosts = st.sampled_from(["redis", "127.0.0.1", "[::1]", "db.example", "", "a b", "[::1", "@"])
ports = st.one_of(st.integers(-1, 70000).map(str), st.sampled_from(["", "http", "8_0", "+1"]))
schemes = st.sampled_from(["redis", "rediss", "unix", "http", "https", "ftp", "", "REDIS"])
urls = st.builds(
    lambda scheme, user, host, port, path: f"{scheme}://{user}{host}:{port}/{path}",
    schemes,
    st.sampled_from(["", ":pw@", "user:pw@", "u@", ":@"]),
    hosts,
    ports,
    st.text(characters, max_size=8),
)
values = st.one_of(st.text(characters, max_size=40), numbers, words, urls)


def environments(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    """The module's variables, near misses of them and unrelated names, each with a value."""
    near = [name.lower() for name in names] + [name + "S" for name in names]
    keys = st.one_of(
        st.sampled_from(names), st.sampled_from(near), st.text(characters, min_size=1, max_size=8)
    )
    return st.dictionaries(keys, values, max_size=len(names) + 3)


def check_valid(module: ModuleType, parsed: Any, environ: Mapping[str, str]) -> None:
    """What any settings the parser accepts must be: numbers finite and non-negative, ports
    in range, text trimmed, and every variable that is unset or blank at its default."""
    defaults = module.Settings()
    if isinstance(parsed, BaseModel):
        items = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        aliases = {name: str(f.alias) for name, f in type(parsed).model_fields.items()}
        # Every constraint of the model holds: validating the values again changes nothing.
        assert type(parsed).model_validate(parsed.model_dump(by_alias=True)) == parsed
    else:
        items = {f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed)}
        aliases = {}
    for name, value in items.items():
        default = getattr(defaults, name)
        if default is not None:
            assert type(value) is type(default), (name, value)
        if isinstance(value, float):
            assert math.isfinite(value) and value >= 0, (name, value)
        elif isinstance(value, int) and not isinstance(value, bool):
            assert value >= 0, (name, value)
            if name.endswith("port"):
                assert 1 <= value <= 65535, (name, value)
        elif isinstance(value, str):
            assert value == value.strip(), (name, value)
        variable = aliases.get(name)
        unset = variable is not None and not environ.get(variable, "").strip()
        if unset and variable not in EMPTY_IS_A_VALUE:
            assert value == default, (name, value, default)


def check_error(module: ModuleType, error: ValueError, environ: Mapping[str, str]) -> None:
    """One line, each part `NAME=... ` for a variable that was given."""
    assert type(error) is module.SettingsError, repr(error)
    message = str(error)
    assert message, "an empty message"
    assert "\n" not in message and "\r" not in message, message
    for part in message.split("; "):
        name = part.split("=", 1)[0]
        assert name in environ, (name, message)


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_parser_returns_valid_settings_or_its_one_clean_error(module: ModuleType) -> None:
    outcomes: collections.Counter[str] = collections.Counter()

    @given(environ=environments(variables(module)))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    def parse(environ: dict[str, str]) -> None:
        try:
            parsed = module.Settings.from_env(environ)
        except module.SettingsError as error:
            outcomes["refused"] += 1
            check_error(module, error, environ)
        else:
            outcomes["accepted"] += 1
            check_valid(module, parsed, environ)

    parse()
    print(f"{module.__name__}: {dict(outcomes)}")
    assert sum(outcomes.values()) >= EXAMPLES
    # Not vacuous: both ways out were taken many times.
    assert min(outcomes["refused"], outcomes["accepted"]) >= EXAMPLES // 10, outcomes
