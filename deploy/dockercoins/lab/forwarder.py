"""A small TCP forwarder: a host port on 127.0.0.1 -> the first lab node that accepts.

Run detached by `dockercoins lab up`, one process per port (8000 for the web UI, 9090 for
Prometheus), as

    python -m dockercoins.lab.forwarder --listen 127.0.0.1:8000 --pidfile FILE HOST:PORT ...

Each incoming connection goes to the first target that accepts it (the one that worked
last is tried first): with host-mode publishing only the node running the service
listens on its port; with the ingress routing mesh every node does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from dockercoins.host.ports import LOOPBACK, parse_address
from dockercoins.names import WEBUI_PUBLISHED_PORT

log = logging.getLogger("dockercoins.lab.forwarder")

CONNECT_TIMEOUT = 2.0
CHUNK = 65536


class Forwarder:
    """Accepts on `listen`, relays bytes both ways to the first target that accepts."""

    def __init__(self, targets: Sequence[tuple[str, int]]) -> None:
        if not targets:
            raise ValueError("at least one target is needed")
        self.targets = list(targets)
        self.preferred = 0

    def _order(self) -> list[int]:
        count = len(self.targets)
        return [(self.preferred + offset) % count for offset in range(count)]

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for index in self._order():
            host, port = self.targets[index]
            try:
                streams = await asyncio.wait_for(
                    asyncio.open_connection(host, port), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError):
                continue
            self.preferred = index
            return streams
        return None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:
            log.warning("no target accepts a connection: %s", self.targets)
            writer.close()
            return
        up_reader, up_writer = upstream
        try:
            await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))
        finally:
            for stream in (writer, up_writer):
                stream.close()
                with contextlib.suppress(OSError):
                    await stream.wait_closed()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side so the peer sees the end too."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def serve(
    listen: tuple[str, int], targets: Sequence[tuple[str, int]], pidfile: Path | None
) -> None:
    forwarder = Forwarder(targets)
    server = await asyncio.start_server(forwarder.handle, listen[0], listen[1])
    if pidfile:
        await asyncio.to_thread(pidfile.write_text, f"{os.getpid()}\n")
    log.info("forwarding %s:%d to %s", listen[0], listen[1], targets)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dockercoins.lab.forwarder",
        description="Forward TCP connections from a host port to the first target that accepts.",
    )
    parser.add_argument(
        "--listen", default=f"{LOOPBACK}:{WEBUI_PUBLISHED_PORT}", help="HOST:PORT to listen on"
    )
    parser.add_argument("--pidfile", type=Path, help="write the pid here once listening")
    parser.add_argument("targets", nargs="+", help="HOST:PORT targets, tried in order")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        listen = parse_address(args.listen)
        targets = [parse_address(target) for target in args.targets]
    except ValueError as error:
        parser.error(str(error))
    try:
        asyncio.run(serve(listen, targets, args.pidfile))
    except OSError as error:
        log.error("cannot listen on %s: %s", args.listen, error.strerror or error)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
