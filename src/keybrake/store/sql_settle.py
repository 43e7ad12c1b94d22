"""Settlement, written once for every SQL engine: a forwarded call's reservation moves to
what it cost and its row is completed, in one transaction (batched by the settle writer);
reservations kept past the answer (unknown outcomes, pending estimates) are settled later by a
retry's answer or by reconciliation. Counters are locked in `lock_order`, rows first.
"""

from __future__ import annotations

import json
from typing import Any

from keybrake.core.ledger import ObjectCount
from keybrake.store.ids import audit_id_floor
from keybrake.store.records import AuditRow
from keybrake.store.reservations import (
    DedupOutcome,
    EarlierSettlement,
    PendingEstimate,
    ReservedItem,
    SettleJob,
    Settlement,
    reported_item,
)
from keybrake.store.sql_base import Cursor, Row, SQLBase, blocking, lock_order
from keybrake.store.sql_ledger import count_object, ledger_put

# Columns a settlement changes; the rest of the row was written with the reservation.
_SETTLE_COLS = (
    "metadata",
    "verdict",
    "error_code",
    "reason",
    "status",
    "upstream_status",
    "cost_usd",
    "cost_source",
    "cost_kind",
    "cap_usage_after_usd",
    "vendor_request_id",
    "vendor_object_id",
    "settled_by",
    "redacted_fields",
    "latency_ms",
    "upstream_latency_ms",
    "overhead_ms",
    "reservation",
)
_SETTLE_JSON = ("metadata", "redacted_fields")  # JSON text columns among them (as in sql_rows._JSON_AUDIT)
_SETTLE_SCALARS = tuple(c for c in _SETTLE_COLS if c not in (*_SETTLE_JSON, "reservation"))
_SETTLE_AUDIT = f"UPDATE audit SET {', '.join(f'{c} = :{c}' for c in _SETTLE_COLS)} WHERE id = :id"
_SETTLE = """
UPDATE counters SET reserved = reserved - :amount, used = used + :actual
WHERE scope = :scope AND cap = :cap AND window_start = :ws
RETURNING used
"""


class SettleQueries(SQLBase):
    """`settle`/`settle_many` (the proxy) and `pending_estimates`/`settle_pending` (reconciliation)."""

    async def settle(
        self, row: AuditRow, items: list[ReservedItem], settlement: Settlement, daily_counter: str | None
    ) -> None:
        await self.settle_many([SettleJob(row, items, settlement, daily_counter)])

    @blocking
    def settle_many(self, jobs: list[SettleJob]) -> None:
        with self._tx() as cur:
            # Only rows still holding their reservation are settled, so running a batch twice (a
            # retry after a COMMIT whose answer was lost) changes nothing the second time, and a
            # row settled meanwhile by a retry of its request is not settled again. The rows are
            # locked first (PostgreSQL), then every counter the batch releases, in lock order.
            open_rows = _open_rows(cur, [job.row.id for job in jobs], self.FOR_UPDATE)
            for job in jobs:
                # The row's stored reservation is authoritative: seeding a budget created or
                # re-zoned while the row was in flight rewrites it (sql_budgets.py).
                if job.row.id in open_rows:
                    job.items = [ReservedItem.from_json(v) for v in json.loads(open_rows[job.row.id])]
            open_ids = set(open_rows)
            moves = [
                (job, it)
                for job in jobs
                if job.row.id in open_ids and not job.settlement.keep_reservation
                for it in job.items
            ]
            used = _move_all(cur, moves)
            moved = [_settle_one(cur, job, used, job.row.id in open_ids, self.FOR_UPDATE) for job in jobs]
        # Only once committed (a batch rolled back and written again job by job starts afresh).
        for job, earlier_settled in zip(jobs, moved, strict=True):
            job.earlier_settled = earlier_settled

    @blocking
    def pending_estimates(
        self, older_than_ms: int, limit: int, *, vendor: str | None = None, after_id: str | None = None
    ) -> list[PendingEstimate]:
        by_vendor = " AND a.vendor = ?" if vendor is not None else ""
        rows = self._read(
            "SELECT a.id, a.ts, a.key_id, a.vendor, a.credential, a.vendor_object_id, a.account_context,"
            " a.reserved_usd, a.cost_kind, k.credential_gen"
            " FROM audit a LEFT JOIN vault_keys k ON k.id = a.key_id"
            " WHERE a.verdict = 'allowed' AND a.cost_source = 'estimate' AND a.reservation IS NOT NULL"
            f" AND a.vendor_object_id IS NOT NULL AND a.id < ? AND a.id > ?{by_vendor}"
            " ORDER BY a.id LIMIT ?",
            (audit_id_floor(older_than_ms), after_id or "", *([vendor] if vendor is not None else []), limit),
        )
        return [PendingEstimate(**dict(r)) for r in rows]

    @blocking
    def settle_pending(
        self, row_id: str, cost_usd: int, cost_source: str, cost_kind: str, count: ObjectCount | None = None
    ) -> bool:
        with self._tx() as cur:
            return _settle_kept(
                cur,
                row_id,
                cost_usd,
                cost_source,
                cost_kind,
                "reconciliation",
                ("allowed",),
                None,
                self.FOR_UPDATE,
                count,
            )


