"""Reservations, settlement, recovery and the object ledger: written once for every SQL engine.

Every method is synchronous DB-API code run by the engine's `_run` (see `sql_base.py`); none
awaits between BEGIN and COMMIT. The reservation is one transaction: the key's state and every
budget are read in it, the caps are checked and reserved by one guarded multi-row UPSERT (no
read-modify-write in Python), and the in-flight audit row is written; counters are always
locked in one order (`lock_order`), so concurrent transactions cannot deadlock on them.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import replace
from typing import Any

from keybrake.core.caps import SEND_COUNTERS
from keybrake.core.errors import CapHit, EnforcementUnavailable
from keybrake.core.ledger import ObjectCount
from keybrake.core.windows import resets_at, window_start
from keybrake.store.base import (
    AuditRow,
    BudgetRecord,
    CapSpec,
    CredentialRecord,
    DedupCheck,
    DedupHit,
    DedupOutcome,
    EarlierRequest,
    EarlierSettlement,
    KeyRecord,
    KeyState,
    ObjectGuard,
    PendingEstimate,
    ReservedItem,
    ReserveResult,
    RetryCheck,
    SettleJob,
    Settlement,
)
from keybrake.store.ids import audit_id_floor
from keybrake.store.sql_admin import AdminQueries
from keybrake.store.sql_alerts import AlertQueries
from keybrake.store.sql_base import Cursor, Row, blocking, lock_order
from keybrake.store.sql_budgets import BudgetQueries
from keybrake.store.sql_ledger import LedgerQueries, count_object, ledger_put, read_fact
from keybrake.store.sql_retention import RetentionQueries
from keybrake.store.sql_rows import _INSERT_AUDIT, _budget, _cred, _key, _row_params

_RESERVE = """
INSERT INTO counters (scope, cap, window_start, used, reserved, cap_limit)
VALUES {values}
ON CONFLICT (scope, cap, window_start) DO UPDATE
SET reserved = counters.reserved + excluded.reserved, cap_limit = excluded.cap_limit
WHERE excluded.cap_limit IS NULL OR counters.used + counters.reserved + excluded.reserved <= excluded.cap_limit
RETURNING scope, cap, used, reserved
"""
_KEY_STATE = """
SELECT k.status, k.expires_at, k.policy_version, k.label, k.vendor, k.credential, k.credential_gen,
       c.vendor AS c_vendor, c.secret_enc, c.base_url, {now} AS db_now
