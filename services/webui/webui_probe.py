"""webui's health check (the image's HEALTHCHECK runs it): does webui serve the contract?

    python webui_probe.py [PORT]

asks 127.0.0.1:PORT, default 80: the contract's port, published as 8000, whatever PORT the
process was given. Healthy when GET /index.html answers the page and GET /json answers the
numbers ({"coins", "hashes", "now"}), or 503 with a JSON error: Redis is away, webui is not
the one to restart. Exit 0 with one line, else 1 with the reason (the container's health
log shows it). Standard library only, two requests, each bounded by TIMEOUT.
"""

from __future__ import annotations

import json
import socket
import sys
import time

CONTRACT_PORT = 80  # names.SERVICE_PORT: where the swarm publishes webui from
PAGE = "/index.html"
NUMBERS = "/json"
# Seconds per exchange; the HEALTHCHECK's --timeout is above the two together. The page is
# a static file (at once, unless webui is stuck); /json answers within 2 x REDIS_TIMEOUT
# (2 s) even while Redis does not answer (then a 503), so 3 s leaves a margin.
TIMEOUT = 1.0
NUMBERS_TIMEOUT = 3.0
MAX_ANSWER = 256 * 1024


class ProbeError(Exception):
    """The service did not answer as the contract says; the message is one line."""


def exchange(
    port: int, method: str, path: str, body: bytes = b"", timeout: float = TIMEOUT
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.0 request to 127.0.0.1:port within `timeout` seconds: (status, lowercase
    headers, body)."""
    deadline = time.monotonic() + timeout
    request = (
        f"{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii") + body
    chunks: list[bytes] = []
    size = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(request)
            while size <= MAX_ANSWER:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = conn.recv(16384)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except OSError as error:
        raise ProbeError(
            f"{method} {path} on port {port}: {error or type(error).__name__}"
        ) from None
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise ProbeError(f"{method} {path} on port {port}: no HTTP answer ({lines[0][:60]!r})")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, payload


def check(port: int) -> str:
    """What webui answered, when it is what the contract says; ProbeError otherwise."""
    status, headers, payload = exchange(port, "GET", PAGE)
    if status != 200 or not headers.get("content-type", "").startswith("text/html"):
        raise ProbeError(f"GET {PAGE} on port {port} answered {status}, not the page")
    status, headers, payload = exchange(port, "GET", NUMBERS, timeout=NUMBERS_TIMEOUT)
    try:
        answer = json.loads(payload)
    except ValueError:
        raise ProbeError(f"GET {NUMBERS} on port {port} answered {status}, not JSON") from None
    if status == 503 and isinstance(answer, dict) and "error" in answer:
        return f"webui serves on port {port}; {answer['error']}"
    if (
        status != 200
        or not isinstance(answer, dict)
        or not {"coins", "hashes", "now"} <= set(answer)
    ):
        raise ProbeError(f"GET {NUMBERS} on port {port} answered {status}: {payload[:80]!r}")
    return f"webui serves on port {port}: {answer['hashes']} hashes"


def main(argv: list[str]) -> int:
    if len(argv) > 2 or (len(argv) == 2 and not argv[1].isdigit()):
        print(f"usage: {argv[0]} [PORT]  (default {CONTRACT_PORT}, the contract's port)")
        return 2
    port = int(argv[1]) if len(argv) == 2 else CONTRACT_PORT
    try:
        print(check(port))
    except ProbeError as error:
        print(f"unhealthy: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