def _move_all(cur: Cursor, moves: list[tuple[SettleJob, ReservedItem]]) -> dict[tuple[int, str, str], Any]:
    """Release the reservations of `moves` and count what each settled for: ONE UPDATE per
    distinct counter of the batch (the jobs of one key share its counters), in lock order.

    Returns, per (id(job), counter scope, counter), the counter's `used` right after that job's
    move, as `(used,)` (None: no such counter row) — exactly what one UPDATE per move in job
    order would have returned: the final `used` minus what the later jobs of the batch added.
    """
    by_counter: dict[tuple[str, str, int], list[tuple[SettleJob, ReservedItem, int]]] = {}
    for job, it in moves:
        by_counter.setdefault(_counter_key(it), []).append((job, it, it.settled_amount(job.settlement)))
    used: dict[tuple[int, str, str], Any] = {}
    for key in sorted(by_counter, key=lambda k: lock_order(*k)):
        group = by_counter[key]
        amount = sum(it.amount for _, it, _ in group)
        actual = sum(a for _, _, a in group)
        row = cur.execute(
            _SETTLE, {"scope": key[0], "cap": key[1], "ws": key[2], "amount": amount, "actual": actual}
        ).fetchone()
        after = None if row is None else int(row[0])
        for job, it, a in reversed(group):  # the last job's move leaves the final value
            used.setdefault((id(job), it.counter_scope, it.counter), None if after is None else (after,))
            if after is not None:
                after -= a
    return used


def _move(cur: Cursor, it: ReservedItem, actual: int) -> Row | None:
    """Release an item's reservation and count `actual` instead; returns the counter's new `used`."""
    params = {
        "scope": it.counter_scope,
        "cap": it.counter,
        "ws": it.window_start,
        "amount": it.amount,
        "actual": actual,
    }
    row: Row | None = cur.execute(_SETTLE, params).fetchone()
    return row


def _settle_one(
    cur: Cursor, job: SettleJob, used: dict[tuple[int, str, str], Any], is_open: bool, for_update: str
) -> bool:
    """Complete a job's row once its counters moved (`used`: each moved counter's new `used`).

    A row no longer open (settled already) is left as it is; what the answer taught about vendor
    objects and the dedup entry is still recorded (both writes are idempotent). Returns whether
    this job settled its `settles_earlier` row, in this run or in an earlier run of the same job
    that committed (its answer lost); False: none, or another retry or reconciliation did.
    """
    row, items, settlement = job.row, job.items, job.settlement
    earlier_settled = False
    if is_open:
        settlement.apply_to(row)
        daily = next(
            (it for it in items if it.counter == job.daily_counter and it.counter_scope.startswith("key:")), None
        )
        if daily is not None:
            if settlement.keep_reservation:
                got = cur.execute(
                    "SELECT used FROM counters WHERE scope = ? AND cap = ? AND window_start = ?",
                    (daily.counter_scope, daily.counter, daily.window_start),
                ).fetchone()
            else:
                got = used.get((id(job), daily.counter_scope, daily.counter))
            row.cap_usage_after_usd = got[0] if got else None
        cur.execute(_SETTLE_AUDIT, _settle_params(row, items if settlement.keep_reservation else None))
        if job.settles_earlier is not None:
            earlier_settled = _settle_earlier(cur, job.settles_earlier, row.id, for_update)
    if job.settles_earlier is not None and not earlier_settled:
        # Settled already: by this very job if a run of it committed but its answer was lost.
        earlier_settled = _settled_by(cur, job.settles_earlier.id, row.id)
    if job.ledger is not None:
        ledger_put(cur, job.ledger[0], job.ledger[1], row.ts)
    if job.count is not None and is_open and row.credential is not None:
        held = row.reserved_usd if settlement.keep_reservation else row.cost_usd
        count_object(cur, row.credential, job.count, row.id, held, items, for_update)
    if job.dedup is not None:
        _dedup_settle(cur, job.dedup, row.id)
    return earlier_settled


def _settle_params(row: AuditRow, kept: list[ReservedItem] | None) -> dict[str, Any]:
    """The parameters of `_SETTLE_AUDIT`: what `_row_params` gives for those columns, computed
    for them alone (the request summary and lookup, written with the reservation, are not
    serialised again per settled row)."""
    params: dict[str, Any] = {"id": row.id}
    for c in _SETTLE_SCALARS:
        v = getattr(row, c)
        params[c] = v.replace("\x00", "\ufffd") if type(v) is str and "\x00" in v else v  # as _row_params
    for c in _SETTLE_JSON:
        v = getattr(row, c)
        params[c] = None if v is None else json.dumps(v, separators=(",", ":"), sort_keys=True)
    params["reservation"] = json.dumps([i.as_json() for i in kept]) if kept is not None else None
    return params


