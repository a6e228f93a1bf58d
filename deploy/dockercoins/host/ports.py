"""TCP addresses and ports: parse HOST:PORT, can we listen on a port, does something accept
there, which port is free. The one place every module asks these questions."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"
PORT_MAX = 65535


def parse_address(text: str) -> tuple[str, int]:
    """ "HOST:PORT" -> (host, port); ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= PORT_MAX:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def port_free(host: str, port: int) -> bool:
    """True when a server could listen on host:port now (bound with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def accepts(host: str, port: int, timeout: float) -> bool:
    """True when something accepts a TCP connection on host:port within `timeout` s."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
