"""hasher's health check (the image's HEALTHCHECK runs it): does hasher serve the contract?

    python hasher_probe.py [PORT]

POSTs a tiny body to / on 127.0.0.1:PORT, default 80: the contract's port, where the workers
look, whatever PORT the process was given; healthy when the answer is the body's lowercase
hex sha256, or a 503 with Retry-After (past HASHER_MAX_BODIES hasher sheds load: it is up and
answering as the contract says; restarting it would not help). Exit 0 with one line, else 1
with the reason (the container's health log shows it). Standard library only, one request,
bounded by TIMEOUT: the check costs one short python process.
"""

from __future__ import annotations

import hashlib
import socket
import sys
import time

CONTRACT_PORT = 80  # names.SERVICE_PORT: where the other services reach hasher
PATH = "/"
BODY = b"dockercoins health check"
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
    """What hasher answered, when it is what the contract says; ProbeError otherwise."""
    status, headers, payload = exchange(port, "POST", PATH, BODY)
    if status == 503 and headers.get("retry-after"):
        return f"hasher on port {port} is busy (503, Retry-After {headers['retry-after']})"
    if status != 200:
        raise ProbeError(f"POST {PATH} on port {port} answered {status}")
    expected = hashlib.sha256(BODY).hexdigest()
    if payload.decode("latin-1").strip() != expected:
        raise ProbeError(f"POST {PATH} on port {port} answered {payload[:80]!r}, not {expected}")
    return f"hasher hashes on port {port}"


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
