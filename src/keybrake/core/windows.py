"""Cap windows. Pure: the store passes its own clock's `now` (docs/api.md, budgets).

A key's own caps use UTC days and clock hours; a budget's days and months roll over at local
midnight of its IANA time zone (DST-aware: a local day may last 23 or 25 hours).
"""

from __future__ import annotations

import datetime as dt
from enum import Enum
from functools import lru_cache
from zoneinfo import ZoneInfo

from keybrake.core.timefmt import DAY_MS, HOUR_MS, utc_day_start, utc_hour_start


class Window(Enum):
    DAY = "day"  # calendar day (UTC for keys, the budget's time zone for budgets)
    MONTH = "month"  # calendar month, in the budget's time zone
    HOUR = "hour"  # UTC clock hour
    TOTAL = "total"  # the key's (or budget's) whole life


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local_start(window: Window, now_ms: int, tz: str) -> dt.datetime:
    local = dt.datetime.fromtimestamp(now_ms / 1000, zone(tz))
    day = local.date().replace(day=1) if window is Window.MONTH else local.date()
    return dt.datetime.combine(day, dt.time(0), zone(tz))


def window_start(window: Window, now_ms: int, tz: str = "UTC") -> int:
    if window is Window.HOUR:
        return utc_hour_start(now_ms)
    if window is Window.TOTAL:
        return 0
    if tz == "UTC" and window is Window.DAY:
        return utc_day_start(now_ms)
    return int(_local_start(window, now_ms, tz).timestamp() * 1000)


def resets_at(window: Window, start_ms: int, tz: str = "UTC") -> int | None:
    if window is Window.HOUR:
        return start_ms + HOUR_MS
    if window is Window.TOTAL:
        return None
    if tz == "UTC" and window is Window.DAY:
        return start_ms + DAY_MS
    start = dt.datetime.fromtimestamp(start_ms / 1000, zone(tz)).date()
    if window is Window.DAY:
        nxt = start + dt.timedelta(days=1)
    else:
        nxt = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return int(dt.datetime.combine(nxt, dt.time(0), zone(tz)).timestamp() * 1000)
