"""PostgreSQL's one-statement reservation (`keybrake_reserve`, store/pg_reserve.py) against the
shared Python reservation (`ReserveQueries.reserve`, the reference model), and the SQL window
and audit-id functions against `core.windows.window_start` and `store.ids.audit_id_floor`.
"""

from __future__ import annotations

import copy
import datetime as dt
import zoneinfo
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from keybrake.core.ledger import LedgerEntry
from keybrake.core.windows import Window, window_start
from keybrake.store.ids import audit_id_floor, new_audit_id
from keybrake.store.records import AuditRow, CapSpec
from keybrake.store.reservations import DedupCheck, ObjectGuard, RetryCheck
from keybrake.store.sql_reserve import ReserveQueries
from tests.harness import examples
from tests.pg import Databases
from tests.store.contract import DAY0
from tests.store.pg_diff import Pair, pair_fixture  # noqa: F401  (the `pair` fixture)

DIFF = settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Zones whose DST transitions fall at (or across) local midnight, and a few ordinary ones.
MIDNIGHT_ZONES = (
    "America/Santiago",
    "America/Asuncion",
    "America/Havana",
    "America/Sao_Paulo",
    "Asia/Beirut",
    "Asia/Tehran",
    "Asia/Damascus",
    "Asia/Amman",
    "Africa/Cairo",
    "America/Scoresbysund",
    "Pacific/Apia",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    # IANA zones whose names PostgreSQL also knows as fixed-offset abbreviations
    "CET",
    "EET",
    "MET",
    "WET",
    "EST5EDT",
)

# Brings its own PostgreSQL databases (both engines' passes would run it alike): once, in the first pass.
pytestmark = pytest.mark.pg_cluster


@pytest.fixture(scope="module")
def conn(pg_databases: Databases) -> Iterator[psycopg.Connection[Any]]:
    url = pg_databases.create()
    with psycopg.connect(url, autocommit=True) as c:
        yield c
    pg_databases.drop(url)


@pytest.fixture(scope="module")
def zones(conn: psycopg.Connection[Any]) -> list[str]:
    pg = {r[0] for r in conn.execute("SELECT name FROM pg_timezone_names").fetchall()}
    return sorted(z for z in zoneinfo.available_timezones() & pg if not z.startswith(("posix/", "right/")))


@given(data=st.data(), now=st.integers(min_value=0, max_value=4_102_444_800_000))
@example(data=None, now=575_503_200_000).via("CET read as the abbreviation +01:00, not the zone")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_sql_window_start_is_pythons(
    conn: psycopg.Connection[Any], zones: list[str], data: st.DataObject, now: int
) -> None:
    tz = data.draw(st.sampled_from(zones)) if data is not None else "CET"
    for window in Window:
        got = conn.execute("SELECT keybrake_window_start(%s, %s, %s)", (window.value, now, tz)).fetchone()
        assert got is not None and got[0] == window_start(window, now, tz), (window, now, tz)


