"""A budget's time zone must be one reservations can compute windows in (red team, issue 14):
leap-second zones (`right/…`) are refused on every engine (PostgreSQL refuses them inside
`keybrake_window_start`, which made every covered key's reservation 503); on PostgreSQL a zone
the database does not know is refused at create/PATCH; both answer as every field error of the
admin API does (422 `validation_error`, `field` "timezone", the zone in the message). A budget
already holding such a zone (an upgrade) is named in an ERROR at start-up.
"""

from __future__ import annotations

import asyncio
import shutil
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keybrake.admin.budgets import log_unusable_zones
from keybrake.core import windows
from keybrake.store import open_store
from keybrake.store.records import BudgetRecord
from tests.harness import KeybrakeThread, store_options

MARS = "Mars/Olympus_Mons"  # a zone only this process's Python knows (see `python_only_zone`)


@pytest.mark.parametrize("tz", ["right/UTC", "right/Europe/Berlin"])
def test_leap_second_zones_are_refused_at_create_and_patch(kb: KeybrakeThread, tz: str) -> None:
    with kb.admin() as c:
        r = c.post("/v1/budgets", json={"name": "b", "scope": "all", "daily_usd_cap": 10, "timezone": tz})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["field"] == "timezone" and tz in err["message"] and "leap-second" in err["message"]
        ok = c.post("/v1/budgets", json={"name": "b", "scope": "all", "daily_usd_cap": 10, "timezone": "UTC"})
        assert ok.status_code == 201, ok.text
        r = c.patch(f"/v1/budgets/{ok.json()['id']}", json={"timezone": tz})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "timezone" and tz in r.json()["error"]["message"]
        assert c.get(f"/v1/budgets/{ok.json()['id']}").json()["timezone"] == "UTC"


@pytest.fixture
def python_only_zone(tmp_path: Path) -> Iterator[None]:
    """This process's Python knows MARS (UTC's rules); PostgreSQL does not."""
    tz = tmp_path / "tz"
    (tz / "Mars").mkdir(parents=True)
    shutil.copy("/usr/share/zoneinfo/UTC", tz / MARS)
    shutil.copy("/usr/share/zoneinfo/UTC", tz / "UTC")
    zoneinfo.reset_tzpath([str(tz)])
    zoneinfo.ZoneInfo.clear_cache()
    windows.zone.cache_clear()
    try:
        yield
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()
        windows.zone.cache_clear()


def test_a_zone_the_database_does_not_know_is_refused_with_its_name(kb: KeybrakeThread, python_only_zone: None) -> None:
    body = {"name": "b", "scope": "all", "daily_usd_cap": 10, "timezone": MARS}
    with kb.admin() as c:
        r = c.post("/v1/budgets", json=body)
        if not kb.settings.database_url:
            assert r.status_code == 201, r.text  # SQLite: Python's zoneinfo is the one source
            return
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["field"] == "timezone" and MARS in err["message"]
        ok = c.post("/v1/budgets", json={**body, "timezone": "UTC"})
        assert ok.status_code == 201, ok.text
        r = c.patch(f"/v1/budgets/{ok.json()['id']}", json={"timezone": MARS})
        assert r.status_code == 422 and MARS in r.json()["error"]["message"], r.text
        assert c.get(f"/v1/budgets/{ok.json()['id']}").json()["timezone"] == "UTC"


def test_a_stored_budget_with_an_unusable_zone_is_named_at_start_up(tmp_path: Path) -> None:
    """An upgrade: a budget created before the validator refused `right/` zones."""
    data = tmp_path / "d"
    with KeybrakeThread(data) as kb:
        url = kb.settings.database_url

    async def arrange() -> int:
        store = open_store(url, data, migrate=False, pg=store_options())
        try:
            now = store.now_ms()
            bad = BudgetRecord("bud_leap", "leapy", "all", None, None, None, 5_000_000, None, "UTC", now, now)
            await store.insert_budget(bad)
            # Written as an older release could: no validator, no database check.
            inner: Any = store
            await inner._run(
                lambda: inner._write("UPDATE budgets SET timezone = ? WHERE id = ?", ("right/UTC", "bud_leap"))
            )
            good = BudgetRecord("bud_fine", "fine", "all", None, 5_000_000, None, None, None, "UTC", now, now)
            await store.insert_budget(good)
            return await log_unusable_zones(store)
        finally:
            await store.close()

    assert asyncio.run(arrange()) == 1
    with KeybrakeThread(data) as kb:
        text = kb.logs.text()
    lines = [line for line in text.splitlines() if "budget time zone unusable" in line]
    assert len(lines) == 1 and "bud_leap" in lines[0] and "right/UTC" in lines[0], text
    assert '"level":"error"' in lines[0]
    assert "bud_fine" not in text
