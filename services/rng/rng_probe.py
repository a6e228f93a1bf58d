"""rng's health check (the image's HEALTHCHECK runs it): does rng serve the contract?

    python rng_probe.py [PORT]

asks GET /health on 127.0.0.1:PORT, default 80: the contract's port, where the workers
look, whatever PORT the process was given. /health answers random bytes at once, never
queued behind the workers' GET /<n>, so a busy rng is still healthy. Exit 0 with one line
when it answers HEALTH_BYTES bytes of application/octet-stream, else 1 with the reason (the
container's health log shows it). Standard library only, one request, bounded by TIMEOUT:
the check costs one short python process.
"""

from __future__ import annotations

import socket
import sys
import time

CONTRACT_PORT = 80  # names.SERVICE_PORT: where the other services reach rng
PATH = "/health"
HEALTH_BYTES = 32  # what GET /health answers (rng.HEALTH_BYTES)
TIMEOUT = 2.0  # seconds for the whole exchange; the HEALTHCHECK's --timeout is above it
MAX_ANSWER = 64 * 1024


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
    """What rng answered, when it is what the contract says; ProbeError otherwise."""
    status, headers, payload = exchange(port, "GET", PATH)
    if status != 200:
        raise ProbeError(f"GET {PATH} on port {port} answered {status}")
    kind = headers.get("content-type", "")
    if not kind.startswith("application/octet-stream") or len(payload) != HEALTH_BYTES:
        raise ProbeError(f"GET {PATH} on port {port}: {len(payload)} bytes of {kind!r}")
    return f"rng serves {HEALTH_BYTES} random bytes on port {port}"


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
