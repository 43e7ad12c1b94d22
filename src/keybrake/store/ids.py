"""Audit row ids: `kbr_` + a ULID minted from the row's own `ts`, so id order is time order."""

from __future__ import annotations

from ulid import ULID


def new_audit_id(ts_ms: int) -> str:
    return f"kbr_{ULID.from_timestamp(ts_ms / 1000)}"


def audit_id_floor(ts_ms: int) -> str:
    """The smallest id a row with `ts >= ts_ms` can have (all-zero randomness)."""
    return f"kbr_{ULID.from_timestamp(ts_ms / 1000)}"[:14] + "0" * 16