FROM vault_keys k LEFT JOIN credentials c ON c.name = k.credential AND c.generation = k.credential_gen
WHERE k.id = ?
"""
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
_SETTLE_AUDIT = f"UPDATE audit SET {', '.join(f'{c} = :{c}' for c in _SETTLE_COLS)} WHERE id = :id"
_SETTLE = """
UPDATE counters SET reserved = reserved - :amount, used = used + :actual
WHERE scope = :scope AND cap = :cap AND window_start = :ws
RETURNING used
"""


class SQLStore(AdminQueries, BudgetQueries, AlertQueries, LedgerQueries, RetentionQueries):
    """The store logic shared by the SQLite and PostgreSQL engines."""

    @functools.cached_property
    def _key_state_sql(self) -> str:
        return _KEY_STATE.format(now=self.NOW_SQL)

    # -- meta and instances ---------------------------------------------------------------

    @blocking
    def get_meta(self, name: str) -> bytes | None:
        rows = self._read("SELECT value FROM kb_meta WHERE name = ?", (name,))
        return bytes(rows[0]["value"]) if rows else None

    @blocking
    def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        with self._tx() as cur:
            cur.execute("INSERT INTO kb_meta (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING", (name, value))
            return bytes(cur.execute("SELECT value FROM kb_meta WHERE name = ?", (name,)).fetchone()[0])

    @blocking
    def register_instance(self, instance_id: str, hostname: str, pid: int) -> None:
        self._heartbeat(instance_id, hostname, pid)

    @blocking
    def heartbeat(self, instance_id: str, hostname: str, pid: int) -> None:
        """Renew this process's lease; re-registers it if another replica took it for dead."""
        self._heartbeat(instance_id, hostname, pid)

    @blocking
    def probe_write(self) -> None:
        self._write("UPDATE counters SET used = used WHERE scope = ''")

    @blocking
    def deregister_instance(self, instance_id: str) -> None:
        self._write("DELETE FROM instances WHERE id = ?", (instance_id,))

    def _heartbeat(self, instance_id: str, hostname: str, pid: int) -> None:
        now = self.now_ms()
        self._write(
            "INSERT INTO instances (id, hostname, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            (instance_id, hostname, pid, now, now),
        )

    @blocking
    def recover_in_flight(
        self, instance_id: str, hostname: str, stale_ms: int, max_flight_ms: int | None = None
    ) -> int:
        """Mark rows owned by dead processes `outcome_unknown`, keeping their reservations.

        A process is dead when its lease (heartbeat) is older than `stale_ms`, or at once when it
        ran on this host and its pid is gone. Any replica may do this for any other. A row in
        flight longer than `max_flight_ms` (past any upstream timeout: its settlement was lost)
        is marked too, whoever owns it; if its settlement does land later, it still settles it.
        """
        now = self.now_ms()
        dead: list[str] = []
        for r in self._read("SELECT id, hostname, pid, heartbeat_at FROM instances WHERE id != ?", (instance_id,)):
            if r["heartbeat_at"] < now - stale_ms or (r["hostname"] == hostname and not _pid_alive(r["pid"])):
                dead.append(r["id"])
        with self._tx() as cur:
            for d in dead:
                cur.execute("DELETE FROM instances WHERE id = ?", (d,))
            # One statement, so the owners it sees and the rows it marks are one snapshot: a
            # process registers before it writes its first in-flight row.
            orphaned = cur.execute(
                "UPDATE audit SET verdict = 'outcome_unknown', reason = ?, cost_source = 'estimate',"
                " cost_usd = reserved_usd WHERE verdict = 'in_flight' AND reservation IS NOT NULL"
                " AND (NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = audit.owner) OR id < ?) RETURNING id",
                (
                    "Keybrake stopped while this request was in flight; the vendor may have acted. "
                    "Its reservation is kept until reconciled.",
                    audit_id_floor(now - max_flight_ms) if max_flight_ms is not None else "",
                ),
            ).fetchall()
            for r in orphaned:
                cur.execute("UPDATE dedup SET state = 'unknown' WHERE row_id = ? AND state = 'in_flight'", (r[0],))
        return len(orphaned)

    # -- hot path -------------------------------------------------------------------------

    @blocking
    def key_by_hash(self, token_hash: str) -> KeyRecord | None:
        rows = self._read("SELECT * FROM vault_keys WHERE token_hash = ?", (token_hash,))
        return _key(rows[0]) if rows else None

    @blocking
    def credential(self, name: str) -> CredentialRecord | None:
        rows = self._read("SELECT * FROM credentials WHERE name = ?", (name,))
        return _cred(rows[0]) if rows else None

    @blocking
    def reserve(
        self,
        key_id: str,
        policy_version: int,
        caps: list[CapSpec],
        row: AuditRow,
        owner: str,
        retry: RetryCheck | None = None,
        dedup: DedupCheck | None = None,
        guard: ObjectGuard | None = None,
    ) -> ReserveResult:
        try:
            return self._reserve(key_id, policy_version, caps, row, owner, retry, dedup, guard)
        except _CapRefused as refused:
            cap = refused.cap
            assert cap.limit is not None
            used = self._read(
                "SELECT used + reserved FROM counters WHERE scope = ? AND cap = ? AND window_start = ?",
                (refused.scope, cap.counter, refused.ws),
            )
            hit = CapHit(
                cap.scope,
                cap.scope_id,
                cap.name,
                cap.limit,
                used[0][0] if used else 0,
                cap.amount,
                resets_at(cap.window, refused.ws, cap.timezone),
                cap.is_usd,
            )
            return ReserveResult(KeyState.OK, cap_hit=hit)

    def _reserve(
        self,
        key_id: str,
        policy_version: int,
        caps: list[CapSpec],
        row: AuditRow,
        owner: str,
        retry: RetryCheck | None,
        dedup: DedupCheck | None,
        guard: ObjectGuard | None = None,
    ) -> ReserveResult:
        with self._tx() as cur:
            # First: a budget being created or changed waits for this reservation, or this one
            # waits for it and then reads its new definition (sql_budgets.py). Taken before any
            # other lock, so no cycle can form with settlements.
            self._lock_budgets(cur, exclusive=False)
            k = cur.execute(self._key_state_sql, (key_id,)).fetchone()
            if k is None:
                return ReserveResult(KeyState.MISSING)
            now = self._txn_now(k["db_now"])  # windows and expiry from the store's clock
            state = KeyState.OK
            if k["status"] == "revoked":
                state = KeyState.REVOKED
            elif k["expires_at"] <= now:
                state = KeyState.EXPIRED
            elif k["policy_version"] != policy_version:
                state = KeyState.CHANGED
            if state is not KeyState.OK:
                full = cur.execute("SELECT * FROM vault_keys WHERE id = ?", (key_id,)).fetchone()
                return ReserveResult(state, key=_key(full))
            if guard is not None:
                # One write per object in flight: serialised across replicas by the lock, then
                # checked against committed in-flight rows and the facts the request was priced from.
                self._lock_idempotency(cur, f"object:{k['credential']}", guard.object_ref)
                busy = cur.execute(
                    "SELECT id FROM audit WHERE credential = ? AND object_ref = ? AND verdict = 'in_flight' LIMIT 1",
                    (k["credential"], guard.object_ref),
                ).fetchone()
                if busy is not None:
                    return ReserveResult(KeyState.OK, object_busy=f"{busy[0]} is still in flight")
                if guard.priced_from_fact and read_fact(cur, k["credential"], guard.object_ref) != guard.fact:
                    return ReserveResult(KeyState.OK, object_busy="its facts changed since this request was priced")
            earlier = None
            if retry is not None:
                self._lock_idempotency(cur, key_id, retry.idempotency_key)
                earlier = self._earlier(cur, key_id, retry, now)
            if earlier is not None:
                if earlier.verdict == "in_flight":
                    return ReserveResult(KeyState.OK, retry_of=earlier)
                # The first request already counted the money and the sends; this one counts as a request.
                caps = [replace(c, amount=0) if c.is_usd or c.counter in SEND_COUNTERS else c for c in caps]
                row.reserved_usd, row.cost_source, row.cost_kind = 0, "none", "none"
            elif dedup is not None:
                hit = _dedup_claim(cur, key_id, dedup, row.id, now)
                if hit is not None:
                    return ReserveResult(KeyState.OK, dedup_of=hit)
            # Every budget covering the key, read in this transaction: a budget created or changed
            # before this request applies to it.
            usd = next((c.amount for c in caps if c.scope == "key" and c.counter == "total_usd"), 0)
            for budget in _budgets(cur):
                if budget.covers(k["label"], k["vendor"], k["credential"]):
                    caps = [*caps, *budget.caps(usd)]
            items: list[ReservedItem] = []
            for cap in caps:
                ws = window_start(cap.window, now, cap.timezone)
                scope = f"{cap.scope}:{cap.scope_id}"
                if cap.limit is not None and cap.amount > cap.limit:
                    raise _CapRefused(cap, scope, ws)
                items.append(ReservedItem(scope, cap.counter, ws, cap.amount, cap.is_usd))
            # One guarded UPSERT for every counter, rows in lock order: the key's, then budgets by id.
            params: dict[str, Any] = {}
            values: list[str] = []
            order = sorted(range(len(items)), key=lambda j: lock_order(*_counter_key(items[j])))
            for i in order:
                cap, item = caps[i], items[i]
                values.append(f"(:s{i}, :c{i}, :w{i}, 0, :a{i}, :l{i})")
                params.update(
                    {
                        f"s{i}": item.counter_scope,
                        f"c{i}": cap.counter,
                        f"w{i}": item.window_start,
                        f"a{i}": cap.amount,
                        f"l{i}": cap.limit,
                    }
                )
            rows = cur.execute(_RESERVE.format(values=", ".join(values)), params).fetchall()
            got = {(r["scope"], r["cap"]): r for r in rows}
            remaining: int | None = None
            for cap, item in zip(caps, items, strict=True):
                r = got.get((item.counter_scope, cap.counter))
                if r is None:  # the guard refused this counter: the whole transaction rolls back
                    raise _CapRefused(cap, item.counter_scope, item.window_start)
                if cap.is_usd and cap.limit is not None:
                    left = cap.limit - r["used"] - r["reserved"]
                    remaining = left if remaining is None else min(remaining, left)
            fingerprint, object_ref = retry.fingerprint if retry else None, guard.object_ref if guard else None
            cur.execute(_INSERT_AUDIT, _row_params(row, owner, items, fingerprint, object_ref))
            cred = None
            if k["c_vendor"] is not None:
                cred = CredentialRecord(
                    k["credential"],
                    k["c_vendor"],
                    bytes(k["secret_enc"]),
                    "",
                    k["base_url"],
                    None,
                    0,
                    None,
                    k["credential_gen"],
                )
            return ReserveResult(KeyState.OK, items=items, remaining_usd=remaining, credential=cred, retry_of=earlier)

    @staticmethod
    def _earlier(cur: Cursor, key_id: str, retry: RetryCheck, now: int) -> EarlierRequest | None:
        # Only an earlier request that may have moved money makes this one a retry: still in
        # flight, outcome unknown, or answered with what the vendor stores under the key.
        cached = sorted(retry.cached_statuses) or [-1]
        marks = ", ".join("?" for _ in cached)
        r = cur.execute(
            "SELECT id, verdict FROM audit WHERE key_id = ? AND idempotency_key = ? AND fingerprint = ?"
            " AND id >= ? AND (verdict IN ('in_flight', 'outcome_unknown') OR (verdict = 'allowed' AND"
            f" ((upstream_status >= 200 AND upstream_status < 300) OR upstream_status IN ({marks}))))"
            " ORDER BY id LIMIT 1",
            (key_id, retry.idempotency_key, retry.fingerprint, audit_id_floor(now - retry.window_ms), *cached),
        ).fetchone()
        return EarlierRequest(r["id"], r["verdict"]) if r else None

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
            moves.sort(key=lambda m: lock_order(*_counter_key(m[1])))
            used: dict[tuple[int, str, str], Row | None] = {}
            for job, it in moves:
                used[(id(job), it.counter_scope, it.counter)] = _move(cur, it, it.settled_amount(job.settlement))
            for job in jobs:
                _settle_one(cur, job, used, job.row.id in open_ids, self.FOR_UPDATE)

    @blocking
    def count_request(self, key_id: str, window_start: int) -> None:
        """Count one request in a key's hourly request counter, outside any reservation."""
        self._write(
            "INSERT INTO counters (scope, cap, window_start, used, reserved, cap_limit)"
            " VALUES (?, 'hourly_requests', ?, 1, 0, NULL)"
            " ON CONFLICT (scope, cap, window_start) DO UPDATE SET used = counters.used + 1",
            (f"key:{key_id}", window_start),
        )

    @blocking
    def insert_audit(self, row: AuditRow) -> None:
        self._write(_INSERT_AUDIT, _row_params(row, None, None))

    # -- reconciliation -------------------------------------------------------------------

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

    # -- dedup ----------------------------------------------------------------------------

    @blocking
    def dedup_get(self, key_id: str, fingerprint: str) -> DedupHit | None:
        rows = self._read(
            "SELECT row_id, state, answer_enc FROM dedup WHERE key_id = ? AND fingerprint = ? AND expires_at > ?",
            (key_id, fingerprint, self.now_ms()),
        )
        return _dedup_hit(rows[0]) if rows else None

    @blocking
    def dedup_purge(self) -> int:
        with self._tx() as cur:
            return cur.execute("DELETE FROM dedup WHERE expires_at <= ?", (self.now_ms(),)).rowcount


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
    cur: Cursor, job: SettleJob, used: dict[tuple[int, str, str], Row | None], is_open: bool, for_update: str
) -> None:
    """Complete a job's row once its counters moved (`used`: each moved counter's new `used`).

    A row no longer open (settled already) is left as it is; what the answer taught about vendor
    objects and the dedup entry is still recorded (both writes are idempotent).
    """
    row, items, settlement = job.row, job.items, job.settlement
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
        kept = items if settlement.keep_reservation else None
        params = _row_params(row, None, kept)
        cur.execute(_SETTLE_AUDIT, {c: params[c] for c in ("id", *_SETTLE_COLS)})
        if job.settles_earlier is not None:
            _settle_earlier(cur, job.settles_earlier, row.id, for_update)
    if job.ledger is not None:
        ledger_put(cur, job.ledger[0], job.ledger[1], row.ts)
    if job.count is not None and is_open and row.credential is not None:
        held = row.reserved_usd if settlement.keep_reservation else row.cost_usd
        count_object(cur, row.credential, job.count, row.id, held, items, for_update)
    if job.dedup is not None:
        _dedup_settle(cur, job.dedup, row.id)


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


