"""The audit statements behind the console's audit search, run timeline, runs list and exports use an
index (SQLite's EXPLAIN QUERY PLAN): none reads the audit table with a full `SCAN audit`, so a
regression fails here without timing anything (bench/console_pages.py times them on 1,000,000 rows).

The pages are loaded over HTTP from a real Keybrake; every statement its store runs on the audit
table while they answer is recorded with its parameters and explained on the same database file.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keybrake.admin import audit as admin_audit
from keybrake.console.routes import audit as audit_route
from keybrake.store.sqlite import SQLiteStore
from tests.console.test_sessions import signed_in
from tests.harness import KeybrakeThread

pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """Every (sql, params) the SQLite store reads on the audit table while the list is `on`."""
    seen: list[tuple[str, Any]] = []
    real = SQLiteStore._read

    def read(self: SQLiteStore, sql: str, params: Any = ()) -> list[Any]:
        if re.search(r"\bFROM audit\b", sql):
            seen.append((sql, params))
        return real(self, sql, params)

    monkeypatch.setattr(SQLiteStore, "_read", read)
    yield seen


def _plan(db: sqlite3.Connection, sql: str, params: Any) -> list[str]:
    return [str(r[3]) for r in db.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()]


def _next(html: str, rel: str) -> str:
    m = re.search(rf'href="([^"]+)" rel="{rel}"', html)
    assert m is not None, rel
    return m.group(1).replace("&amp;", "&")


def test_console_audit_statements_use_an_index(
    ckb: KeybrakeThread, recorded: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a scan window smaller than the table, so the bounded path (a large table's) is the one explained
    monkeypatch.setattr(audit_route, "SCAN_WINDOW", 8)
    monkeypatch.setattr(audit_route, "PAGE", 5)
    monkeypatch.setattr(admin_audit, "EXPORT_WINDOW", 8)  # the API's export, likewise
    key = ckb.issue({"daily_usd_cap": 100}, metadata={"agent_run_id": "run-plan"})
    denied = ckb.issue({"allowed_endpoints": ["GET /v1/charges"]}, metadata={"agent_run_id": "run-denied"})
    for k in (key, denied):
        for _ in range(12):
            httpx.get(f"{ckb.url}/stripe/v1/customers", headers={"Authorization": f"Bearer {k['key']}"})
    recorded.clear()
    with signed_in(ckb) as c:
        first = c.get("/console/audit")
        assert first.status_code == 200
        older = c.get(_next(first.text, "next"))
        c.get(_next(older.text, "prev"))
        for params in (
            {"key_id": key["id"]}, {"agent_run_id": "run-plan"}, {"vendor": "stripe", "verdict": "denied"},
            {"verdict": "cap_exceeded", "since": "2020-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z"},
            {"label_prefix": "test:", "error_code": "endpoint_not_allowed"},
        ):  # fmt: skip
            page = c.get("/console/audit", params=params)
            assert page.status_code == 200, params
        assert c.get("/console/audit/export", params={"vendor": "stripe", "format": "csv"}).status_code == 200
        assert c.get("/console/runs").status_code == 200
        timeline = c.get("/console/runs/run-plan")
        assert timeline.status_code == 200
        assert c.get("/console/runs/run-plan/export", params={"format": "jsonl"}).status_code == 200
    assert len(recorded) >= 15
    with sqlite3.connect(ckb.settings.data_dir / "keybrake.db") as db:
        for sql, params in recorded:
            plan = _plan(db, sql, params)
            assert not any(re.match(r"SCAN audit\b", step) for step in plan), (sql, plan)
        # the timeline and its totals are read on the run index, oldest first, without sorting
        run_reads = [(s, p) for s, p in recorded if "agent_run_id = ?" in s]
        assert run_reads
        for sql, params in run_reads:
            steps = " | ".join(_plan(db, sql, params))
            assert "ix_audit_run" in steps and "TEMP B-TREE" not in steps, (sql, steps)
