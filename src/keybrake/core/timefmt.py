"""Timestamps: integer Unix milliseconds inside, RFC 3339 UTC with milliseconds at the edge."""

from __future__ import annotations

import re
from datetime import UTC, datetime

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def rfc3339(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_rfc3339(text: str) -> int:
    """Any RFC 3339 timestamp with an offset → Unix ms. Raises ValueError otherwise."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", text, re.ASCII):
        raise ValueError("must be an RFC 3339 timestamp with a time zone, e.g. 2026-05-01T12:00:00Z")
    dt = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    return int(dt.timestamp() * 1000)


def utc_day_start(ms: int) -> int:
    return ms - ms % DAY_MS


def utc_hour_start(ms: int) -> int:
    return ms - ms % HOUR_MS


_DURATION = re.compile(r"^([1-9][0-9]*)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_s(value: object) -> int:
    """`expires_in`: a positive integer of seconds or '90s' / '15m' / '8h' / '7d'."""
    if isinstance(value, bool):
        raise ValueError("must be a positive integer of seconds or a string like '8h'")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return int(m.group(1)) * _UNIT_S[m.group(2)]
    raise ValueError("must be a positive integer of seconds or a string like '90s', '15m', '8h', '7d'")
