"""PostgreSQL's one-statement settlement batch (`keybrake_settle`, store/pg_settle.py) against the
shared Python `SettleQueries.settle_many` (the reference model), on identical databases."""

from __future__ import annotations

import copy
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keybrake.core.ledger import LedgerEntry, ObjectCount
from keybrake.core.money import human_usd
from keybrake.core.windows import Window
from keybrake.store.ids import new_audit_id
from keybrake.store.records import AuditRow, CapSpec
from keybrake.store.reservations import DedupCheck, DedupOutcome, EarlierSettlement, SettleJob, Settlement
from keybrake.store.sql_settle import SettleQueries
from tests.harness import examples
from tests.store.contract import DAY0
from tests.store.pg_diff import Pair, pair_fixture  # noqa: F401  (the `pair` fixture)

DIFF = settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

SETTLEMENTS = st.builds(
    Settlement,
    verdict=st.sampled_from(["allowed", "outcome_unknown", "upstream_error"]),
    cost_usd=st.integers(0, 2000),
    cost_source=st.sampled_from(["response", "estimate", "none"]),
    cost_kind=st.sampled_from(["charge", "none"]),
    keep_reservation=st.booleans(),
    forwarded=st.booleans(),
    billed=st.booleans(),
    points=st.one_of(st.none(), st.integers(0, 1000)),  # cost points an answer reported (point counters)
)

# Brings its own PostgreSQL databases (both engines' passes would run it alike): once, in the first pass.
pytestmark = pytest.mark.pg_cluster


# An answer whose outcome is unknown: the row keeps its reservation until a retry settles it.
KEPT = Settlement("outcome_unknown", 500, "estimate", "charge", True, forwarded=True)


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 4))
    return {
        "now": DAY0 + draw(st.integers(0, 2 * 86_400_000)),
        "budget_tz": draw(st.sampled_from([None, "UTC", "Asia/Tokyo"])),
        "legacy": draw(st.one_of(st.none(), st.integers(0, 500))),
        "rows": [
            {
                "amount": draw(st.integers(0, 1500)),
                "sends": draw(st.booleans()),
                "dedup": draw(st.booleans()),
                "before": draw(st.one_of(st.none(), SETTLEMENTS, st.just(KEPT), st.just(KEPT))),
                "earlier": draw(
                    st.one_of(
                        st.none(),
                        st.tuples(
                            st.integers(0, 2000),
                            st.one_of(st.none(), st.integers(0, 900)),
                            st.one_of(st.none(), st.integers(0, 300)),
                        ),
                    )
                ),
                "settlement": draw(SETTLEMENTS),
                "daily": draw(st.sampled_from(["daily_usd", "total_usd", None])),
                "items": draw(st.sampled_from(["reserved", "reserved", "none"])),
                "ledger": draw(st.booleans()),
                "count": draw(st.one_of(st.none(), st.integers(0, 900))),
                "committed": draw(st.one_of(st.none(), st.integers(0, 300))),
                "count_before": draw(st.one_of(st.none(), st.integers(0, 900))),
                "dedup_state": draw(st.sampled_from(["answered", "unknown", "release"])),
            }
            for _ in range(n)
        ],
    }


def _caps(amount: int, sends: bool) -> list[CapSpec]:
    caps = [
        CapSpec("key", "vk_1", "daily_usd_cap", "daily_usd", Window.DAY, None, amount, True),
        CapSpec("key", "vk_1", "total_usd_cap", "total_usd", Window.TOTAL, 10**9, amount, True),
        CapSpec("key", "vk_1", "max_requests_per_hour", "hourly_requests", Window.HOUR, None, 1, False),
    ]
    if sends:
        caps.append(CapSpec("key", "vk_1", "daily_send_cap", "daily_sends", Window.DAY, None, 1, False))
        points = CapSpec(
            "key", "vk_1", "daily_graphql_cost_points", "daily_graphql_points", Window.DAY, None, 1000, False
        )
        caps.append(points)
    return caps


def _arrange(pair: Pair, b: dict[str, Any]) -> list[SettleJob]:
    """Reserve every row on both databases (the shared path), settle some once already; the jobs."""
    seed: list[tuple[str, tuple[Any, ...]]] = [
        (
            "INSERT INTO vault_keys (id, token_hash, vendor, credential, label, metadata, policy, policy_version,"
            " status, created_at, expires_at) VALUES ('vk_1', 'h1', 'stripe', 'default', 't:1', '{}', '{}', 1,"
            " 'active', 0, %s)",
            (b["now"] + 10**9,),
        )
    ]
    if b["budget_tz"] is not None:
        seed.append(
            (
                "INSERT INTO budgets (id, name, scope_kind, scope_value, daily_usd_cap, monthly_usd_cap,"
                " total_usd_cap, daily_request_cap, timezone, created_at, updated_at)"
                " VALUES ('bud_1', 'b', 'all', NULL, NULL, 10000000, NULL, 100, %s, 0, 0)",
                (b["budget_tz"],),
            )
        )
    if b["legacy"] is not None:
        seed.append(
            (
                "INSERT INTO ledger_counts (credential, object_id, row_id, amount_minor, cost_usd, items)"
                " VALUES ('default', 'ch_0', 'legacy', %s, %s, '[]')",
                (b["legacy"], b["legacy"] * 1000),
            )
        )
    pair.seed(seed)
    earlier_id = _kept_row(pair, b["now"])
    jobs: list[SettleJob] = []
    for i, r in enumerate(b["rows"]):
        row = AuditRow(
            id=new_audit_id(b["now"]) + f"{i}",
            ts=b["now"],
            method="POST",
            path="/v1/charges",
            verdict="in_flight",
            key_id="vk_1",
            credential="default",
            reserved_usd=r["amount"],
            cost_source="estimate",
            cost_kind="charge",
        )
        dedup = DedupCheck(f"fp{i}", 60_000) if r["dedup"] else None
        items = []
        for store in (pair.ref, pair.new):
            res = pair.runner.run(_shared_reserve(store, _caps(r["amount"], r["sends"]), copy.deepcopy(row), dedup))
            items = res.items
        if r["before"] is not None:
            for store in (pair.ref, pair.new):
                count = ObjectCount(f"ch_{i % 2}", r["count_before"]) if r["count_before"] is not None else None
                early = SettleJob(copy.deepcopy(row), list(items), r["before"], "daily_usd", count=count)
                pair.runner.run(SettleQueries.settle_many(store, [early]))
        fact = LedgerEntry(f"ch_{i % 2}", "charge", "cus_1", None, "usd", 1000 + i, 0, None, True)
        jobs.append(
            SettleJob(
                row,
                list(items) if r["items"] == "reserved" else [],
                r["settlement"],
                r["daily"],
                ledger=("default", [fact]) if r["ledger"] else None,
                dedup=DedupOutcome(
                    "vk_1", f"fp{i}", r["dedup_state"], b"\x02ans" if r["dedup_state"] == "answered" else None
                )
                if r["dedup"]
                else None,
                count=ObjectCount(f"ch_{i % 2}", r["count"], r["committed"]) if r["count"] is not None else None,
                settles_earlier=_earlier(earlier_id, r["earlier"]) if r["earlier"] else None,
            )
        )
    return jobs


