"""GET /v1/spend and `keybrake spend`: gross and net per key, label prefix, vendor, day, hour."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from click.testing import CliRunner

from keybrake.cli import main
from keybrake.core.timefmt import rfc3339
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def post(kb: KeybrakeThread, key: dict[str, Any], path: str, body: str) -> httpx.Response:
    return httpx.post(
        f"{kb.url}/stripe{path}", content=body.encode(), headers={**FORM, "Authorization": f"Bearer {key['key']}"}
    )


def spend(kb: KeybrakeThread, **q: Any) -> dict[Any, dict[str, Any]]:
    q.setdefault("since", "2026-11-01T00:00:00Z")
    with kb.admin() as c:
        r = c.get("/v1/spend", params=q)
        assert r.status_code == 200, r.text
        return {d["group"]: d for d in r.json()["data"]}


def test_spend_groups_gross_and_net(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    ny = ZoneInfo("America/New_York")
    now = [int(dt.datetime(2026, 11, 20, 22, 0, tzinfo=ny).timestamp() * 1000)]  # 03:00 UTC on the 21st
    with KeybrakeThread(tmp_path / "d", clock=lambda: now[0]) as kb:
        kb.add_credential(fake_stripe.base_url)
        a1 = kb.issue({"daily_usd_cap": 100}, label="tenant-a:billing:run-1", expires_in="7d")
        a2 = kb.issue({"daily_usd_cap": 100}, label="tenant-a:support:run-2", expires_in="7d")
        b1 = kb.issue({"daily_usd_cap": 3}, label="tenant-b:billing:run-3", expires_in="7d")
        ch = post(kb, a1, "/v1/charges", "amount=1000&currency=usd&source=tok_visa").json()
        assert post(kb, a1, "/v1/refunds", f"charge={ch['id']}&amount=400&currency=usd").status_code == 200
        assert post(kb, a2, "/v1/charges", "amount=250&currency=usd&source=tok_visa").status_code == 200
        now[0] += 3 * 3_600_000  # 01:00 in New York on the 21st
        assert post(kb, b1, "/v1/charges", "amount=300&currency=usd&source=tok_visa").status_code == 200
        assert post(kb, b1, "/v1/charges", "amount=100&currency=usd&source=tok_visa").status_code == 429
        assert post(kb, b1, "/v1/charges", "amount=-5&currency=usd").status_code == 400

        by_label = spend(kb, group_by="label:1")
        a = by_label["tenant-a"]
        assert (a["charged_usd"], a["refunded_usd"], a["gross_usd"], a["net_usd"]) == (12.5, 4, 16.5, 8.5)
        assert a["requests"] == 3 and a["denied"] == 0 and a["cap_hits"] == 0
        b = by_label["tenant-b"]
        assert (b["gross_usd"], b["requests"], b["denied"], b["cap_hits"]) == (3, 3, 1, 1)
        assert list(by_label) == ["tenant-a", "tenant-b"]  # biggest spender first
        assert set(spend(kb, group_by="label:2")) == {"tenant-a:billing", "tenant-a:support", "tenant-b:billing"}
        assert spend(kb, group_by="key")[a1["id"]]["net_usd"] == 6
        assert spend(kb, group_by="vendor")["stripe"]["gross_usd"] == 19.5
        assert set(spend(kb, group_by="label:1", label_prefix="tenant-b:")) == {"tenant-b"}
        days_utc = spend(kb, group_by="day")
        assert list(days_utc) == ["2026-11-21"]
        days_ny = spend(kb, group_by="day", timezone="America/New_York")
        assert days_ny["2026-11-20"]["gross_usd"] == 16.5 and days_ny["2026-11-21"]["gross_usd"] == 3
        hours = spend(kb, group_by="hour", timezone="America/New_York")
        assert "2026-11-20T22:00:00-05:00" in hours and "2026-11-21T01:00:00-05:00" in hours
        since = int(dt.datetime(2026, 11, 21, 0, 30, tzinfo=ny).timestamp())
        assert set(spend(kb, group_by="label:1", since=since)) == {"tenant-b"}
        with kb.admin() as c:
            assert c.get("/v1/spend", params={"group_by": "week"}).status_code == 400
            assert c.get("/v1/spend", params={"group_by": "day", "timezone": "Nowhere/Else"}).status_code == 400
            assert c.get("/v1/spend", params={"group_by": "key", "color": "red"}).status_code == 400
            # A report that would scan without bound is refused, naming the field (issue 12, kind 5).
            for q in ({"group_by": "key"}, {"group_by": "key", "since": "2025-11-01T00:00:00Z"}):
                r = c.get("/v1/spend", params=q)
                assert r.status_code == 400 and r.json()["error"]["field"] == "since", r.text
            year = {"since": "2025-11-21T00:00:00Z", "until": "2026-11-21T12:00:00Z"}
            assert c.get("/v1/spend", params={"group_by": "key", **year}).status_code == 200

    # On the host, all-time totals are allowed (no --since): off the proxy's loop and pool.
    out = CliRunner().invoke(main, ["spend", "--group-by", "label:1", "--data-dir", str(tmp_path / "d")])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split()[:3] == ["group", "gross_usd", "net_usd"]
    assert lines[1].split()[:3] == ["tenant-a", "16.5", "8.5"]


# -- operator reads never stall agents (issue 12, kind 5) ---------------------------------------

BULK = 200_000  # SQLite: enough to show the stall
BULK_PG = 400_000  # PostgreSQL scans faster: reports long enough to hold a pool of 4


def bulk_audit(kb: KeybrakeThread, n: int, ts: int) -> None:
    """`n` audit rows at `ts`, written by the database itself in one statement (seconds, not minutes)."""
    from keybrake.store.ids import audit_id_floor

    prefix = audit_id_floor(ts)[:14]
    if kb.settings.database_url:
        import psycopg

        with psycopg.connect(kb.settings.database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO audit"
                " (id, ts, key_id, label, vendor, credential, method, path, verdict, cost_usd, reserved_usd,"
                " cost_source, cost_kind) SELECT %s || lpad(i::text, 16, '0'), %s, 'vk_bulk' || (i %% 50),"
                " 'tenant-' || (i %% 7) || ':agent:run-' || (i %% 50), 'stripe', 'default', 'POST', '/v1/charges',"
                " CASE WHEN i %% 9 = 0 THEN 'cap_exceeded' ELSE 'allowed' END, i, i, 'response', 'charge'"
                " FROM generate_series(0, %s) AS i",
                (prefix, ts, n - 1),
            )
            conn.execute("ANALYZE audit")
        return
    db = sqlite3.connect(kb.settings.data_dir / "keybrake.db", isolation_level=None)
    try:
        db.execute(
            "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < ?) INSERT INTO audit"
            " (id, ts, key_id, label, vendor, credential, method, path, verdict, cost_usd, reserved_usd,"
            " cost_source, cost_kind) SELECT ? || printf('%016d', i), ?, 'vk_bulk' || (i % 50),"
            " 'tenant-' || (i % 7) || ':agent:run-' || (i % 50),"
            " 'stripe', 'default', 'POST', '/v1/charges', CASE WHEN i % 9 = 0 THEN 'cap_exceeded' ELSE 'allowed' END,"
            " i, i, 'response', 'charge' FROM c",
            (n - 1, prefix, ts),
        )
    finally:
        db.close()


@pytest.mark.timing
def test_reports_on_a_large_audit_table_do_not_stall_charges(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    """Issue 12, kind 5: with a large audit table, four reports running at once (spend by label
    and by day, an audit page whose filter matches nothing, a CSV export) while an agent charges
    every 20 ms. Before: on SQLite the reports ran on the event loop (charges stalled 2.7-4.1 s at
    1M rows); on PostgreSQL with a pool of 4 they held every connection (charges waited 1.6 s)."""
    now = int(time.time() * 1000)
    since = rfc3339(now - 3_600_000)
    with KeybrakeThread(tmp_path / "d", pg_pool_size=4) as kb:
        kb.add_credential(fake_stripe.base_url)
        t0 = time.monotonic()
        bulk_audit(kb, BULK_PG if kb.settings.database_url else BULK, now - 60_000)
        print(f"bulk insert: {time.monotonic() - t0:.1f} s")
        key = kb.issue({"daily_usd_cap": 100_000})
        auth = {**FORM, "Authorization": f"Bearer {key['key']}"}
        reports = [
            ("/v1/spend", {"group_by": "label:1", "since": since}),
            ("/v1/spend", {"group_by": "day", "since": since}),
            ("/v1/audit", {"label_prefix": "nobody:", "limit": "10"}),
            ("/v1/audit/export", {"format": "csv", "idempotency_key_prefix": "none-"}),
        ]
        stop = threading.Event()
        done: list[float] = []
        errors: list[str] = []

        def run_report(path: str, q: dict[str, str]) -> None:
            with kb.admin() as c:
                while not stop.is_set():
                    t = time.monotonic()
                    r = c.get(path, params=q, timeout=60)
                    if r.status_code != 200:
                        errors.append(f"{path}: {r.status_code} {r.text[:200]}")
                    done.append(time.monotonic() - t)

        latencies: list[float] = []
        with httpx.Client(timeout=30) as agent:

            def post() -> httpx.Response:
                return agent.post(
                    f"{kb.url}/stripe/v1/charges", content=b"amount=100&currency=usd&source=tok_visa", headers=auth
                )

            assert post().status_code == 200  # warm
            baseline = []  # the same machine, the same moment, no reports
            for _ in range(25):
                t = time.monotonic()
                assert post().status_code == 200
                baseline.append(time.monotonic() - t)
                time.sleep(0.02)
            # Two operators' dashboards: each of the four reports twice at once, more than the pool holds.
            threads = [threading.Thread(target=run_report, args=r) for r in reports * 2]
            for th in threads:
                th.start()
            end = time.monotonic() + 3.0
            while time.monotonic() < end or len(done) < len(reports):
                t = time.monotonic()
                assert post().status_code == 200
                latencies.append(time.monotonic() - t)
                time.sleep(0.02)
            stop.set()
            for th in threads:
                th.join(60)
    assert not errors, errors
    worst = max(latencies)
    median = sorted(latencies)[len(latencies) // 2]
    quiet = sorted(baseline)[len(baseline) // 2]
    print(f"{len(latencies)} charges during {len(done)} reports (slowest report {max(done):.2f} s):"
          f" max {worst * 1000:.0f} ms, median {median * 1000:.0f} ms; quiet {quiet * 1000:.0f} ms")  # fmt: skip
    assert len(done) >= len(reports)
    # Before (a quiet machine): SQLite max 1.17 s, median 0.73 s; PostgreSQL (pool of 4) median
    # 0.24 s against 0.05 s without reports in one run, 0.07 s in another (load-dependent: the
    # deterministic PostgreSQL regression is test_a_report_runs_apart_and_stops_at_its_timeout,
    # one pool connection). After: max 0.07-0.15 s / 0.18-0.32 s, median 0.05 s / 0.06-0.08 s.
    # The median is held against the same moment's baseline, so a loaded machine cannot fail it.
    assert median < 2 * quiet + 0.05, f"charges took {median:.2f} s (median) beside reports, {quiet:.2f} s without"
    # The issue's bound on the worst charge: 0.5 s on SQLite, where the reports ran on the event
    # loop; on PostgreSQL they queued for the pool (1.6 s in the issue), a CPU shared with the
    # database's own scans gets 1 s.
    bound = 1.0 if kb.settings.database_url else 0.5
    assert worst < bound, f"a charge waited {worst:.2f} s behind operator reports"


def test_generated_report_ranges_are_bounded_or_refused_and_exact(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    """Generated spend requests against rows spread over 400 days: a request without `since` or
    spanning more than 366 days is refused (400 naming `since`); every other one answers, off
    the event loop, exactly the reference sums of the rows in [since, until)."""
    import asyncio
    import random

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from keybrake.store import open_store
    from keybrake.store.base import AuditRow
    from keybrake.store.ids import new_audit_id
    from tests import harness

    now_s = int(time.time())
    rnd = random.Random(12)
    rows = [
        AuditRow(
            id=new_audit_id(ts), ts=ts, method="POST", path="/v1/charges", verdict="allowed",
            key_id=f"vk_g{rnd.randrange(3)}", vendor="stripe", cost_usd=rnd.randrange(1, 5_000_000),
            cost_kind="charge",
        )
        for ts in sorted((now_s - rnd.randrange(400 * 86_400)) * 1000 + rnd.randrange(1000) for _ in range(80))
    ]  # fmt: skip
    with KeybrakeThread(tmp_path / "d") as kb:
        store = open_store(kb.settings.database_url, kb.settings.data_dir, migrate=False)

        async def fill() -> None:
            for r in rows:
                await store.insert_audit(r)
            await store.close()

        asyncio.run(fill())
        days = st.one_of(st.none(), st.integers(0, 800))

        @settings(max_examples=harness.examples(60), deadline=None, suppress_health_check=list(HealthCheck))
        @given(days, days, st.sampled_from(["key", "vendor"]))
        def check(since_ago: int | None, until_ago: int | None, group_by: str) -> None:
            q: dict[str, Any] = {"group_by": group_by}
            since = until = None
            if since_ago is not None:
                since = (now_s - since_ago * 86_400) * 1000
                q["since"] = str(since // 1000)
            if until_ago is not None:
                until = (now_s - until_ago * 86_400) * 1000
                q["until"] = str(until // 1000)
            with kb.admin() as c:
                r = c.get("/v1/spend", params=q)
            end = until if until is not None else now_s * 1000 + 60_000
            if since is not None and until is not None and until < since:
                assert r.status_code == 400 and r.json()["error"]["field"] == "until", r.text
                return
            if since is None or end - since > 366 * 86_400_000:
                assert r.status_code == 400 and r.json()["error"]["field"] == "since", r.text
                return
            assert r.status_code == 200, r.text
            want: dict[str, int] = {}
            for row in rows:
                if since <= row.ts and (until is None or row.ts < until):
                    g = row.key_id if group_by == "key" else "stripe"
                    want[str(g)] = want.get(str(g), 0) + row.cost_usd
            got = {d["group"]: round(d["gross_usd"] * 1_000_000) for d in r.json()["data"]}
            assert got == want

        check()


@pytest.mark.timing
async def test_a_report_runs_apart_and_stops_at_its_timeout(tmp_path: Path) -> None:
    """The mechanism on each engine: a report statement runs off the event loop and off the
    reservations' connections (one of each here), and is stopped at KEYBRAKE_REPORT_TIMEOUT_MS."""
    import asyncio

    import pytest

    from keybrake.core.errors import EnforcementUnavailable
    from keybrake.store import open_store
    from keybrake.store.pg import PGOptions
    from tests import harness

    opts = PGOptions(pool_size=1, report_pool_size=1, report_timeout_ms=1000)
    store = open_store(harness.DATABASE_URL, tmp_path, migrate=False, pg=opts)
    slow = (
        "SELECT pg_sleep(5)"
        if harness.DATABASE_URL
        else "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 1000000000)"
        " SELECT count(*) FROM c"
    )
    try:
        t0 = time.monotonic()
        report = asyncio.ensure_future(store._run_report(lambda: store._read(slow)))  # type: ignore[attr-defined]
        await asyncio.sleep(0.1)
        t1 = time.monotonic()
        for _ in range(5):  # the reservations' connection (and, on SQLite, the event loop) stay free
            await store.ping()
        pinged = time.monotonic() - t1
        assert not report.done(), f"5 pings took {pinged:.2f} s: they waited for the report"  # it runs 1 s
        with pytest.raises(EnforcementUnavailable, match="KEYBRAKE_REPORT_TIMEOUT_MS"):
            await report
        assert 0.95 < time.monotonic() - t0 < 4.0  # at its timeout (the statement alone runs 5 s or more)
        assert await store._run_report(lambda: store._read("SELECT 1"))  # type: ignore[attr-defined]
    finally:
        await store.close()
