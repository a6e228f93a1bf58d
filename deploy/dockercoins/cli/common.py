"""What the command modules share: the type of the `subparsers` each `register` receives,
and the argparse `type=` checks of one option's value."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from dockercoins.host.ports import PORT_MAX, parse_address

if TYPE_CHECKING:
    # argparse names this class privately; it is generic only in the type stubs
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


# argparse `type=` checks of one option's value: a bad value is a usage error (exit 2).


def tcp_port(text: str) -> int:
    """A TCP port number, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= PORT_MAX:
        raise argparse.ArgumentTypeError(f"not a TCP port (1-{PORT_MAX}): {text!r}")
    return port


def tcp_port_or_zero(text: str) -> int:
    """A TCP port number, or 0 for "a free port"."""
    try:
        if int(text) == 0:
            return 0
    except ValueError:
        pass
    return tcp_port(text)


def tcp_address(text: str) -> str:
    """HOST:PORT, as given."""
    try:
        parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return text


def int_between(low: int, high: int) -> Callable[[str], int]:
    """A whole number from `low` to `high`."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"bad value {text}: expected {low} to {high}")
        return value

    return check


def seconds_between(
    low: float, high: float = math.inf, *, low_inclusive: bool = True
) -> Callable[[str], float]:
    """A finite number of seconds from `low` (or above it) up to `high`."""

    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        above_low = value >= low if low_inclusive else value > low
        if not (above_low and value <= high and value < math.inf):
            bound = f"{'>=' if low_inclusive else '>'} {low:g}"
            if high < math.inf:
                bound += f" and <= {high:g}"
            raise argparse.ArgumentTypeError(
                f"bad value {text}: expected a number of seconds {bound}"
            )
        return value

    return check
