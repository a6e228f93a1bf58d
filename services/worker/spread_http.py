"""The worker's HTTP client: aiohttp keep-alive, with requests spread over every instance.

Why not just `aiohttp.ClientSession().get("http://rng/32")`? aiohttp pools kept-alive
connections per host name, so a worker would stay on the rng instance its first connection
reached for as long as that connection lives. Two mechanisms spread the load instead:

1. Address rotation (swarm `dnsrr`, or `tasks.NAME`): the name is resolved here, with
   `loop.getaddrinfo`, and the address list is cached for `dns_ttl` seconds (1 s). Each
   request goes to the next address round-robin, as `http://<ip>:<port>/...` with the
   `Host` header still set to the name; aiohttp keeps a separate keep-alive pool per
   address. With N instances behind the name, each gets 1/N of the requests, and a new
   instance gets traffic within `dns_ttl` seconds. An address that refuses connections is
   skipped until the next resolution, and the request moves to the next address.
2. Connection retirement (swarm VIP, where the name is one virtual IP and IPVS balances
   per connection): connections live at most about `max_age` seconds (1 s). The session
   holding them is replaced by a fresh one every `max_age` seconds; the old one is closed
   once its requests in flight are done. New connections are balanced again by IPVS.

Cost, measured on the 2-core dev machine (docs/pipeline-benchmark.md): with 32 loops, a
rotation every second opens about 32 new connections per second per address, against
thousands of requests reused over keep-alive, so the throughput stays that of aiohttp
keep-alive (several thousand requests a second), not that of a new connection per request.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

Resolver = Callable[[str, int], Awaitable[list[str]]]


class RequestFailed(Exception):
    """A request that got no usable answer: unresolvable name, refused or broken connection,
    timeout, a truncated body, or a status other than 200. The message is one line, fit for a
    log. `retry_after`: the seconds a 503 or 429 answer asked to wait (Retry-After), if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_DELAY_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date; None when
    absent or unreadable, 0 for a date in the past."""
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6), in resolver order, no duplicates."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Target:
    """An http:// URL split into what a request to one of its addresses needs."""

    host: str
    port: int
    path: str
    query: str
    host_header: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not an http:// URL with a host: {url!r}")
        try:
            port = parts.port or 80
        except ValueError as error:
            raise ValueError(f"bad port in {url!r}") from error
        return cls(
            host=parts.hostname,
            port=port,
            path=parts.path or "/",
            query=parts.query,
            host_header=parts.netloc,
        )

    def url_for(self, address: str) -> URL:
        """The URL of this target on one address (IPv6 addresses get their brackets)."""
        return URL.build(
            scheme="http",
            host=f"[{address}]" if ":" in address else address,
            port=self.port,
            path=self.path,
            query_string=self.query,
            encoded=True,
        )


@dataclass
class AddressBook:
    """The addresses behind one host name, resolved at most every `ttl` seconds and handed
    out round-robin. An IP literal is used as it is, never resolved. `answered` counts the
    200 answers per address, for as long as the book lives (the worker's metrics)."""

    target: Target
    resolve: Resolver = system_resolve
    ttl: float = 1.0
    clock: Callable[[], float] = time.monotonic
    addresses: list[str] = field(default_factory=list)
    down: set[str] = field(default_factory=set)
    urls: dict[str, URL] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)
    _resolved_at: float | None = None
    _turn: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.headers = {"Host": self.target.host_header}
        if _is_ip(self.target.host):
            self._set([self.target.host])
            self.ttl = float("inf")
            self._resolved_at = self.clock()

    def _set(self, addresses: list[str]) -> None:
        self.addresses = sorted(addresses)  # stable order: exact round-robin across refreshes
        self.urls = {address: self.target.url_for(address) for address in self.addresses}
        self.down.clear()

    def fresh(self) -> bool:
        """True while the cached address list may be used without resolving again."""
        return self._resolved_at is not None and self.clock() - self._resolved_at < self.ttl

    async def refresh(self) -> None:
        """Resolve again if the cached list is older than `ttl`; RequestFailed if the name
        does not resolve."""
        if self.fresh():
            return
        async with self._lock:
            if self.fresh():
                return
            try:
                addresses = await self.resolve(self.target.host, self.target.port)
            except OSError as error:
                raise RequestFailed(f"cannot resolve {self.target.host}: {error}") from error
            if not addresses:
                raise RequestFailed(f"{self.target.host} resolves to no address")
            self._set(addresses)
            self._resolved_at = self.clock()

    def next_address(self) -> str:
        """The next address in turn, skipping those marked down (unless all are)."""
        candidates = [a for a in self.addresses if a not in self.down] or self.addresses
        address = candidates[self._turn % len(candidates)]
        self._turn += 1
        return address

    def mark_down(self, address: str) -> None:
        """Skip `address` until the next resolution (it refused a connection)."""
        self.down.add(address)