def _counter_key(it: ReservedItem) -> tuple[str, str, int]:
    return it.counter_scope, it.counter, it.window_start


def _open_rows(cur: Cursor, row_ids: list[str], for_update: str) -> dict[str, str]:
    """Which of these rows still hold a reservation to settle, and what it is (locked until the end)."""
    if not row_ids:
        return {}
    marks = ", ".join("?" for _ in row_ids)
    rows = cur.execute(
        f"SELECT id, reservation FROM audit WHERE id IN ({marks}) AND reservation IS NOT NULL"
        f" AND verdict IN ('in_flight', 'outcome_unknown') ORDER BY id{for_update}",
        row_ids,
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def _dedup_settle(cur: Cursor, outcome: DedupOutcome, row_id: str) -> None:
    """Record how the first send of a dedup window ended (only if the entry is still this row's)."""
    where = "key_id = ? AND fingerprint = ? AND row_id = ?"
    if outcome.state == "release":  # nothing was sent: a duplicate may be sent
        cur.execute(f"DELETE FROM dedup WHERE {where}", (outcome.key_id, outcome.fingerprint, row_id))
    else:
        cur.execute(
            f"UPDATE dedup SET state = ?, answer_enc = ? WHERE {where}",
            (outcome.state, outcome.answer_enc, outcome.key_id, outcome.fingerprint, row_id),
        )


def _settle_earlier(cur: Cursor, earlier: EarlierSettlement, settled_by: str, for_update: str) -> bool:
    """A retry's answer tells what the earlier outcome_unknown request did: settle its reservation.
    True if this call settled it; False if it was no longer outcome_unknown."""
    return _settle_kept(
        cur,
        earlier.id,
        earlier.cost_usd,
        earlier.cost_source,
        earlier.cost_kind,
        settled_by,
        ("outcome_unknown",),
        f"outcome settled by the retry {settled_by}",
        for_update,
        earlier.count,
    )


def _settled_by(cur: Cursor, row_id: str, settled_by: str) -> bool:
    """Whether `row_id` was settled by the row `settled_by` (an earlier attempt of the same job,
    its COMMIT landed and its answer lost, settled it)."""
    got = cur.execute("SELECT 1 FROM audit WHERE id = ? AND settled_by = ?", (row_id, settled_by)).fetchone()
    return got is not None


def _settle_kept(
    cur: Cursor,
    row_id: str,
    cost_usd: int,
    cost_source: str,
    cost_kind: str,
    settled_by: str,
    verdicts: tuple[str, ...],
    reason: str | None,
    for_update: str,
    count: ObjectCount | None = None,
) -> bool:
    """Settle a reservation that was kept past the answer (unknown outcome, pending estimate).
    True if this call moved it; False if the row no longer holds it with one of `verdicts`."""
    marks = ", ".join("?" for _ in verdicts)
    r = cur.execute(
        f"SELECT reservation, credential FROM audit WHERE id = ? AND verdict IN ({marks})"
        f" AND reservation IS NOT NULL{for_update}",
        (row_id, *verdicts),
    ).fetchone()
    if r is None:
        return False  # already settled (by a retry or an earlier pass)
    kept = [ReservedItem.from_json(v) for v in json.loads(r["reservation"])]
    used: dict[tuple[str, str, int], int | None] = {}
    for it in sorted(kept, key=lambda i: lock_order(*_counter_key(i))):
        # USD counters move to the real cost; the request was forwarded and the vendor has the
        # object (or answered the retry), so request and send counters count it.
        got = _move(cur, it, cost_usd if it.is_usd else it.amount)
        used[_counter_key(it)] = None if got is None else int(got[0])
    # The row reports its key's usage after THIS settlement (it reported the usage without its
    # cost while the reservation was kept); a row that reserved no reported counter keeps its own.
    reported = reported_item(kept)
    cap_usage = None if reported is None else used.get(_counter_key(reported))
    cur.execute(
        "UPDATE audit SET verdict = 'allowed', cost_usd = ?, cost_source = ?, cost_kind = ?, settled_by = ?,"
        " reservation = NULL, reason = COALESCE(?, reason),"
        " cap_usage_after_usd = COALESCE(?, cap_usage_after_usd) WHERE id = ?",
        (cost_usd, cost_source, cost_kind, settled_by, reason, cap_usage, row_id),
    )
    if count is not None and r["credential"] is not None:
        count_object(cur, r["credential"], count, row_id, cost_usd, kept, for_update)
    return True
