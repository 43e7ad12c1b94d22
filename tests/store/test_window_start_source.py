"""On PostgreSQL every window start of a budget counter comes from the database's
`keybrake_window_start` (the reservation's own, `keybrake_reserve`): budget seeding, relabel moves
(`sql_budgets.py`, through `SQLBase._window_starts` in their transaction), the admin usage and the
alert scans (`window_bounds`, which admin/budgets.py `render` and jobs/alert_scans.py
`scan_thresholds` call). Random zones and instants; the function is the reference.

Python's zoneinfo is skewed for the whole test (as the red team's tzskew.py does): every zone
reads another zone's rules, so a window start taken from Python lands in another counter row.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import shutil
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.core.timefmt import DAY_MS
from keybrake.core.windows import Window, window_start
from keybrake.store import open_store
from keybrake.store.base import Store
from tests.harness import store_options
from tests.pg import Databases
from tests.store.budget_books import USD, budget_record, hold, key_record, relabel
from tests.store.contract import Clock
from tests.tzpath import point_zoneinfo_at

pytestmark = pytest.mark.pg_cluster  # its own database: once, in the first pass

LO = int(dt.datetime(2001, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
HI = int(dt.datetime(2099, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)


class Env:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = Clock(LO)
        self.conn = psycopg.connect(url, autocommit=True)
        self.store: Store = self.loop.run_until_complete(self._open(url, data_dir))
        self.n = itertools.count()

    async def _open(self, url: str, data_dir: Path) -> Store:
        return open_store(url, data_dir, migrate=False, clock=self.clock, pg=store_options())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def sql_start(self, window: Window, now: int, tz: str) -> int:
        row = self.conn.execute("SELECT keybrake_window_start(%s, %s, %s)", (window.value, now, tz)).fetchone()
        assert row is not None
        return int(row[0])

    def rows(self, scope: str) -> dict[str, list[tuple[int, int, int]]]:
        got: dict[str, list[tuple[int, int, int]]] = {}
        for cap, ws, used, reserved in self.conn.execute(
            "SELECT cap, window_start, used, reserved FROM counters WHERE scope = %s ORDER BY window_start", (scope,)
        ).fetchall():
            got.setdefault(cap, []).append((int(ws), int(used), int(reserved)))
        return got


@pytest.fixture(scope="module")
def env(pg_databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    url = pg_databases.create()
    e = Env(url, tmp_path_factory.mktemp("ws"))
    yield e
    e.run(e.store.close())
    e.loop.close()
    e.conn.close()
    pg_databases.drop(url)


@pytest.fixture(scope="module")
def zones(env: Env) -> list[str]:
    pg = {r[0] for r in env.conn.execute("SELECT name FROM pg_timezone_names").fetchall()}
    return sorted(z for z in zoneinfo.available_timezones() & pg if not z.startswith(("posix/", "right/")))


SYSTEM_ZONES = Path("/usr/share/zoneinfo")


@pytest.fixture(scope="module")
def skewed(env: Env, zones: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Python reads zone i with the rules of zone i + n/2 (UTC stays UTC); yields the zones."""
    here = [z for z in zones if (SYSTEM_ZONES / z).is_file() and z not in ("UTC", "Etc/UTC")]
    tz = tmp_path_factory.mktemp("tz")
    for n, z in enumerate(here):
        (tz / z).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SYSTEM_ZONES / here[(n + len(here) // 2) % len(here)], tz / z)
    shutil.copy(SYSTEM_ZONES / "UTC", tz / "UTC")
    point_zoneinfo_at([str(tz)])
    try:
        differ = [z for z in ("Europe/Berlin", "Asia/Tokyo", "America/New_York") if z in here]
        assert all(window_start(Window.DAY, LO, z) != env.sql_start(Window.DAY, LO, z) for z in differ)
        yield here
    finally:
        point_zoneinfo_at(None)


@given(data=st.data(), now=st.integers(min_value=LO, max_value=HI))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_seeding_relabel_usage_and_alerts_use_the_databases_window_starts(
    env: Env, skewed: list[str], data: st.DataObject, now: int
) -> None:
    tz = data.draw(st.sampled_from(skewed))
    i = next(env.n)
    env.clock.ms = now
    want = {w: env.sql_start(w, now, tz) for w in Window}
    # usage (admin/budgets.py) and alert scans (jobs/alert_scans.py): one call for every pair
    bounds = env.run(env.store.window_bounds(now, [(w, tz) for w in Window]))
    assert [b[0] for b in bounds] == [want[w] for w in Window]
    # ... and the end each shows (resets_at): the function's next window
    ends: dict[Window, int | None] = {
        w: env.sql_start(w, want[w] + step, tz)
        for w, step in ((Window.DAY, 36 * 3_600_000), (Window.MONTH, 32 * DAY_MS))
    }
    ends[Window.HOUR], ends[Window.TOTAL] = want[Window.HOUR] + 3_600_000, None
    assert [b[1] for b in bounds] == [ends[w] for w in Window]
    assert all(e is None or want[w] < e for w, e in ends.items())
    # seeding: every counter of a new budget in the window the function names
    caps = {"daily_usd_cap": 10 * USD, "monthly_usd_cap": 10 * USD, "daily_request_cap": 5}
    seed = budget_record(f"bud_s{i}", now, scope="label_prefix", value=f"none{i}:", timezone=tz, **caps)
    env.run(env.store.insert_budget(seed))  # covers no key: later examples' holds never meet its caps
    seeded = env.rows(f"budget:bud_s{i}")
    assert {c: [r[0] for r in v] for c, v in seeded.items()} == {
        "daily_usd": [want[Window.DAY]],
        "monthly_usd": [want[Window.MONTH]],
        "daily_requests": [want[Window.DAY]],
        "total_usd": [0],
    }, tz
    # relabel: a key holding $1 in flight joins a budget; its hold lands in the seeded rows
    env.run(env.store.insert_budget(budget_record(f"bud_r{i}", now, scope="label_prefix", value=f"t{i}:", timezone=tz)))
    env.run(env.store.insert_key(key_record(env.store, f"vk_{i}", f"solo{i}"), f"h{i}"))
    assert env.run(hold(env.store, f"vk_{i}", USD)) is not None
    env.run(relabel(env.store, f"vk_{i}", f"t{i}:x"))
    moved = env.rows(f"budget:bud_r{i}")
    assert moved["daily_usd"] == [(want[Window.DAY], 0, USD)], tz
    assert moved["monthly_usd"] == [(want[Window.MONTH], 0, USD)], tz
    assert moved["daily_requests"] == [(want[Window.DAY], 0, 1)], tz