@dataclass
class _Generation:
    session: aiohttp.ClientSession
    born: float
    in_flight: int = 0
    retired: bool = False


class SpreadingClient:
    """GET/POST to names with several instances behind them; see the module docstring."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        dns_ttl: float = 1.0,
        max_age: float = 1.0,
        resolve: Resolver = system_resolve,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._dns_ttl = dns_ttl
        self._max_age = max_age
        self._resolve = resolve
        self._clock = clock
        self._books: dict[Target, AddressBook] = {}
        self._current: _Generation | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.sessions_opened = 0

    def book(self, target: Target) -> AddressBook:
        book = self._books.get(target)
        if book is None:
            book = AddressBook(target, self._resolve, self._dns_ttl, self._clock)
            self._books[target] = book
        return book

    def _new_generation(self) -> _Generation:
        connector = aiohttp.TCPConnector(limit=0, use_dns_cache=False, force_close=False)
        session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=False
        )
        self.sessions_opened += 1
        return _Generation(session=session, born=self._clock())

    def _acquire(self) -> _Generation:
        current = self._current
        if current is None or self._clock() - current.born >= self._max_age:
            if current is not None:
                current.retired = True
                if current.in_flight == 0:
                    self._close_later(current)
            current = self._current = self._new_generation()
        current.in_flight += 1
        return current

    def _release(self, generation: _Generation) -> None:
        generation.in_flight -= 1
        if generation.retired and generation.in_flight == 0:
            self._close_later(generation)

    def _close_later(self, generation: _Generation) -> None:
        task = asyncio.get_running_loop().create_task(generation.session.close())
        self._closing.add(task)
        task.add_done_callback(self._closed)

    def _closed(self, task: asyncio.Task[None]) -> None:
        """A retired session is closed: its error, if any, is retrieved here (a close that
        fails has nothing left to do), never left for the loop to report."""
        self._closing.discard(task)
        if not task.cancelled():
            task.exception()

    async def request(self, method: str, target: Target, data: bytes | None = None) -> bytes:
        """The body of a 200 answer from one of the target's addresses, or RequestFailed."""
        book = self._books.get(target) or self.book(target)
        if not book.fresh():
            await book.refresh()
        headers = book.headers
        attempts = len(book.addresses)
        for attempt in range(attempts):
            address = book.next_address()
            generation = self._acquire()
            try:
                async with generation.session.request(
                    method, book.urls[address], data=data, headers=headers
                ) as response:
                    body = await response.read()
                    if response.status != 200:
                        wait = None
                        if response.status in (429, 503):
                            wait = retry_after_seconds(response.headers.get("Retry-After"))
                        raise RequestFailed(
                            f"{method} {target.host_header}{target.path} on {address}: "
                            f"HTTP {response.status}"
                            + ("" if wait is None else f" (Retry-After {wait:g} s)"),
                            retry_after=wait,
                        )
                    book.answered[address] = book.answered.get(address, 0) + 1
                    return body
            except aiohttp.ClientConnectorError as error:
                book.mark_down(address)
                if attempt + 1 < attempts:
                    continue  # another instance may answer
                raise RequestFailed(f"{target.host_header} on {address}: {error}") from error
            except (aiohttp.ClientError, TimeoutError) as error:
                kind = type(error).__name__
                raise RequestFailed(
                    f"{method} {target.host_header}{target.path} on {address}: {kind} {error}"
                ) from error
            finally:
                self._release(generation)
        raise RequestFailed(f"{target.host_header}: no address to try")  # pragma: no cover

    async def close(self) -> None:
        """Close every session, the current one and those still retiring."""
        if self._current is not None:
            await self._current.session.close()
            self._current = None
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