@pytest.mark.parametrize("tz", MIDNIGHT_ZONES)
def test_sql_window_start_across_dst_midnights(conn: psycopg.Connection[Any], tz: str) -> None:
    """Every hour over 2019–2028 (the transitions at midnight included), in one query."""
    start = int(dt.datetime(2019, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    end = int(dt.datetime(2029, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    step = 60 * 60_000
    rows = conn.execute(
        "SELECT n, keybrake_window_start('day', n, %s), keybrake_window_start('month', n, %s)"
        " FROM generate_series(%s::bigint, %s::bigint, %s::bigint) n",
        (tz, tz, start, end, step),
    ).fetchall()
    assert len(rows) > 80_000
    bad = [
        (n, d, m) for n, d, m in rows if d != window_start(Window.DAY, n, tz) or m != window_start(Window.MONTH, n, tz)
    ]
    assert bad == []


@given(ts=st.integers(min_value=0, max_value=2**48 - 1))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_sql_audit_id_floor_is_pythons(conn: psycopg.Connection[Any], ts: int) -> None:
    got = conn.execute("SELECT keybrake_audit_id_floor(%s)", (ts,)).fetchone()
    assert got is not None and got[0] == audit_id_floor(ts)


# -- reserve: the function against the shared path, over generated keys, budgets, caps, states --

ZONES = ("UTC", "America/New_York", "Asia/Tokyo", "Pacific/Chatham")
LIMIT = st.one_of(st.none(), st.integers(0, 3000))
SMALL = st.integers(0, 1500)


@st.composite
def scenarios(draw: st.DrawFn, ok_path: bool = False) -> dict[str, Any]:
    """A key, its credential, budgets, counters and earlier rows; `ok_path`: a key that reserves."""
    now = DAY0 + draw(st.integers(0, 3 * 86_400_000))
    budgets = []
    for i in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["all", "label_prefix", "vendor", "credential"]))
        value = {
            "all": None,
            "label_prefix": draw(st.sampled_from(["t:", "team-a/", "", "zz"])),
            "vendor": draw(st.sampled_from(["stripe", "twilio"])),
            "credential": draw(st.sampled_from(["default", "other"])),
        }[kind]
        caps = [draw(LIMIT), draw(LIMIT), draw(LIMIT), draw(st.one_of(st.none(), st.integers(0, 3)))]
        budgets.append((f"bud_{i}", kind, value, caps, draw(st.sampled_from(ZONES))))
    out = {
        "now": now,
        "status": draw(st.sampled_from(["active"] * 12 + ["revoked"])),
        "expired": draw(st.integers(0, 12)) == 0,
        "stored_version": draw(st.sampled_from([1] * 12 + [2])),
        "label": draw(st.sampled_from([None, "t:1", "team-a/x", "team-b"])),
        "vendor": draw(st.sampled_from(["stripe", "twilio"])),
        "credential": draw(st.sampled_from(["default", "other"])),
        "cred_row": draw(st.sampled_from(["same", "same", "other_gen", "none"])),
        "amount": draw(SMALL),
        "key_caps": (draw(LIMIT), draw(LIMIT), draw(st.one_of(st.none(), st.integers(0, 3))), draw(LIMIT)),
        "sends": draw(st.booleans()),
        "budgets": budgets,
        "prefill": draw(st.lists(st.tuples(st.integers(0, 7), SMALL, SMALL), max_size=4)),
        "retry": draw(
            st.sampled_from([None, "none", "in_flight", "outcome_unknown", "allowed200", "allowed402", "allowed500"])
        ),
        "dedup": draw(st.sampled_from([None] * 4 + ["none", "live_in_flight", "live_answered", "expired"])),
        "guard": draw(st.sampled_from([None] * 6 + ["free", "busy", "fact_same", "fact_changed", "fact_missing"])),
    }
    if ok_path:
        out.update(status="active", expired=False, stored_version=1)
        out.update(retry=draw(st.sampled_from([None, "none", "allowed500", "allowed200"])))
        out.update(dedup=draw(st.sampled_from([None, "none", "expired"])), guard=draw(st.sampled_from([None, "free"])))
    return out


def _key_caps(s: dict[str, Any]) -> list[CapSpec]:
    daily, total, hourly, sends = s["key_caps"]
    caps = [
        CapSpec("key", "vk_1", "daily_usd_cap", "daily_usd", Window.DAY, daily, s["amount"], True),
        CapSpec("key", "vk_1", "total_usd_cap", "total_usd", Window.TOTAL, total, s["amount"], True),
        CapSpec("key", "vk_1", "max_requests_per_hour", "hourly_requests", Window.HOUR, hourly, 1, False),
    ]
    if s["sends"]:
        caps.append(CapSpec("key", "vk_1", "daily_send_cap", "daily_sends", Window.DAY, sends, 1, False))
    return caps


# amount_counted as the store reads it back (a SUM of bigints: a Decimal)
FACT = LedgerEntry("pi_1", "payment_intent", "cus_1", None, "usd", 500, Decimal(0), None, None)  # type: ignore[arg-type]


def _seed(s: dict[str, Any], caps: list[CapSpec]) -> list[tuple[str, tuple[Any, ...]]]:
    now = s["now"]
    out: list[tuple[str, tuple[Any, ...]]] = [
        (
            "INSERT INTO vault_keys (id, token_hash, vendor, credential, label, metadata, policy, policy_version,"
            " status, created_at, expires_at, credential_gen) VALUES ('vk_1', 'h1', %s, %s, %s, '{}', '{}', %s, %s,"
            " %s, %s, 'g1')",
            (
                s["vendor"],
                s["credential"],
                s["label"],
                s["stored_version"],
                s["status"],
                now - 86_400_000,
                now - 1 if s["expired"] else now + 10 * 86_400_000,
            ),
        )
    ]
    if s["cred_row"] != "none":
        gen = "g1" if s["cred_row"] == "same" else "g2"
        out.append(
            (
                "INSERT INTO credentials (name, vendor, secret_enc, secret_hint, base_url, livemode, created_at,"
                " generation) VALUES (%s, %s, %s, 'sk_…1234', 'http://x', NULL, 0, %s)",
                (s["credential"], s["vendor"], b"\x00sealed\xff", gen),
            )
        )
    counters: list[tuple[str, str, int, int | None]] = [
        ("key:vk_1", c.counter, window_start(c.window, now, c.timezone), c.limit) for c in caps
    ]
    for bid, kind, value, bcaps, tz in s["budgets"]:
        out.append(
            (
                "INSERT INTO budgets (id, name, scope_kind, scope_value, daily_usd_cap, monthly_usd_cap,"
                " total_usd_cap, daily_request_cap, timezone, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 0, 0)",
                (bid, bid, kind, value, *bcaps, tz),
            )
        )
        for counter, window in (
            ("daily_usd", Window.DAY),
            ("monthly_usd", Window.MONTH),
            ("total_usd", Window.TOTAL),
            ("daily_requests", Window.DAY),
        ):
            counters.append((f"budget:{bid}", counter, window_start(window, now, tz), None))
    for idx, used, reserved in s["prefill"]:
        scope, counter, ws, limit = counters[idx % len(counters)]
        out.append(
            (
                "INSERT INTO counters (scope, cap, window_start, used, reserved, cap_limit)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (scope, counter, ws, used, reserved, limit),
            )
        )
    return out + _earlier_rows(s)


def _earlier_rows(s: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """The rows a retry, a duplicate or an object guard finds (or not)."""
    now = s["now"]
    out: list[tuple[str, tuple[Any, ...]]] = []
    if s["retry"] not in (None, "none"):
        verdict = s["retry"].rstrip("0123456789") if s["retry"].startswith("allowed") else s["retry"]
        status = int(s["retry"][len("allowed") :]) if s["retry"].startswith("allowed") else None
        out.append(
            (
                "INSERT INTO audit (id, ts, method, path, verdict, key_id, idempotency_key, fingerprint,"
                " upstream_status, cost_usd, reserved_usd, cost_source, cost_kind)"
                " VALUES (%s, %s, 'POST', '/v1/charges', %s, 'vk_1',"
                " 'ik_1', 'fp_1', %s, 0, 0, 'none', 'none')",
                (new_audit_id(now - 60_000), now - 60_000, verdict, status),
            )
        )
    if s["dedup"] not in (None, "none"):
        live = s["dedup"].startswith("live")
        state = "answered" if s["dedup"] == "live_answered" else "in_flight"
        out.append(
            (
                "INSERT INTO dedup (key_id, fingerprint, row_id, expires_at, state, answer_enc) VALUES"
                " ('vk_1', 'dfp', 'kbr_earlier', %s, %s, %s)",
                (now + 30_000 if live else now - 1, state, b"\x01answer" if state == "answered" else None),
            )
        )
    if s["guard"] == "busy":
        out.append(
            (
                "INSERT INTO audit (id, ts, method, path, verdict, key_id, credential, object_ref, cost_usd,"
                " reserved_usd, cost_source, cost_kind)"
                " VALUES (%s, %s, 'POST', '/x', 'in_flight', 'vk_1', %s, 'pi_1', 0, 0, 'none', 'none')",
                (new_audit_id(now - 5), now - 5, s["credential"]),
            )
        )
    if s["guard"] in ("fact_same", "fact_changed"):
        amount = 500 if s["guard"] == "fact_same" else 700
        out.append(
            (
                "INSERT INTO ledger (credential, object_id, kind, customer, account_context, currency, amount,"
                " amount_counted, updated_at, refunded, captured) VALUES (%s, 'pi_1', 'payment_intent', 'cus_1', NULL,"
                " 'usd', %s, 0, 0, NULL, NULL)",
                (s["credential"], amount),
            )
        )
    return out


def _calls(s: dict[str, Any]) -> tuple[RetryCheck | None, DedupCheck | None, ObjectGuard | None]:
    retry = RetryCheck("ik_1", "fp_1", cached_statuses=frozenset({402})) if s["retry"] is not None else None
    dedup = DedupCheck("dfp", 60_000) if s["dedup"] is not None else None
    guard = None
    if s["guard"] is not None:
        guard = ObjectGuard("pi_1", FACT if s["guard"] != "fact_missing" else None, s["guard"].startswith("fact"))
    return retry, dedup, guard


@given(s=scenarios())
@DIFF
def test_reserve_function_is_the_shared_reservation(pair: Pair, s: dict[str, Any]) -> None:
    _check(pair, s)


@given(s=scenarios(ok_path=True))
@DIFF
def test_reserve_function_reserves_as_the_shared_reservation(pair: Pair, s: dict[str, Any]) -> None:
    """Keys that reserve (or hit a cap): counters, audit rows and remaining µUSD compared."""
    _check(pair, s)


def _check(pair: Pair, s: dict[str, Any]) -> None:
    pair.reset(s["now"])
    caps = _key_caps(s)
    pair.seed(_seed(s, caps))
    retry, dedup, guard = _calls(s)
    row = AuditRow(
        id=new_audit_id(s["now"]),
        ts=s["now"],
        method="POST",
        path="/v1/charges",
        verdict="in_flight",
        key_id="vk_1",
        credential=s["credential"],
        reserved_usd=s["amount"],
        cost_source="estimate",
        cost_kind="charge",
        request_summary={"amount": 5, "x": "\x00y"},
        latency_ms=1.25,
    )
    rows = copy.deepcopy(row), copy.deepcopy(row)
    got = pair.runner.run(pair.new.reserve("vk_1", 1, caps, rows[0], "inst_1", retry, dedup, guard))
    want = pair.runner.run(ReserveQueries.reserve(pair.ref, "vk_1", 1, caps, rows[1], "inst_1", retry, dedup, guard))
    event(
        "cap_hit"
        if want.cap_hit
        else "busy"
        if want.object_busy
        else "dedup"
        if want.dedup_of
        else "retry"
        if want.retry_of
        else want.state.value
    )
    assert got == want
    assert rows[0] == rows[1]
    new, ref = pair.dumps()
    assert new == ref


def test_migration_0011_downgrades_and_upgrades_the_functions(pg_databases: Databases) -> None:
    import sqlalchemy as sa
    from alembic.command import downgrade, upgrade

    from keybrake.store.migrate import _config
    from keybrake.store.pg import sqlalchemy_pg_url

    url = pg_databases.create()
    names = "SELECT proname FROM pg_proc WHERE proname LIKE 'keybrake\\_%' ORDER BY proname"  # the functions of 0011
    engine = sa.create_engine(sqlalchemy_pg_url(url))
    try:
        for step, want in ((downgrade, []), (upgrade, ["audit_id_floor", "count_object", "human_usd", "reserve"])):
            with engine.begin() as conn:
                cfg = _config()
                cfg.attributes["connection"] = conn
                step(cfg, "0010" if step is downgrade else "0011")
            with psycopg.connect(url, autocommit=True) as c:
                got = [r[0].removeprefix("keybrake_") for r in c.execute(names).fetchall()]
            assert got == [*want, *(["settle", "settle_kept", "window_start"] if want else [])]
    finally:
        engine.dispose()
        pg_databases.drop(url)
