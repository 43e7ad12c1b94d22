"""The console's display filters (Jinja2): money, times, shares. Pure: values in, text out.

Money reaches the pages as the admin API renders it (USD decimals, `Decimal` or strings) or as
integer micro-USD (µUSD) from the store; times as RFC 3339 strings or Unix ms.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from keybrake.core.money import MICRO, human_usd
from keybrake.core.timefmt import parse_rfc3339, rfc3339


def usd(value: Any) -> str:
    """A USD amount (Decimal, str, int or float dollars) as `$1,234.50`; `—` for None."""
    if value is None or value == "":
        return "—"
    try:
        micro = int((Decimal(str(value)) * MICRO).to_integral_value())
    except (InvalidOperation, ValueError):
        return str(value)
    return human_usd(micro) if micro >= 0 else "-" + human_usd(-micro)


def micro_usd(value: int | None) -> str:
    """Integer µUSD as `$1,234.50`; `—` for None."""
    if value is None:
        return "—"
    return human_usd(value) if value >= 0 else "-" + human_usd(-value)


def when(value: Any) -> str:
    """An RFC 3339 string or Unix ms as `2026-11-30 22:10:04 UTC` (seconds); `—` for None."""
    if value is None or value == "":
        return "—"
    try:
        ms = value if isinstance(value, int) else parse_rfc3339(str(value))
    except ValueError:
        return str(value)
    return rfc3339(ms)[:19].replace("T", " ") + " UTC"


def share(used: Any, limit: Any) -> int:
    """`used` of `limit` in whole percent, 0–100 (a bar's fill); 0 without a positive limit."""
    try:
        u, lim = Decimal(str(used)), Decimal(str(limit))
    except (InvalidOperation, ValueError):
        return 0
    if lim <= 0:
        return 0
    return max(0, min(100, int(u * 100 / lim)))


def plural(n: int, one: str, many: str | None = None) -> str:
    """`1 cap hit`, `2 cap hits`: the count and the word it takes."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


FILTERS = {"usd": usd, "micro_usd": micro_usd, "when": when, "share": share, "plural": plural}
