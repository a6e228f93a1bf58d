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


def table(rows: list[list[str]]) -> list[str]:
    """Rows of cells as aligned text lines (columns two spaces apart, no trailing spaces)."""
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


class ProgressBar:
    """One line on stderr redrawn in place on a terminal; a line every 10 s otherwise.

    `done` counts the work finished (in the unit of `total`); show() draws `done + extra`."""

    WIDTH = 30

    def __init__(self, total: float) -> None:
        self.total = max(total, 1e-9)
        self.done = 0.0
        self.tty = sys.stderr.isatty()
        self.last_line = 0.0
        self.drawn = False

    def show(self, extra: float, text: str) -> None:
        fraction = min(1.0, (self.done + extra) / self.total)
        filled = round(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"[{bar}] {fraction:4.0%} {text}"
        if self.tty:
            sys.stderr.write("\r" + line.ljust(100)[:100])
            sys.stderr.flush()
            self.drawn = True
        elif time.monotonic() - self.last_line >= 10:
            info(line)
            self.last_line = time.monotonic()

    def end_line(self) -> None:
        """End the redrawn line, so that the next message starts on its own line."""
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False
