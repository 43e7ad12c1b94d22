"""Audit row ids: `kbr_` + a ULID minted from the row's own `ts`, so id order is time order.

Minted here rather than by python-ulid's `ULID.from_timestamp` (same 26-character Crockford
form, same strictly increasing randomness within one millisecond) because that one reads
`os.urandom` once per id: a syscall that releases the GIL on the request path, and ~3 µs of
objects. Here the randomness comes from a 4 KiB `os.urandom` pool refilled when spent.
"""

from __future__ import annotations

import os
import threading

from ulid import ULID

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits → two characters
_RANDOM_MAX = (1 << 80) - 1
_POOL_BYTES = 4000  # 400 ids per os.urandom call


class _Minter:
    """Strictly increasing ULIDs: a new millisecond draws fresh randomness; the same
    millisecond adds one to the last randomness (python-ulid's StrictMonotonicPolicy)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the pool and the last id (a fresh minter; after a fork, in the child)."""
        self._lock = threading.Lock()
        self._pool = b""
        self._at = len(self._pool)
        self._prev_ms = -1
        self._prev_random = 0

    def mint(self, ms: int) -> str:
        with self._lock:
            if ms == self._prev_ms:
                if self._prev_random == _RANDOM_MAX:
                    raise ValueError("ULID randomness within one millisecond exhausted")
                rnd = self._prev_random + 1
            else:
                if self._at >= len(self._pool):
                    self._pool, self._at = os.urandom(_POOL_BYTES), 0
                rnd = int.from_bytes(self._pool[self._at : self._at + 10], "big")
                self._at += 10
            self._prev_ms, self._prev_random = ms, rnd
        return encode((ms << 80) | rnd)


def encode(value: int) -> str:
    """The 26-character Crockford base32 form of a 128-bit ULID value (the first character
    carries the top 3 bits)."""
    pairs = _PAIRS
    return (
        _ALPHABET[value >> 125]
        + pairs[(value >> 115) & 0x3FF]
        + pairs[(value >> 105) & 0x3FF]
        + pairs[(value >> 95) & 0x3FF]
        + pairs[(value >> 85) & 0x3FF]
        + pairs[(value >> 75) & 0x3FF]
        + pairs[(value >> 65) & 0x3FF]
        + pairs[(value >> 55) & 0x3FF]
        + pairs[(value >> 45) & 0x3FF]
        + pairs[(value >> 35) & 0x3FF]
        + pairs[(value >> 25) & 0x3FF]
        + pairs[(value >> 15) & 0x3FF]
        + pairs[(value >> 5) & 0x3FF]
        + _ALPHABET[value & 0x1F]
    )


_MINTER = _Minter()
# A forked child must not reuse the parent's unspent pool (two processes would mint the same ids).
os.register_at_fork(after_in_child=lambda: _MINTER.reset())


def _id_ms(ts_ms: int) -> int:
    # The millisecond python-ulid's ULID.from_timestamp(ts_ms / 1000) encodes (ids already
    # written, and `audit_id_floor`, use this same conversion).
    return int((ts_ms / 1000) * 1000)


def new_audit_id(ts_ms: int) -> str:
    """`kbr_` + a ULID for a row written at `ts_ms` (ms since the epoch); strictly increasing
    within one process. Raises ValueError past 2**80 ids in one millisecond."""
    return "kbr_" + _MINTER.mint(_id_ms(ts_ms))


def audit_id_floor(ts_ms: int) -> str:
    """The smallest id a row with `ts >= ts_ms` can have (all-zero randomness)."""
    return f"kbr_{ULID.from_timestamp(ts_ms / 1000)}"[:14] + "0" * 16
