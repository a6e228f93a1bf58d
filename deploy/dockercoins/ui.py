"""Progress and status lines for the CLI (stderr for progress, stdout for results)."""

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def info(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def result(message: str) -> None:
    """A result line on stdout (what scripts may read)."""
    print(message, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print `title ...`, run the block, then `title: done (1.2 s)` or `title: failed`."""
    info(f"==> {title} ...")
    started = time.monotonic()
    try:
        yield
    except BaseException:
        info(f"==> {title}: failed after {time.monotonic() - started:.1f} s")
        raise
    info(f"==> {title}: done ({time.monotonic() - started:.1f} s)")
