"""Finding a request's vault key and checking its state: the only key reads of the hot path
besides the reservation (which re-reads status, expiry and policy version in its transaction)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from keybrake import deadline
from keybrake.core.errors import Denial, EnforcementUnavailable
from keybrake.store.base import KeyRecord, KeyState, ReservationStore


class Clocks(Protocol):
    """The two clocks a key's expiry is read by (ms since the epoch): this host's estimate of
    the database's clock, and the database's clock itself (one store call)."""

    def now_ms(self) -> int: ...
    async def db_now_ms(self) -> int: ...


def unknown_key() -> Denial:
    """The refusal of a token no vault key has (401 key_invalid): final for the agent."""
    return Denial("key_invalid", "Unknown vault key. Do not retry; ask the operator for a new key.")


async def key_state(key: KeyRecord, clocks: Clocks) -> KeyState:
    """REVOKED, EXPIRED (by the database's clock) or OK. Used by the pipeline on every request
    and by `GET /_keybrake/self`.

    The local estimate of the database's clock only admits: a key it calls expired is EXPIRED
    only once the database's clock, read now, agrees (a host clock step never ends a live key).
    Raises EnforcementUnavailable when the store cannot be read.
    """
    if key.status == "revoked":
        return KeyState.REVOKED
    if key.expires_at <= clocks.now_ms() and key.expires_at <= await clocks.db_now_ms():
        return KeyState.EXPIRED
    return KeyState.OK


class KeyLookups:
    """Key lookups by token hash, coalesced: concurrent lookups of one token share a store call."""

    def __init__(self, store: ReservationStore) -> None:
        self.store = store
        # Uncached key lookups in progress, by token hash: a burst on one new key makes one lookup.
        self._lookups: dict[str, asyncio.Future[KeyRecord | None]] = {}

    async def lookup(self, thash: str, *, cached: bool) -> KeyRecord | None:
        """The key with token hash `thash`. A token not in the snapshot cache has authenticated
        nobody yet: its lookup queues in the capped LOOKUP class (store/gate.py), so a flood of
        unknown keys never takes the places of requests whose key is known; and concurrent
        lookups of one token share a single store call (a burst of a new key's first requests
        is one lookup, never refused for the LOOKUP cap), each waiting no longer than its own
        deadline (EnforcementUnavailable past it)."""
        d = deadline.current()
        if cached or d is None:
            return await self.store.key_by_hash(thash)
        shared = self._lookups.get(thash)
        if shared is not None:
            try:
                return await asyncio.wait_for(asyncio.shield(shared), max(0.0, d.remaining()))
            except TimeoutError:
                raise EnforcementUnavailable("the key lookup did not finish within the request's deadline") from None
        mine: asyncio.Future[KeyRecord | None] = asyncio.get_running_loop().create_future()
        self._lookups[thash] = mine
        kind, d.kind = d.kind, deadline.LOOKUP
        try:
            key = await self.store.key_by_hash(thash)
            mine.set_result(key)
            return key
        except BaseException as exc:
            mine.set_exception(exc if isinstance(exc, Exception) else EnforcementUnavailable("key lookup cancelled"))
            mine.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            d.kind = kind
            self._lookups.pop(thash, None)
