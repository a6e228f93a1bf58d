"""The worker's ledger: loops done and coins found, what Redis has confirmed of them and
what is still owed to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis


@dataclass
class Ledger:
    """Loops done and coins found, and what of them is still owed to Redis.

    At every moment loops == written_hashes + owed_hashes: a hash is written once Redis has
    confirmed the INCRBY that counted it, never before."""

    loops: int = 0
    owed_hashes: int = 0
    owed_coins: dict[str, bytes] = field(default_factory=dict)
    coins: int = 0
    written_hashes: int = 0
    written_coins: int = 0

    def record(self, digest: str, data: bytes) -> None:
        self.loops += 1
        self.owed_hashes += 1
        if digest.startswith("0"):
            self.coins += 1
            self.owed_coins[digest] = data

    async def flush(self, db: aioredis.Redis) -> None:
        """Write what is owed in one transaction; on error nothing is forgotten."""
        hashes = self.owed_hashes
        coins = dict(self.owed_coins)
        if hashes == 0 and not coins:
            return
        async with db.pipeline(transaction=True) as pipe:
            pipe.incrby("hashes", hashes)
            if coins:
                mapping: dict[Any, Any] = coins  # redis-py's key type is invariant
                pipe.hset("wallet", mapping=mapping)
            # Inside MULTI/EXEC one command can fail (e.g. WRONGTYPE) while the others are
            # applied: settle each part on its own result, so nothing is counted twice.
            results = await pipe.execute(raise_on_error=False)
        if isinstance(results[0], Exception):
            raise results[0]
        self.owed_hashes -= hashes
        self.written_hashes += hashes
        if coins:
            if isinstance(results[1], Exception):
                raise results[1]
            for digest in coins:
                self.owed_coins.pop(digest, None)
            self.written_coins += len(coins)
