"""What the role contract suites share: a settable clock, a key, its caps and an audit row.

Each tests/store/test_role_*.py file exercises one role of the store (`keybrake.store.roles`)
through a fixture typed as that role, on every engine (conftest.py); `store` (the whole `Store`)
only arranges and reads back.
"""

from __future__ import annotations

import os

from keybrake.core.timefmt import DAY_MS
from keybrake.core.windows import Window
from keybrake.store.base import AuditRow, CapSpec, KeyRecord
from keybrake.store.base import Clock as StoreClock

DAY0 = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS  # a UTC midnight


class Clock:
    """A clock tests set (Unix ms), injected into the store: windows and expiry follow it."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def key(store: StoreClock, key_id: str = "vk_1") -> KeyRecord:
    """An active Stripe key on credential `default`, labelled t:1, expiring in ten days."""
    return KeyRecord(
        key_id,
        "stripe",
        "default",
        "t:1",
        {},
        {},
        1,
        "active",
        store.now_ms(),
        store.now_ms() + DAY_MS * 10,
        None,
        None,
        None,
    )


def caps(
    key_id: str, amount: int, daily: int | None, total: int | None = None, hourly: int | None = None
) -> list[CapSpec]:
    """The key's daily and total USD caps (µUSD) and its hourly request cap; None = uncapped."""
    return [
        CapSpec("key", key_id, "daily_usd_cap", "daily_usd", Window.DAY, daily, amount, True),
        CapSpec("key", key_id, "total_usd_cap", "total_usd", Window.TOTAL, total, amount, True),
        CapSpec("key", key_id, "max_requests_per_hour", "hourly_requests", Window.HOUR, hourly, 1, False),
    ]


_n = 0


def row(store: StoreClock) -> AuditRow:
    """A fresh in-flight audit row of vk_1 (a unique id per call and process)."""
    global _n
    _n += 1
    return AuditRow(
        id=f"kbr_{_n:08d}{os.getpid()}",
        ts=store.now_ms(),
        method="POST",
        path="/v1/charges",
        verdict="in_flight",
        key_id="vk_1",
    )
