"""The worker's Redis: the client, and the one script that applies a flush exactly once.

The flush script (EVALSHA; redis-py loads it again after a restarted Redis answers NOSCRIPT)
applies a numbered flush atomically, and only when its number is new for the worker:

    INCRBY hashes N                               the original counter
    HSET   wallet digest bytes ...                the original wallet
    HSET   dockercoins:ledger:seq    WORKER SEQ   the last flush applied, per worker
    HINCRBY dockercoins:ledger:hashes WORKER N    the hashes applied, per worker

It answers 1 when it applied the flush and 0 when that number was applied before (the
worker sent it again because the reply was lost); then nothing is written. Every check that
can fail (a key of the wrong type, a counter that is not a number) comes before the first
write, since Redis does not undo the writes of a script that fails half-way.

Names are resolved here, not by the event loop's create_connection: uvloop's
create_connection, cancelled by the connect timeout while the name is still being resolved
(a slow DNS during swarm changes), leaves the resolver's error in a future nobody awaits,
logged later as "Future exception was never retrieved ... gaierror". loop.getaddrinfo,
cancelled the same way, does not.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from worker_ledger import Flush

HASHES = "hashes"
WALLET = "wallet"
LEDGER_SEQ = "dockercoins:ledger:seq"
LEDGER_HASHES = "dockercoins:ledger:hashes"

# Lua's unpack() has a limit on how many values it returns: the wallet is written in chunks.
_WALLET_CHUNK = 1000  # fields and values, an even number
FLUSH_SCRIPT = f"""
local worker, seq, hashes = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local last = redis.call('HGET', KEYS[3], worker)
if last and not tonumber(last) then
    return redis.error_reply('ERR ' .. KEYS[3] .. ' ' .. worker .. ' is not a number')
end
if seq <= (tonumber(last) or 0) then
    return 0
end
local total = redis.call('GET', KEYS[1])
if total and not string.match(total, '^%-?%d+$') then
    return redis.error_reply('ERR ' .. KEYS[1] .. ' is not an integer; nothing written')
end
redis.call('HLEN', KEYS[2])
local mine = redis.call('HGET', KEYS[4], worker)
if mine and not string.match(mine, '^%-?%d+$') then
    return redis.error_reply('ERR ' .. KEYS[4] .. ' ' .. worker .. ' is not an integer')
end
redis.call('INCRBY', KEYS[1], hashes)
for first = 4, #ARGV, {_WALLET_CHUNK} do
    redis.call('HSET', KEYS[2], unpack(ARGV, first, math.min(first + {_WALLET_CHUNK - 1}, #ARGV)))
end
redis.call('HSET', KEYS[3], worker, ARGV[2])
redis.call('HINCRBY', KEYS[4], worker, hashes)
return 1
"""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _addresses(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        if str(sockaddr[0]) not in found:
            found.append(str(sockaddr[0]))
    if not found:
        raise OSError(f"{host} resolves to no address")
    return found


class ResolvingConnection(Connection):
    """A TCP connection whose host name is resolved with loop.getaddrinfo, then connected
    to by address (each in turn), within the connect timeout."""

    _address: str | None = None

    async def _connect(self) -> None:
        if _is_ip(self.host):
            await super()._connect()  # type: ignore[no-untyped-call]
            return
        async with asyncio.timeout(self.socket_connect_timeout):
            addresses = await _addresses(self.host, self.port)
        error: OSError | None = None
        for address in addresses:
            self._address = address
            try:
                await super()._connect()  # type: ignore[no-untyped-call]
            except OSError as failed:
                error = failed
            else:
                return
            finally:
                self._address = None
        assert error is not None
        raise error

    def _connection_arguments(self) -> Mapping[str, Any]:
        arguments = dict(super()._connection_arguments())
        if self._address is not None:
            arguments["host"] = self._address
            if arguments.get("ssl") is not None:
                arguments["server_hostname"] = self.host  # the certificate names the host
        return arguments


class ResolvingSSLConnection(ResolvingConnection, SSLConnection):
    """rediss://: the same, over TLS."""


def connect(url: str, password: str | None = None) -> aioredis.Redis:
    """A client for `url` that makes one attempt per command (the worker retries flushes
    itself, with the same sequence number) and resolves names as above; `password` (from
    REDIS_PASSWORD_FILE) is sent with AUTH on every new connection."""
    db = aioredis.Redis.from_url(
        url,
        password=password,
        socket_connect_timeout=1.0,
        socket_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
    )
    pool = db.connection_pool
    if pool.connection_class is SSLConnection:
        pool.connection_class = ResolvingSSLConnection
    elif pool.connection_class is Connection:
        pool.connection_class = ResolvingConnection
    return db


class FlushScript:
    """The flush script, registered once (redis-py's register_script: EVALSHA, and the
    script loaded again on NOSCRIPT)."""

    def __init__(self, db: aioredis.Redis, worker_id: str) -> None:
        self.worker_id = worker_id
        self.script = db.register_script(FLUSH_SCRIPT)

    async def apply(self, flush: Flush) -> bool:
        """True when Redis applied `flush` now, False when it had been applied before."""
        args: list[Any] = [self.worker_id, flush.seq, flush.hashes]
        for digest, data in flush.coins.items():
            args += (digest, data)
        answer = await self.script(keys=[HASHES, WALLET, LEDGER_SEQ, LEDGER_HASHES], args=args)
        return bool(int(answer))
