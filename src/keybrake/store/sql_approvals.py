"""Calls held for a person's decision (docs/approvals.md): the approvals table, grants for the
rest of a run, and the audit row's `approval` column, which every change here keeps in step.

A state changes once, only from `pending`, by a compare-and-set in one transaction: an approval
and the holder's timeout (or a deny, a revoke, the agent hanging up) can race, and exactly one
of them wins; the loser reads back what won. An approval counts only before the hold expires
(`expires_at`), so an operator can never approve a call the holder has already given up on.
"""

from __future__ import annotations

import json
from typing import Any

from keybrake.store.records import ApprovalQuery, ApprovalRecord, KeyWatch
from keybrake.store.reservations import ReservedItem
from keybrake.store.sql_base import Cursor, Row, SQLBase, blocking, lock_order

# Decisions a person makes; the holder ends a hold with the others.
DECISIONS = ("approved", "denied")
ENDINGS = ("expired", "cancelled")
# The reason of a hold cancelled because its agent hung up. Such a hold keeps its place in the
# key's queue until it would have ended: else holding, hanging up and asking again would send
# one approval.requested per cycle, without bound, and bury the real requests.
ABANDONED = "the agent disconnected while the call waited"
_QUEUED = (
    "SELECT COUNT(*) FROM approvals WHERE key_id = ? AND expires_at > ?"
    " AND (state = 'pending' OR (state = 'cancelled' AND reason = ?))"
)
_QUEUE_LOCK = "approvals"  # with "queue:<key id>": serialises a key's count-then-write of holds


