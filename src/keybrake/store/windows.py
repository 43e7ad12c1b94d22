"""Cap windows. Pure: the store passes its own clock's `now` (CONTRACT §3.3)."""

from __future__ import annotations

from keybrake.store.base import Window
from keybrake.timefmt import DAY_MS, HOUR_MS, utc_day_start, utc_hour_start


def window_start(window: Window, now_ms: int) -> int:
    if window is Window.DAY:
        return utc_day_start(now_ms)
    if window is Window.HOUR:
        return utc_hour_start(now_ms)
    return 0


def resets_at(window: Window, start_ms: int) -> int | None:
    if window is Window.DAY:
        return start_ms + DAY_MS
    if window is Window.HOUR:
        return start_ms + HOUR_MS
    return None
