"""The worker's health check (the image's HEALTHCHECK runs it): is the worker moving on?

    python worker_probe.py [HEARTBEAT_FILE]

The worker touches its heartbeat file (WORKER_HEARTBEAT, default /tmp/worker-heartbeat)
every second while each mining loop and the flusher move on: a loop that completes, fails
and backs off, or waits on rng, hasher or Redis within its bounds (see worker_heartbeat.py).
So rng, hasher or Redis being down keeps the worker healthy (restarting it would not help),
and a stuck event loop or a stalled loop makes it unhealthy. Healthy when the file was
touched within MAX_AGE seconds. Exit 0 with one line, else 1 with the reason (the
container's health log shows it). Standard library only: one stat() in a short process.
"""

from __future__ import annotations

import os
import sys
import time

DEFAULT_HEARTBEAT = "/tmp/worker-heartbeat"  # worker_settings.Settings.heartbeat
# Touched every second (worker.HEARTBEAT_INTERVAL): older than this, five beats were missed.
MAX_AGE = 5.0


def check(path: str, now: float | None = None) -> tuple[bool, str]:
    """(healthy, one line saying why) for the heartbeat file at `path`."""
    try:
        touched = os.stat(path).st_mtime
    except OSError as error:
        return False, f"no heartbeat file: {error.strerror or error} ({path})"
    age = (time.time() if now is None else now) - touched
    if age > MAX_AGE:
        return False, (
            f"heartbeat {age:.0f} s old ({path}): a mining loop or the flusher stalled, "
            "or the event loop is stuck"
        )
    return True, f"worker heartbeat {max(age, 0.0):.1f} s old"


def main(argv: list[str]) -> int:
    if len(argv) > 2:
        print(f"usage: {argv[0]} [HEARTBEAT_FILE]  (default {DEFAULT_HEARTBEAT})")
        return 2
    healthy, line = check(argv[1] if len(argv) == 2 else DEFAULT_HEARTBEAT)
    print(line if healthy else f"unhealthy: {line}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