class ApprovalQueries(SQLBase):
    """The approval role of the SQL engines (`store.roles.ApprovalStore`)."""

    @blocking
    def hold_approval(self, rec: ApprovalRecord, max_pending: int | None = None) -> bool:
        """Write a new pending approval and mark its audit row `awaiting_approval`, together;
        True when written. With `max_pending`, only while the key's queue (`_QUEUED`: its pending
        holds and those its agent abandoned, until they would have ended) holds fewer: counted and
        written in one transaction under the key's queue lock, so concurrent calls cannot all
        read "below the limit" (False: not written)."""
        with self._tx() as cur:
            if max_pending is not None:
                self._lock_idempotency(cur, "queue:" + rec.key_id, _QUEUE_LOCK)
                queued = cur.execute(_QUEUED, (rec.key_id, self.now_ms(), ABANDONED)).fetchone()[0]
                if int(queued) >= max_pending:
                    return False
            cur.execute(
                "INSERT INTO approvals (id, audit_id, key_id, label, agent_run_id, vendor, method, endpoint,"
                " amount_usd, summary, reasons, state, created_at, expires_at, owner)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                (
                    rec.id, rec.audit_id, rec.key_id, rec.label, rec.agent_run_id, rec.vendor, rec.method,
                    rec.endpoint, rec.amount_usd, _json(rec.summary), json.dumps(list(rec.reasons)),
                    rec.created_at, rec.expires_at, rec.owner,
                ),
            )  # fmt: skip
            _mark_row(cur, rec.audit_id, audit_approval(rec, state="awaiting_approval"))
        return True

    @blocking
    def approval_get(self, approval_id: str) -> ApprovalRecord | None:
        rows = self._read("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return _approval(rows[0]) if rows else None

    @blocking
    def approval_watch(self, approval_id: str) -> tuple[ApprovalRecord | None, KeyWatch | None]:
        """What the holder polls: the approval, and its key's status, expiry and policy version
        (None: no such key)."""
        rows = self._read(
            "SELECT a.*, k.status AS key_status, k.expires_at AS key_expires_at,"
            " k.policy_version AS key_policy_version FROM approvals a"
            " LEFT JOIN vault_keys k ON k.id = a.key_id WHERE a.id = ?",
            (approval_id,),
        )
        if not rows:
            return None, None
        r = rows[0]
        key = (
            None if r["key_status"] is None else KeyWatch(r["key_status"], r["key_expires_at"], r["key_policy_version"])
        )
        return _approval(r), key

    @blocking
    def decide_approval(
        self, approval_id: str, state: str, by: str, reason: str | None, grant_usd: int | None = None
    ) -> tuple[bool, ApprovalRecord | None]:
        """A person's decision (`state` approved | denied): (whether it was taken, the approval now).

        Taken only while the approval is pending and its hold has not expired. An approval with
        `grant_usd` also grants the rest of the call's run up to that much (µUSD, `grant_run`).
        """
        if state not in DECISIONS:
            raise ValueError(f"not a decision: {state!r}")
        now = self.now_ms()
        grant = grant_usd if state == "approved" else None
        with self._tx() as cur:
            won, rec = _change(cur, approval_id, state, by, reason, now, grant=grant, live_at=now)
            if won and rec is not None and grant is not None:
                _grant(cur, rec, grant, by, now)
        return won, rec

    @blocking
    def end_approval(
        self, approval_id: str, state: str, by: str, reason: str, waited_ms: int | None = None
    ) -> ApprovalRecord | None:
        """The holder ends a pending hold (`state` expired | cancelled); returns the approval as it
        now stands — a decision that won the race stays (the holder acts on it)."""
        if state not in ENDINGS:
            raise ValueError(f"not an ending: {state!r}")
        with self._tx() as cur:
            return _change(cur, approval_id, state, by, reason, self.now_ms(), waited_ms=waited_ms)[1]

    @blocking
    def note_approval(self, audit_id: str, approval: dict[str, Any]) -> None:
        """Write the audit row's `approval` (once the holder knows how the hold ended)."""
        with self._tx() as cur:
            _mark_row(cur, audit_id, approval)

    @blocking
    def use_grant(self, run_scope: str, amount_usd: int) -> str | None:
        """Take `amount_usd` (µUSD) from the run's grant, if one is live and holds that much;
        returns the approval id that granted it, else None. One guarded UPDATE: concurrent calls
        can never together take more than the grant; a negative amount (which no estimate is)
        takes nothing and would add to it, so it is never let go."""
        if amount_usd < 0:
            return None
        now = self.now_ms()
        with self._tx() as cur:
            took = cur.execute(
                "UPDATE approval_grants SET remaining_usd = remaining_usd - ?"
                " WHERE run_scope = ? AND remaining_usd >= ? AND expires_at > ?",
                (amount_usd, run_scope, amount_usd, now),
            ).rowcount
            if not took:
                return None
            r = cur.execute("SELECT approval_id FROM approval_grants WHERE run_scope = ?", (run_scope,)).fetchone()
            return str(r[0])

    @blocking
    def pending_approvals(self, key_id: str) -> int:
        """How many places of the key's queue are taken now: its calls held (pending and not past
        their hold) and those whose agent hung up while held, until their hold would have ended."""
        rows = self._read(_QUEUED, (key_id, self.now_ms(), ABANDONED))
        return int(rows[0][0])

    @blocking
    def list_approvals(self, q: ApprovalQuery) -> list[ApprovalRecord]:
        """Newest first. `state="pending"` lists only holds not yet past their expiry; `"expired"`
        also lists pending ones past it (their holder is ending them)."""
        where: list[str] = []
        params: list[Any] = []
        now = self.now_ms()
        if q.state == "pending":
            where.append("state = 'pending' AND expires_at > ?")
            params.append(now)
        elif q.state == "expired":
            where.append("(state = 'expired' OR (state = 'pending' AND expires_at <= ?))")
            params.append(now)
        elif q.state is not None:
            where.append("state = ?")
            params.append(q.state)
        if q.key_id is not None:
            where.append("key_id = ?")
            params.append(q.key_id)
        if q.before_id is not None:
            where.append("id < ?")
            params.append(q.before_id)
        sql = "SELECT * FROM approvals"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(q.limit)
        return [_approval(r) for r in self._read(sql, params)]

    @blocking
    def budget_approval_thresholds(self, budget_ids: list[str]) -> dict[str, int]:
        """budget id → its `approval_above_usd` (µUSD), for those of `budget_ids` that set one."""
        if not budget_ids:
            return {}
        marks = ", ".join("?" for _ in budget_ids)
        rows = self._read(
            f"SELECT id, approval_above_usd FROM budgets WHERE id IN ({marks}) AND approval_above_usd IS NOT NULL",
            budget_ids,
        )
        return {r[0]: int(r[1]) for r in rows}


def cancel_orphaned_approvals(cur: Cursor, now: int) -> int:
    """Pending approvals whose holding replica is gone (recovery): cancelled, so no one approves
    a call nobody holds. Their rows are recovered like any other in flight."""
    return cur.execute(
        "UPDATE approvals SET state = 'cancelled', decided_at = ?, decided_by = 'keybrake',"
        " reason = 'the Keybrake replica holding the call stopped' WHERE state = 'pending'"
        " AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = approvals.owner)",
        (now,),
    ).rowcount


# The audit row's `approval` once its call was approved, by a person or a grant (`_mark_row`'s
# JSON, keys sorted; every string the agent controls is JSON-escaped, so this is only ever the state).
_APPROVED = '%"state": "approved"%'


def release_orphaned_holds(cur: Cursor, floor: str = "") -> int:
    """Rows held for approval and never approved (so never sent), whose holder is gone: their
    reservations given back, the row refused `approval_timeout`, their dedup entries gone.

    Never approved: waiting still, or ended otherwise (expired, denied, cancelled) by a holder that
    died before its release was written — either way never sent, so never `outcome_unknown` (an
    Idempotency-Key retry of an outcome_unknown call goes as a retry, without approval). Gone: the
    owner's instance is, or the row is older than `floor` (the max-flight audit id) and no hold of
    it is pending (a live holder ends its own). An approved call may have been sent: its row is
    left to the outcome_unknown recovery."""
    rows = cur.execute(
        "SELECT id, reservation, approval FROM audit WHERE verdict = 'in_flight' AND reservation IS NOT NULL"
        " AND approval IS NOT NULL AND approval NOT LIKE ? AND (NOT EXISTS (SELECT 1 FROM instances i WHERE"
        " i.id = audit.owner) OR (id < ? AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.state = 'pending'"
        " AND a.audit_id = audit.id))) ORDER BY id",
        (_APPROVED, floor),
    ).fetchall()
    for r in rows:
        items = sorted(  # in the one lock order (no deadlock with settlements)
            (ReservedItem.from_json(v) for v in json.loads(r[1])),
            key=lambda it: lock_order(it.counter_scope, it.counter, it.window_start),
        )
        for it in items:
            cur.execute(
                "UPDATE counters SET reserved = reserved - ? WHERE scope = ? AND cap = ? AND window_start = ?",
                (it.amount, it.counter_scope, it.counter, it.window_start),
            )
        approval = {**json.loads(r[2]), "state": "cancelled", "decided_by": "keybrake"}
        cur.execute(
            "UPDATE audit SET verdict = 'denied_approval_timeout', error_code = 'approval_timeout', status = 403,"
            " reason = ?, reservation = NULL, cost_usd = 0, cost_source = 'none', approval = ? WHERE id = ?",
            (_ORPHANED, json.dumps(approval, sort_keys=True), r[0]),
        )
        cur.execute("DELETE FROM dedup WHERE row_id = ?", (r[0],))
    return len(rows)


_ORPHANED = (
    "The Keybrake replica holding this call for approval stopped before anyone approved it; it was never "
    "sent and its reservation was released."
)


def audit_approval(rec: ApprovalRecord, *, state: str | None = None, waited_ms: int | None = None) -> dict[str, Any]:
    """The audit row's `approval` for `rec` (`state` overrides: `awaiting_approval` while held)."""
    out: dict[str, Any] = {
        "id": rec.id,
        "state": state or rec.state,
        "reasons": list(rec.reasons),
        "expires_at": rec.expires_at,
    }
    if rec.decided_at is not None:
        out.update(decided_by=rec.decided_by, decided_at=rec.decided_at, reason=rec.reason)
    if rec.grant_usd is not None:
        out["grant_usd"] = rec.grant_usd
    if waited_ms is not None:
        out["waited_ms"] = waited_ms
    return out


def _change(
    cur: Cursor, approval_id: str, state: str, by: str, reason: str | None, now: int, *,
    grant: int | None = None, live_at: int | None = None, waited_ms: int | None = None,
) -> tuple[bool, ApprovalRecord | None]:  # fmt: skip
    """The one change of an approval's state: only from pending (and with `live_at`, only while its
    hold lasts past that time, Unix ms), the audit row's `approval` in step. (taken?, the approval now)."""
    live = " AND expires_at > ?" if live_at is not None else ""
    won = cur.execute(
        "UPDATE approvals SET state = ?, decided_at = ?, decided_by = ?, reason = ?, grant_usd = ?"
        f" WHERE id = ? AND state = 'pending'{live}",
        (state, now, by, reason, grant, approval_id, *([live_at] if live_at is not None else [])),
    ).rowcount
    r = cur.execute("SELECT * FROM approvals WHERE id = ?", (approval_id,)).fetchone()
    rec = _approval(r) if r is not None else None
    if won and rec is not None:
        _mark_row(cur, rec.audit_id, audit_approval(rec, waited_ms=waited_ms))
    return bool(won), rec


def _mark_row(cur: Cursor, audit_id: str, approval: dict[str, Any]) -> None:
    cur.execute("UPDATE audit SET approval = ? WHERE id = ?", (json.dumps(approval, sort_keys=True), audit_id))


def _grant(cur: Cursor, rec: ApprovalRecord, grant_usd: int, by: str, now: int) -> None:
    """Grant the rest of `rec`'s run up to `grant_usd` (replacing an earlier grant of the run),
    live while the key is: the grant ends when the key expires."""
    k = cur.execute("SELECT expires_at FROM vault_keys WHERE id = ?", (rec.key_id,)).fetchone()
    expires = int(k[0]) if k is not None else now
    cur.execute("DELETE FROM approval_grants WHERE run_scope = ?", (rec.run_scope,))
    cur.execute(
        "INSERT INTO approval_grants (run_scope, approval_id, granted_usd, remaining_usd, granted_by, created_at,"
        " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (rec.run_scope, rec.id, grant_usd, grant_usd, by, now, expires),
    )


def _json(v: Any) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True, separators=(",", ":"))


def _approval(r: Row) -> ApprovalRecord:
    return ApprovalRecord(
        id=r["id"],
        audit_id=r["audit_id"],
        key_id=r["key_id"],
        label=r["label"],
        agent_run_id=r["agent_run_id"],
        vendor=r["vendor"],
        method=r["method"],
        endpoint=r["endpoint"],
        amount_usd=int(r["amount_usd"]),
        summary=json.loads(r["summary"]) if r["summary"] is not None else None,
        reasons=tuple(json.loads(r["reasons"])),
        state=r["state"],
        created_at=int(r["created_at"]),
        expires_at=int(r["expires_at"]),
        owner=r["owner"],
        decided_at=r["decided_at"],
        decided_by=r["decided_by"],
        reason=r["reason"],
        grant_usd=r["grant_usd"],
    )