def _budgets(cur: Cursor) -> list[BudgetRecord]:
    return [_budget(r) for r in cur.execute("SELECT * FROM budgets ORDER BY id").fetchall()]


def _dedup_claim(cur: Cursor, key_id: str, dedup: DedupCheck, row_id: str, now: int) -> DedupHit | None:
    """Claim the dedup entry for this request, or return the live entry of the request it repeats.

    The claim is a guarded UPSERT: a concurrent duplicate waits on the entry's row lock and then
    finds it live, so two duplicates can never both be sent (on any engine, any replica).
    """
    for _ in range(3):
        claimed = cur.execute(
            "INSERT INTO dedup (key_id, fingerprint, row_id, expires_at, state, answer_enc)"
            " VALUES (?, ?, ?, ?, 'in_flight', NULL) ON CONFLICT (key_id, fingerprint) DO UPDATE SET"
            " row_id = excluded.row_id, expires_at = excluded.expires_at, state = 'in_flight', answer_enc = NULL"
            " WHERE dedup.expires_at <= ? RETURNING row_id",
            (key_id, dedup.fingerprint, row_id, now + dedup.window_ms, now),
        ).fetchone()
        if claimed is not None:
            return None
        r = cur.execute(
            "SELECT row_id, state, answer_enc FROM dedup WHERE key_id = ? AND fingerprint = ? AND expires_at > ?",
            (key_id, dedup.fingerprint, now),
        ).fetchone()
        if r is not None:
            return _dedup_hit(r)
        # the live entry was released (nothing sent) between the two statements: claim again
    raise EnforcementUnavailable("the dedup entry kept changing under this request")