def _verdict(pair: Pair, row_id: str) -> str:
    """The row's verdict now, on the new database."""
    with psycopg.connect(pair.urls[0], autocommit=True) as c:
        got = c.execute("SELECT verdict FROM audit WHERE id = %s", (row_id,)).fetchone()
    assert got is not None
    return str(got[0])


def _kept_row(pair: Pair, now: int) -> str:
    """A request whose outcome is unknown, its reservation kept (on both databases): its id."""
    row = AuditRow(
        id=new_audit_id(now - 1000) + "k",
        ts=now - 1000,
        method="POST",
        path="/v1/charges",
        verdict="in_flight",
        key_id="vk_1",
        credential="default",
        reserved_usd=800,
    )
    for store in (pair.ref, pair.new):
        r = copy.deepcopy(row)
        res = pair.runner.run(_shared_reserve(store, _caps(800, True), r, None))
        pair.runner.run(SettleQueries.settle_many(store, [SettleJob(r, res.items, KEPT, "daily_usd")]))
    return row.id


def _earlier(row_id: str, e: tuple[int, int | None, int | None]) -> EarlierSettlement:
    cost, amount, committed = e
    count = ObjectCount("ch_0", amount, committed) if amount is not None else None
    return EarlierSettlement(row_id, cost, "response", "charge", count)


async def _shared_reserve(store: Any, caps: list[CapSpec], row: AuditRow, dedup: DedupCheck | None) -> Any:
    from keybrake.store.sql_reserve import ReserveQueries

    return await ReserveQueries.reserve(store, "vk_1", 1, caps, row, "inst_1", None, dedup, None)


@given(b=batches())
@DIFF
def test_settle_function_is_the_shared_settlement(pair: Pair, b: dict[str, Any]) -> None:
    pair.reset(b["now"])
    jobs = _arrange(pair, b)
    before = pair.dumps()
    assert before[0] == before[1]
    new_jobs, ref_jobs = copy.deepcopy(jobs), copy.deepcopy(jobs)
    pair.runner.run(pair.new.settle_many(new_jobs))
    pair.runner.run(SettleQueries.settle_many(pair.ref, ref_jobs))
    event(f"{sum(1 for r in b['rows'] if r['before'] is not None)} settled before")
    assert new_jobs == ref_jobs  # rows completed and items as the shared path leaves them
    # Which job settled the earlier outcome_unknown row (the settled-USD metric counts it then):
    # the same answer on both paths, one job at most, and one exactly when the row was settled.
    said = [j.earlier_settled for j in new_jobs]
    assert said == [j.earlier_settled for j in ref_jobs]
    new, ref = pair.dumps()
    assert new == ref
    earlier = {j.settles_earlier.id for j in jobs if j.settles_earlier is not None}
    moved = bool(earlier) and _verdict(pair, next(iter(earlier))) == "allowed"  # it was outcome_unknown
    assert sum(said) == (1 if moved else 0)
    event(f"{sum(1 for j in jobs if j.settles_earlier is not None)} jobs carry it, {sum(said)} settled it")
    # The batch again, as after a COMMIT whose answer was lost: the same answers, the same databases.
    new_again, ref_again = copy.deepcopy(jobs), copy.deepcopy(jobs)
    pair.runner.run(pair.new.settle_many(new_again))
    pair.runner.run(SettleQueries.settle_many(pair.ref, ref_again))
    assert [j.earlier_settled for j in new_again] == [j.earlier_settled for j in ref_again] == said
    new_db, ref_db = pair.dumps()
    assert new_db == ref_db
    event("nothing changed" if new == before[0] else "settled")
    event("an earlier request settled" if "outcome settled by the retry" in str(new["audit"]) else "no earlier")
    event("released counted µUSD" if "released" in str(new["audit"]) else "released nothing")


@given(micro=st.integers(1, 2**62))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_sql_human_usd_is_pythons(pair: Pair, micro: int) -> None:
    with psycopg.connect(pair.urls[0], autocommit=True) as c:
        got = c.execute("SELECT keybrake_human_usd(%s)", (micro,)).fetchone()
    assert got is not None and got[0] == human_usd(micro)
