"""hasher's pure parts: the up-front Content-Length check and the settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from hasher import BodyError, check_declared_length
from hasher_settings import Settings

from tests.support.servers import SERVICES_DIR

NAMES = ("HOST", "PORT", "HASHER_DELAY", "HASHER_MAX_BYTES", "LOG_LEVEL", "ACCESS_LOG")
METRICS_NAMES = ("METRICS", "DOCKERCOINS_NODE")


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
    assert (Settings().metrics, Settings().node) == (True, None)
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


@pytest.mark.parametrize("empty", ["", " ", "\t"])
def test_empty_values_mean_the_default(empty: str) -> None:
    assert Settings.from_env(dict.fromkeys((*NAMES, *METRICS_NAMES), empty)) == Settings()


def test_unknown_variables_are_ignored() -> None:
    assert (
        Settings.from_env({"hasher_delay": "x", "HASHER_DELAYS": "x", "DELAY": "x"}) == Settings()
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HASHER_DELAY", "-0.1"),
        ("HASHER_DELAY", "inf"),
        ("HASHER_DELAY", "nan"),
        ("HASHER_DELAY", "slow"),
        ("HASHER_DELAY", "+5"),
        ("HASHER_DELAY", "1_000"),
        ("HASHER_DELAY", "1e3"),
        ("HASHER_MAX_BYTES", "x"),
        ("HASHER_MAX_BYTES", "-1"),
        ("HASHER_MAX_BYTES", "+5"),
        ("HASHER_MAX_BYTES", "1_000"),
        ("HASHER_MAX_BYTES", "1e6"),
        ("HASHER_MAX_BYTES", "9" * 19),
        ("PORT", "0"),
        ("PORT", "65536"),
        ("PORT", "80.0"),
        ("LOG_LEVEL", "LOUD"),
        ("ACCESS_LOG", "maybe"),
        ("ACCESS_LOG", "y"),
        ("METRICS", "enabled"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name) as caught:
        Settings.from_env({name: value})
    assert re.fullmatch(rf"{name}={re.escape(repr(value))} must be [^\n]+", str(caught.value))


def test_the_service_refuses_a_bad_variable_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "hasher.py"],
        cwd=SERVICES_DIR / "hasher",
        env={**os.environ, "HASHER_DELAY": "-1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        " ERROR hasher: bad setting: HASHER_DELAY='-1' must be a decimal number"
        " such as 0, 2 or 0.25"
    )
