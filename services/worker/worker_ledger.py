"""The worker's ledger: loops done and coins found, what Redis has confirmed of them and
what is still owed to it, cut into numbered flushes.

Exactly once: what is owed is sent to Redis as a flush with a sequence number (1, 2, ...).
A flush that fails is sent again with the same number and the same amounts; new work waits
for the next number. Redis applies a flush only when its number is new for this worker
(worker_redis.py), so a flush that was applied but whose reply was lost is not applied twice
when it is sent again: Redis answers "already applied" and the flush is confirmed.

Bounded: hashes not yet confirmed (owed, in the flush being sent, and loops under way) never
exceed `max_owed`; a loop starts only when `has_room()`. Coins are a subset of the hashes, so
they are bounded too.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Flush:
    """One numbered write to Redis: `hashes` more hashes and these coins (digest -> bytes)."""

    seq: int
    hashes: int
    coins: dict[str, bytes]


@dataclass
class Ledger:
    """Loops done and coins found, and what of them Redis has confirmed.

    At every moment loops == confirmed_hashes + unconfirmed_hashes: a hash is confirmed once
    Redis has answered the flush that carries it (applied now, or already applied before),
    never before."""

    max_owed: int = 100_000
    loops: int = 0
    coins: int = 0
    owed_hashes: int = 0  # not yet in a flush
    owed_coins: dict[str, bytes] = field(default_factory=dict)
    sending: Flush | None = None  # sent (perhaps applied), not yet confirmed
    under_way: int = 0  # loops started and neither recorded nor given up
    confirmed_hashes: int = 0
    confirmed_coins: int = 0
    confirmed_seq: int = 0
    applied: int = 0  # flushes Redis applied when asked
    already_applied: int = 0  # flushes Redis had applied before (their reply was lost)

    @property
    def unconfirmed_hashes(self) -> int:
        return self.owed_hashes + (self.sending.hashes if self.sending else 0)

    @property
    def unconfirmed_coins(self) -> int:
        return len(self.owed_coins) + (len(self.sending.coins) if self.sending else 0)

    def has_room(self) -> bool:
        """True when one more loop may start without passing `max_owed`."""
        return self.unconfirmed_hashes + self.under_way < self.max_owed

    def reserve(self) -> None:
        """A loop starts (the caller checked has_room() with no await in between)."""
        self.under_way += 1

    def release(self) -> None:
        """A loop ends without a hash (rng or hasher failed, or it was cancelled)."""
        self.under_way -= 1

    def record(self, digest: str, data: bytes) -> None:
        """A loop ends with a hash (and a coin when the digest starts with "0")."""
        self.under_way -= 1
        self.loops += 1
        self.owed_hashes += 1
        if digest.startswith("0"):
            self.coins += 1
            self.owed_coins[digest] = data

    def next_flush(self) -> Flush | None:
        """The flush to send: the one not yet confirmed, unchanged, or else a new one with
        everything owed and the next number; None when nothing is owed."""
        if self.sending is None and self.owed_hashes:
            self.sending = Flush(self.confirmed_seq + 1, self.owed_hashes, self.owed_coins)
            self.owed_hashes = 0
            self.owed_coins = {}
        return self.sending

    def confirm(self, flush: Flush, applied: bool) -> None:
        """Redis answered `flush`: applied now (True) or already applied before (False)."""
        assert flush is self.sending, "only the flush being sent can be confirmed"
        self.sending = None
        self.confirmed_seq = flush.seq
        self.confirmed_hashes += flush.hashes
        self.confirmed_coins += len(flush.coins)
        if applied:
            self.applied += 1
        else:
            self.already_applied += 1
