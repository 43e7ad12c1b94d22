"""The object ledger in SQL: what answers taught about vendor objects, and what each forwarded
call counted for them (money is counted once per object, from Keybrake's own settlements).

`ledger` keeps facts (customer, account, currency, amount, a charge's refunded amount and
whether it was captured); `ledger_counts` keeps, per object and audit row, the minor units that
row counts, the µUSD it holds in the counters and which USD counters hold it, so that a capture
for less or a cancel can release what will never move (docs/policy.md, the object ledger).
Plain synchronous DB-API code, run inside the caller's transaction or by `@blocking` methods.
"""

from __future__ import annotations

import json
from typing import Any

from keybrake.core.ledger import LedgerEntry, ObjectCount
from keybrake.core.money import human_usd
from keybrake.store.reservations import ReservedItem
from keybrake.store.sql_base import Cursor, Row, SQLBase, blocking


class LedgerQueries(SQLBase):
    """The ledger reads and writes the store exposes (the rest run inside settlements)."""

    @blocking
    def ledger_get(self, credential: str, object_ids: list[str]) -> dict[str, LedgerEntry]:
        out: dict[str, LedgerEntry] = {}
        for oid in object_ids:
            rows = self._read(_LEDGER_GET, (credential, oid))
            if rows:
                out[oid] = _fact(rows[0])
        return out

    @blocking
    def ledger_put(self, credential: str, entries: list[LedgerEntry]) -> None:
        with self._tx() as cur:
            ledger_put(cur, credential, entries, self.now_ms())


# An object's facts, and what Keybrake's own settlements counted for it (never its status).
_LEDGER_GET = """
SELECT l.object_id, l.kind, l.customer, l.account_context, l.currency, l.amount, l.refunded, l.captured,
       COALESCE((SELECT SUM(c.amount_minor) FROM ledger_counts c
                 WHERE c.credential = l.credential AND c.object_id = l.object_id), 0) AS amount_counted
FROM ledger l WHERE l.credential = ? AND l.object_id = ?
"""
_LEDGER_PUT = """
INSERT INTO ledger (credential, object_id, kind, customer, account_context, currency, amount, refunded,
                    captured, amount_counted, updated_at)
VALUES (:credential, :object_id, :kind, :customer, :account_context, :currency, :amount, :refunded, :captured, 0,
        :now)
ON CONFLICT (credential, object_id) DO UPDATE SET
    customer = COALESCE(excluded.customer, ledger.customer),
    account_context = COALESCE(excluded.account_context, ledger.account_context),
    currency = COALESCE(excluded.currency, ledger.currency),
    amount = COALESCE(excluded.amount, ledger.amount),
    refunded = COALESCE(excluded.refunded, ledger.refunded),
    captured = COALESCE(excluded.captured, ledger.captured),
    updated_at = excluded.updated_at
"""


def read_fact(cur: Cursor, credential: str, object_id: str) -> LedgerEntry | None:
    """An object's facts and what is counted for it, read inside the caller's transaction."""
    row = cur.execute(_LEDGER_GET, (credential, object_id)).fetchone()
    return _fact(row) if row is not None else None


def _fact(row: Row) -> LedgerEntry:
    fact = dict(row)
    fact["captured"] = None if fact["captured"] is None else bool(fact["captured"])
    return LedgerEntry(**fact)


def ledger_put(cur: Cursor, credential: str, entries: list[LedgerEntry], now: int) -> None:
    """Record what answers taught about objects. Facts only: what is counted moves by settlements."""
    for e in entries:
        params = {k: v for k, v in e.__dict__.items() if k != "amount_counted"}
        cur.execute(_LEDGER_PUT, {**params, "credential": credential, "now": now})


