"""Pointing this process's zoneinfo at other time-zone rules, for tests that simulate a host
whose tz database differs from PostgreSQL's."""

from __future__ import annotations

import zoneinfo

from keybrake.core import windows


def point_zoneinfo_at(path: list[str] | None) -> None:
    """Read zones from the directories `path` (None: the default search path again), with every
    cache that holds zones cleared (zoneinfo's and `keybrake.core.windows.zone`)."""
    if path is None:
        zoneinfo.reset_tzpath()
    else:
        zoneinfo.reset_tzpath(path)
    zoneinfo.ZoneInfo.clear_cache()
    windows.zone.cache_clear()
