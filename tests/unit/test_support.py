"""The test helpers themselves: a failed wait says why."""

from __future__ import annotations

import pytest

from tests.support.servers import wait_for


def test_wait_for_names_the_last_failure() -> None:
    def check() -> bool:
        raise ConnectionRefusedError("nobody listens on 127.0.0.1:1")

    with pytest.raises(AssertionError, match="last failure: ConnectionRefusedError: nobody"):
        wait_for(check, timeout=0.2, interval=0.05)


def test_wait_for_without_an_exception_says_only_the_timeout() -> None:
    with pytest.raises(AssertionError) as caught:
        wait_for(lambda: False, timeout=0.1)
    assert "condition not met within 0.1 s" in str(caught.value)
    assert "last failure" not in str(caught.value)


def test_wait_for_returns_once_true() -> None:
    calls: list[int] = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    wait_for(third_time, timeout=5, interval=0.01)
    assert len(calls) == 3