def _dedup_hit(r: Row) -> DedupHit:
    enc = r["answer_enc"]
    return DedupHit(r["row_id"], r["state"], bytes(enc) if enc is not None else None)


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


def _settle_earlier(cur: Cursor, earlier: EarlierSettlement, settled_by: str, for_update: str) -> None:
    """A retry's answer tells what the earlier outcome_unknown request did: settle its reservation."""
    _settle_kept(
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
    """Settle a reservation that was kept past the answer (unknown outcome, pending estimate)."""
    marks = ", ".join("?" for _ in verdicts)
    r = cur.execute(
        f"SELECT reservation, credential FROM audit WHERE id = ? AND verdict IN ({marks})"
        f" AND reservation IS NOT NULL{for_update}",
        (row_id, *verdicts),
    ).fetchone()
    if r is None:
        return False  # already settled (by a retry or an earlier pass)
    kept = [ReservedItem.from_json(v) for v in json.loads(r["reservation"])]
    for it in sorted(kept, key=lambda i: lock_order(*_counter_key(i))):
        # USD counters move to the real cost; the request was forwarded and the vendor has the
        # object (or answered the retry), so request and send counters count it.
        _move(cur, it, cost_usd if it.is_usd else it.amount)
    cur.execute(
        "UPDATE audit SET verdict = 'allowed', cost_usd = ?, cost_source = ?, cost_kind = ?, settled_by = ?,"
        " reservation = NULL, reason = COALESCE(?, reason) WHERE id = ?",
        (cost_usd, cost_source, cost_kind, settled_by, reason, row_id),
    )
    if count is not None and r["credential"] is not None:
        count_object(cur, r["credential"], count, row_id, cost_usd, kept, for_update)
    return True


class _CapRefused(Exception):
    """Raised inside the reservation transaction so that it rolls back as a whole."""

    def __init__(self, cap: CapSpec, scope: str, ws: int) -> None:
        self.cap, self.scope, self.ws = cap, scope, ws


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
