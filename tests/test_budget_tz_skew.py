"""Red team (issue 14, tzskew.py): Keybrake's Python and PostgreSQL read different tzdata for a
budget's zone. Reservations take window starts from the database (`keybrake_window_start`); budget
seeding, relabel moves, the admin usage and the alert scans took them from Python, so they wrote
and read another counter row: a new $10/day budget ignored what covered keys had spent ($14 moved).
Each engine now has one source (`SQLBase._window_starts`): the database's on PostgreSQL.

The skew is simulated in-process: Python's zoneinfo pointed at a directory whose Europe/Berlin
holds Pacific/Kiritimati's rules (+14), as tzskew.py does with PYTHONTZPATH. On SQLite (Python
everywhere) the same scenario is the reference.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from keybrake.core.windows import Window, window_start
from tests.fakes.receiver import ReceiverThread
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for
from tests.tzpath import point_zoneinfo_at

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ZONE = "Europe/Berlin"


@pytest.fixture
def skewed_berlin(tmp_path: Path) -> Iterator[None]:
    """This process's Europe/Berlin is Kiritimati (+14) until the test ends."""
    tz = tmp_path / "tz"
    (tz / "Europe").mkdir(parents=True)
    shutil.copy("/usr/share/zoneinfo/Pacific/Kiritimati", tz / "Europe" / "Berlin")
    shutil.copy("/usr/share/zoneinfo/UTC", tz / "UTC")
    point_zoneinfo_at([str(tz)])
    try:
        yield
    finally:
        point_zoneinfo_at(None)


def charge(kb: KeybrakeThread, key: dict[str, Any]) -> int:
    r = httpx.post(
        f"{kb.url}/stripe/v1/charges",
        content=b"amount=100&currency=usd&source=tok_visa",
        headers={**FORM, "Authorization": f"Bearer {key['key']}"},
        timeout=30,
    )
    return r.status_code


def database_day_start(kb: KeybrakeThread, now_ms: int) -> int | None:
    """PostgreSQL's `keybrake_window_start` for the zone's day (None on SQLite)."""
    if not kb.settings.database_url:
        return None
    with psycopg.connect(kb.settings.database_url, autocommit=True) as c:
        row = c.execute("SELECT keybrake_window_start('day', %s, %s)", (now_ms, ZONE)).fetchone()
    assert row is not None
    return int(row[0])


def test_a_budget_created_under_tzdata_skew_counts_what_covered_keys_spent(
    tmp_path: Path, fake_stripe: FakeStripe, skewed_berlin: None
) -> None:
    with ReceiverThread() as hook, KeybrakeThread(tmp_path / "d", alert_interval_s=0.1) as kb:
        kb.add_credential(fake_stripe.base_url)
        now = int(time.time() * 1000)
        python_start = window_start(Window.DAY, now, ZONE)
        pg_start = database_day_start(kb, now)
        if pg_start is not None:
            assert python_start != pg_start  # the skew is real: the two sources disagree
        with kb.admin() as c:
            r = c.post("/v1/alerts", json={"type": "webhook", "url": hook.base_url + "/h", "events": ["cap.threshold"]})
            assert r.status_code == 201, r.text
        a = kb.issue({"daily_usd_cap": 100}, label="team:x")
        b = kb.issue({"daily_usd_cap": 100}, label="solo:y")
        assert [charge(kb, a) for _ in range(6)] == [200] * 6
        assert [charge(kb, b) for _ in range(2)] == [200] * 2
        with kb.admin() as c:
            r = c.post(
                "/v1/budgets",
                json={"name": "b", "scope": {"label_prefix": "team:"}, "daily_usd_cap": 10, "timezone": ZONE},
            )
            assert r.status_code == 201, r.text
            bud = r.json()
            assert bud["usage"]["daily_usd"]["used"] == 6  # seeded in the row reservations use
            r = c.patch(f"/v1/keys/{b['id']}", json={"label": "team:y"})  # joins: its $2 move in
            assert r.status_code == 200, r.text
            assert c.get(f"/v1/budgets/{bud['id']}").json()["usage"]["daily_usd"]["used"] == 8
        got = [charge(kb, a) for _ in range(6)]
        assert got == [200, 200, 429, 429, 429, 429]
        assert len([q for q in fake_stripe.requests if q.path == "/v1/charges"]) == 10
        with kb.admin() as c:
            usage = c.get(f"/v1/budgets/{bud['id']}").json()["usage"]["daily_usd"]
        assert (usage["used"], usage["reserved"], usage["limit"]) == (10, 0, 10)
        if pg_start is not None:  # the window ends where the database's next day starts
            end = database_day_start(kb, pg_start + 36 * 3_600_000)
            assert end is not None
            assert usage["resets_at"] == dt.datetime.fromtimestamp(end / 1000, dt.UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.000Z"
            )
        # The alert scan reads the same row: the budget's 100 % threshold fires, for that window.
        fired = wait_for(
            lambda: [
                x.json["data"]
                for x in hook.fake.requests
                if x.method == "POST"
                and (x.json or {}).get("type") == "cap.threshold"
                and x.json["data"]["scope"] == "budget"
                and x.json["data"]["threshold_pct"] == 100
            ]
        )
        assert fired[0]["id"] == bud["id"]
        if pg_start is not None:
            want = dt.datetime.fromtimestamp(pg_start / 1000, dt.UTC)
            got_start = dt.datetime.fromisoformat(fired[0]["window_start"].replace("Z", "+00:00"))
            assert got_start == want
        rows = kb.query("SELECT window_start FROM counters WHERE scope LIKE 'budget:%' AND cap = 'daily_usd'")
        assert [r[0] for r in rows] == [pg_start if pg_start is not None else python_start]