def count_object(
    cur: Cursor,
    credential: str,
    count: ObjectCount,
    row_id: str,
    held: int,
    items: list[ReservedItem],
    for_update: str,
) -> None:
    """Record what `row` counts for an object, then release what the object will never move.

    A row's count holds `held` µUSD (its cost, or its kept reservation) in its USD counters. When the
    answer states what the object finally commits (a capture for less, a cancel), the excess of
    everything counted over it is released from the counted rows, latest first: their counters
    go down by the released µUSD and their audit cost with it. Rows still holding a reservation
    are left alone (their outcome is not settled yet).
    """
    usd = [[it.counter_scope, it.counter, it.window_start] for it in items if it.is_usd]
    _record_count(cur, credential, count, row_id, held, usd)
    if count.committed is None:
        return
    counted = cur.execute(
        "SELECT c.row_id, c.amount_minor, c.cost_usd, c.items FROM ledger_counts c"
        " WHERE c.credential = ? AND c.object_id = ?"
        # Earlier rows first, latest first; this row's own count last; the carried-over legacy count
        # (no counters known) at the very end.
        " ORDER BY CASE WHEN c.row_id = 'legacy' THEN 2 WHEN c.row_id = ? THEN 1 ELSE 0 END, c.row_id DESC"
        + for_update,
        (credential, count.object_id, row_id),
    ).fetchall()
    excess = sum(int(r["amount_minor"]) for r in counted) - count.committed
    released_total = 0
    for r in counted:
        if excess <= 0:
            break
        if int(r["amount_minor"]) <= 0 or (r["row_id"] != row_id and not _settled(cur, r["row_id"])):
            continue
        take = min(excess, int(r["amount_minor"]))
        excess -= take
        released_total += _release(cur, credential, count.object_id, r, take, row_id)
    if released_total:
        cur.execute(
            "UPDATE audit SET reason = ? WHERE id = ?",
            (
                f"released {human_usd(released_total)} counted earlier for {count.object_id}, which will not move",
                row_id,
            ),
        )


def _record_count(
    cur: Cursor, credential: str, count: ObjectCount, row_id: str, held: int, usd: list[list[Any]]
) -> None:
    """Write what `row_id` counts for the object (`usd`: its USD counters), or drop its count."""
    if count.amount > 0:
        cur.execute(
            "INSERT INTO ledger_counts (credential, object_id, row_id, amount_minor, cost_usd, items)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (credential, object_id, row_id) DO UPDATE SET"
            " amount_minor = excluded.amount_minor, cost_usd = excluded.cost_usd, items = excluded.items",
            (credential, count.object_id, row_id, count.amount, held, json.dumps(usd)),
        )
    else:  # this row counts nothing (now): a count it held before (a kept estimate) is gone
        cur.execute(
            "DELETE FROM ledger_counts WHERE credential = ? AND object_id = ? AND row_id = ?",
            (credential, count.object_id, row_id),
        )


def _release(cur: Cursor, credential: str, object_id: str, r: Row, take: int, by_row: str) -> int:
    """Take `take` minor units off the counted row `r`, and its cost proportionally (half-up) off
    its count, its USD counters and its audit cost. Returns the µUSD released."""
    old_minor, old_cost = int(r["amount_minor"]), int(r["cost_usd"])
    new_minor = old_minor - take
    new_cost = (old_cost * new_minor * 2 + old_minor) // (2 * old_minor)  # proportional, half-up
    released = old_cost - new_cost
    cur.execute(
        "UPDATE ledger_counts SET amount_minor = ?, cost_usd = ? WHERE credential = ? AND object_id = ? AND row_id = ?",
        (new_minor, new_cost, credential, object_id, r["row_id"]),
    )
    if released <= 0:
        return 0
    for scope, counter, ws in json.loads(r["items"]):
        cur.execute(
            "UPDATE counters SET used = CASE WHEN used > ? THEN used - ? ELSE 0 END"
            " WHERE scope = ? AND cap = ? AND window_start = ?",
            (released, released, scope, counter, ws),
        )
    cur.execute(
        "UPDATE audit SET cost_usd = CASE WHEN cost_usd > ? THEN cost_usd - ? ELSE 0 END, reason = ? WHERE id = ?",
        (
            released,
            released,
            f"{human_usd(released)} released by {by_row}: {object_id} will move less than was counted",
            r["row_id"],
        ),
    )
    return released


def _settled(cur: Cursor, row_id: str) -> bool:
    """Whether a counted row's outcome is settled (its reservation no longer held)."""
    if row_id == "legacy":
        return True
    r = cur.execute("SELECT reservation FROM audit WHERE id = ?", (row_id,)).fetchone()
    return r is not None and r[0] is None
