"""Embedded SQLite engine (stdlib sqlite3, WAL).

Every method runs synchronously on the caller's thread and never awaits between BEGIN and
COMMIT, so transactions from concurrent tasks cannot interleave (aiosqlite's thread hop would
cost ~10× per operation and interleave on a shared connection — FACTS.md). Reservations use
`BEGIN IMMEDIATE`, which takes SQLite's write lock up front: together with guarded UPSERTs this
makes the cap check exact across tasks and across processes sharing the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import replace
from typing import Any

from keybrake.errors import CapHit
from keybrake.store.base import (
    SEND_COUNTERS,
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
    LedgerEntry,
    PendingEstimate,
    ReservedItem,
    ReserveResult,
    RetryCheck,
    SettleJob,
    Settlement,
)
from keybrake.store.ids import audit_id_floor
from keybrake.store.sqlite_admin import SQLiteAdminQueries
from keybrake.store.sqlite_alerts import SQLiteAlerts
from keybrake.store.sqlite_rows import _INSERT_AUDIT, _budget, _cred, _key, _row_params
from keybrake.store.windows import resets_at, window_start

_RESERVE = """
INSERT INTO counters (scope, cap, window_start, used, reserved, cap_limit)
VALUES {values}
ON CONFLICT (scope, cap, window_start) DO UPDATE
SET reserved = counters.reserved + excluded.reserved, cap_limit = excluded.cap_limit
WHERE excluded.cap_limit IS NULL OR counters.used + counters.reserved + excluded.reserved <= excluded.cap_limit
RETURNING scope, cap, used, reserved
"""
_KEY_STATE = """
SELECT k.status, k.expires_at, k.policy_version, k.label, k.vendor, k.credential,
       c.vendor AS c_vendor, c.secret_enc, c.base_url
FROM vault_keys k LEFT JOIN credentials c ON c.name = k.credential WHERE k.id = ?
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


class SQLiteStore(SQLiteAdminQueries, SQLiteAlerts):
    """The embedded engine. `clock` returns Unix ms; tests inject one to cross windows."""

    # -- meta and instances ---------------------------------------------------------------

    async def get_meta(self, name: str) -> bytes | None:
        rows = self._read("SELECT value FROM kb_meta WHERE name = ?", (name,))
        return bytes(rows[0]["value"]) if rows else None

    async def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        with self._tx() as cur:
            cur.execute("INSERT INTO kb_meta (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING", (name, value))
            return bytes(cur.execute("SELECT value FROM kb_meta WHERE name = ?", (name,)).fetchone()[0])

    async def register_instance(self, instance_id: str, hostname: str, pid: int) -> None:
        now = self.now_ms()
        self._write(
            "INSERT INTO instances (id, hostname, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)",
            (instance_id, hostname, pid, now, now),
        )

    async def heartbeat(self, instance_id: str) -> None:
        self._write("UPDATE instances SET heartbeat_at = ? WHERE id = ?", (self.now_ms(), instance_id))

    async def recover_in_flight(self, instance_id: str, hostname: str, stale_ms: int) -> int:
        """Mark rows owned by dead processes `outcome_unknown`, keeping their reservations."""
        now = self.now_ms()
        dead: list[str] = []
        for r in self._read("SELECT id, hostname, pid, heartbeat_at FROM instances WHERE id != ?", (instance_id,)):
            if r["heartbeat_at"] < now - stale_ms or (r["hostname"] == hostname and not _pid_alive(r["pid"])):
                dead.append(r["id"])
        with self._tx() as cur:
            live = {r[0] for r in cur.execute("SELECT id FROM instances").fetchall()} - set(dead)
            rows = cur.execute("SELECT id, owner FROM audit WHERE verdict = 'in_flight'").fetchall()
            orphaned = [r["id"] for r in rows if r["owner"] not in live]
            for row_id in orphaned:
                cur.execute(
                    "UPDATE audit SET verdict = 'outcome_unknown', reason = ?, cost_source = 'estimate', "
                    "cost_usd = reserved_usd WHERE id = ? AND verdict = 'in_flight'",
                    (
                        "Keybrake stopped while this request was in flight; the vendor may have acted. "
                        "Its reservation is kept until reconciled.",
                        row_id,
                    ),
                )
                cur.execute("UPDATE dedup SET state = 'unknown' WHERE row_id = ? AND state = 'in_flight'", (row_id,))
            for d in dead:
                cur.execute("DELETE FROM instances WHERE id = ?", (d,))
        return len(orphaned)

    # -- hot path -------------------------------------------------------------------------

    async def key_by_hash(self, token_hash: str) -> KeyRecord | None:
        rows = self._read("SELECT * FROM vault_keys WHERE token_hash = ?", (token_hash,))
        return _key(rows[0]) if rows else None

    async def credential(self, name: str) -> CredentialRecord | None:
        rows = self._read("SELECT * FROM credentials WHERE name = ?", (name,))
        return _cred(rows[0]) if rows else None

    async def reserve(
        self,
        key_id: str,
        policy_version: int,
        caps: list[CapSpec],
        row: AuditRow,
        owner: str,
        retry: RetryCheck | None = None,
        dedup: DedupCheck | None = None,
    ) -> ReserveResult:
        try:
            return self._reserve(key_id, policy_version, caps, row, owner, retry, dedup)
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
    ) -> ReserveResult:
        now = self.now_ms()
        with self._tx() as cur:
            k = cur.execute(_KEY_STATE, (key_id,)).fetchone()
            if k is None:
                return ReserveResult(KeyState.MISSING)
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
            earlier = self._earlier(cur, key_id, retry, now) if retry is not None else None
            if earlier is not None:
                if earlier.verdict == "in_flight":
                    return ReserveResult(KeyState.OK, retry_of=earlier)
                # The first request already counted the money and the sends; this one counts as a request.
                caps = [replace(c, amount=0) if c.is_usd or c.counter in SEND_COUNTERS else c for c in caps]
                row.reserved_usd, row.cost_source, row.cost_kind = 0, "none", "none"
            elif dedup is not None:
                hit = _dedup_live(cur, key_id, dedup.fingerprint, now)
                if hit is not None:
                    return ReserveResult(KeyState.OK, dedup_of=hit)
            # Every budget covering the key, read in this transaction: a budget created or changed
            # before this request applies to it. Counters lock in a fixed order: key, then budgets by id.
            usd = next((c.amount for c in caps if c.scope == "key" and c.counter == "total_usd"), 0)
            for budget in _budgets(cur):
                if budget.covers(k["label"], k["vendor"], k["credential"]):
                    caps = [*caps, *budget.caps(usd)]
            items: list[ReservedItem] = []
            params: dict[str, Any] = {}
            values: list[str] = []
            for i, cap in enumerate(caps):
                ws = window_start(cap.window, now, cap.timezone)
                scope = f"{cap.scope}:{cap.scope_id}"
                if cap.limit is not None and cap.amount > cap.limit:
                    raise _CapRefused(cap, scope, ws)
                items.append(ReservedItem(scope, cap.counter, ws, cap.amount, cap.is_usd))
                values.append(f"(:s{i}, :c{i}, :w{i}, 0, :a{i}, :l{i})")
                params.update(
                    {f"s{i}": scope, f"c{i}": cap.counter, f"w{i}": ws, f"a{i}": cap.amount, f"l{i}": cap.limit}
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
            cur.execute(_INSERT_AUDIT, _row_params(row, owner, items, retry.fingerprint if retry else None))
            if dedup is not None and earlier is None:
                cur.execute(
                    "INSERT INTO dedup (key_id, fingerprint, row_id, expires_at, state, answer_enc)"
                    " VALUES (?, ?, ?, ?, 'in_flight', NULL) ON CONFLICT (key_id, fingerprint) DO UPDATE SET"
                    " row_id = excluded.row_id, expires_at = excluded.expires_at, state = 'in_flight',"
                    " answer_enc = NULL",
                    (key_id, dedup.fingerprint, row.id, now + dedup.window_ms),
                )
            cred = None
            if k["c_vendor"] is not None:
                cred = CredentialRecord("", k["c_vendor"], bytes(k["secret_enc"]), "", k["base_url"], None, 0, None)
            return ReserveResult(KeyState.OK, items=items, remaining_usd=remaining, credential=cred, retry_of=earlier)

    @staticmethod
    def _earlier(cur: sqlite3.Cursor, key_id: str, retry: RetryCheck, now: int) -> EarlierRequest | None:
        r = cur.execute(
            "SELECT id, verdict FROM audit WHERE key_id = ? AND idempotency_key = ? AND fingerprint = ?"
            " AND id >= ? AND verdict IN ('in_flight', 'allowed', 'outcome_unknown') ORDER BY id LIMIT 1",
            (key_id, retry.idempotency_key, retry.fingerprint, audit_id_floor(now - retry.window_ms)),
        ).fetchone()
        return EarlierRequest(r["id"], r["verdict"]) if r else None

    async def settle(
        self, row: AuditRow, items: list[ReservedItem], settlement: Settlement, daily_counter: str | None
    ) -> None:
        await self.settle_many([SettleJob(row, items, settlement, daily_counter)])

    async def settle_many(self, jobs: list[SettleJob]) -> None:
        with self._tx() as cur:
            for job in jobs:
                _settle_one(cur, job)

    async def insert_audit(self, row: AuditRow) -> None:
        self._write(_INSERT_AUDIT, _row_params(row, None, None))

    # -- reconciliation -------------------------------------------------------------------

    async def pending_estimates(
        self, older_than_ms: int, limit: int, *, vendor: str | None = None, after_id: str | None = None
    ) -> list[PendingEstimate]:
        rows = self._read(
            "SELECT id, ts, key_id, vendor, credential, vendor_object_id, account_context, reserved_usd, cost_kind"
            " FROM audit WHERE verdict = 'allowed' AND cost_source = 'estimate' AND reservation IS NOT NULL"
            " AND vendor_object_id IS NOT NULL AND id < ? AND id > ? AND (? IS NULL OR vendor = ?)"
            " ORDER BY id LIMIT ?",
            (audit_id_floor(older_than_ms), after_id or "", vendor, vendor, limit),
        )
        return [PendingEstimate(**dict(r)) for r in rows]

    async def settle_pending(self, row_id: str, cost_usd: int, cost_source: str, cost_kind: str) -> bool:
        with self._tx() as cur:
            return _settle_kept(cur, row_id, cost_usd, cost_source, cost_kind, "reconciliation", ("allowed",), None)

    # -- dedup ----------------------------------------------------------------------------

    async def dedup_get(self, key_id: str, fingerprint: str) -> DedupHit | None:
        rows = self._read(
            "SELECT row_id, state, answer_enc FROM dedup WHERE key_id = ? AND fingerprint = ? AND expires_at > ?",
            (key_id, fingerprint, self.now_ms()),
        )
        return _dedup_hit(rows[0]) if rows else None

    async def dedup_purge(self) -> int:
        with self._tx() as cur:
            return cur.execute("DELETE FROM dedup WHERE expires_at <= ?", (self.now_ms(),)).rowcount

    # -- object ledger --------------------------------------------------------------------

    async def ledger_get(self, credential: str, object_ids: list[str]) -> dict[str, LedgerEntry]:
        out: dict[str, LedgerEntry] = {}
        for oid in object_ids:
            rows = self._read(
                "SELECT object_id, kind, customer, account_context, currency, amount, amount_counted FROM ledger"
                " WHERE credential = ? AND object_id = ?",
                (credential, oid),
            )
            if rows:
                out[oid] = LedgerEntry(**dict(rows[0]))
        return out

    async def ledger_put(self, credential: str, entries: list[LedgerEntry]) -> None:
        with self._tx() as cur:
            _ledger_put(cur, credential, entries, self.now_ms())


def _move(cur: sqlite3.Cursor, it: ReservedItem, actual: int) -> sqlite3.Row | None:
    """Release an item's reservation and count `actual` instead; returns the counter's new `used`."""
    params = {
        "scope": it.counter_scope,
        "cap": it.counter,
        "ws": it.window_start,
        "amount": it.amount,
        "actual": actual,
    }
    row: sqlite3.Row | None = cur.execute(_SETTLE, params).fetchone()
    return row


def _settle_one(cur: sqlite3.Cursor, job: SettleJob) -> None:
    row, items, settlement = job.row, job.items, job.settlement
    settlement.apply_to(row)
    for it in items:
        if settlement.keep_reservation:
            got = (
                cur.execute(
                    "SELECT used FROM counters WHERE scope = ? AND cap = ? AND window_start = ?",
                    (it.counter_scope, it.counter, it.window_start),
                ).fetchone()
                if it.counter == job.daily_counter
                else None
            )
        else:
            got = _move(cur, it, it.settled_amount(settlement))
        if it.counter == job.daily_counter:
            row.cap_usage_after_usd = got[0] if got else None
    kept = items if settlement.keep_reservation else None
    params = _row_params(row, None, kept)
    cur.execute(_SETTLE_AUDIT, {c: params[c] for c in ("id", *_SETTLE_COLS)})
    if job.settles_earlier is not None:
        _settle_earlier(cur, job.settles_earlier, row.id)
    if job.ledger is not None:
        _ledger_put(cur, job.ledger[0], job.ledger[1], row.ts)
    if job.dedup is not None:
        _dedup_settle(cur, job.dedup, row.id)


def _budgets(cur: sqlite3.Cursor) -> list[BudgetRecord]:
    return [_budget(r) for r in cur.execute("SELECT * FROM budgets ORDER BY id").fetchall()]


def _dedup_live(cur: sqlite3.Cursor, key_id: str, fingerprint: str, now: int) -> DedupHit | None:
    r = cur.execute(
        "SELECT row_id, state, answer_enc FROM dedup WHERE key_id = ? AND fingerprint = ? AND expires_at > ?",
        (key_id, fingerprint, now),
    ).fetchone()
    return _dedup_hit(r) if r else None


def _dedup_hit(r: sqlite3.Row) -> DedupHit:
    enc = r["answer_enc"]
    return DedupHit(r["row_id"], r["state"], bytes(enc) if enc is not None else None)


def _dedup_settle(cur: sqlite3.Cursor, outcome: DedupOutcome, row_id: str) -> None:
    """Record how the first send of a dedup window ended (only if the entry is still this row's)."""
    where = "key_id = ? AND fingerprint = ? AND row_id = ?"
    if outcome.state == "release":  # nothing was sent: a duplicate may be sent
        cur.execute(f"DELETE FROM dedup WHERE {where}", (outcome.key_id, outcome.fingerprint, row_id))
    else:
        cur.execute(
            f"UPDATE dedup SET state = ?, answer_enc = ? WHERE {where}",
            (outcome.state, outcome.answer_enc, outcome.key_id, outcome.fingerprint, row_id),
        )


_LEDGER_PUT = """
INSERT INTO ledger (credential, object_id, kind, customer, account_context, currency, amount, amount_counted,
                    updated_at)
VALUES (:credential, :object_id, :kind, :customer, :account_context, :currency, :amount, :amount_counted, :now)
ON CONFLICT (credential, object_id) DO UPDATE SET
    customer = COALESCE(excluded.customer, ledger.customer),
    account_context = COALESCE(excluded.account_context, ledger.account_context),
    currency = COALESCE(excluded.currency, ledger.currency),
    amount = COALESCE(excluded.amount, ledger.amount),
    amount_counted = MAX(ledger.amount_counted, excluded.amount_counted),
    updated_at = excluded.updated_at
"""


def _ledger_put(cur: sqlite3.Cursor, credential: str, entries: list[LedgerEntry], now: int) -> None:
    for e in entries:
        cur.execute(_LEDGER_PUT, {**e.__dict__, "credential": credential, "now": now})


def _settle_earlier(cur: sqlite3.Cursor, earlier: EarlierSettlement, settled_by: str) -> None:
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
    )


def _settle_kept(
    cur: sqlite3.Cursor,
    row_id: str,
    cost_usd: int,
    cost_source: str,
    cost_kind: str,
    settled_by: str,
    verdicts: tuple[str, ...],
    reason: str | None,
) -> bool:
    """Settle a reservation that was kept past the answer (unknown outcome, pending estimate)."""
    marks = ", ".join("?" for _ in verdicts)
    r = cur.execute(
        f"SELECT reservation FROM audit WHERE id = ? AND verdict IN ({marks}) AND reservation IS NOT NULL",
        (row_id, *verdicts),
    ).fetchone()
    if r is None:
        return False  # already settled (by a retry or an earlier pass)
    for it in (ReservedItem.from_json(v) for v in json.loads(r["reservation"])):
        # USD counters move to the real cost; the request was forwarded and the vendor has the
        # object (or answered the retry), so request and send counters count it.
        _move(cur, it, cost_usd if it.is_usd else it.amount)
    cur.execute(
        "UPDATE audit SET verdict = 'allowed', cost_usd = ?, cost_source = ?, cost_kind = ?, settled_by = ?,"
        " reservation = NULL, reason = COALESCE(?, reason) WHERE id = ?",
        (cost_usd, cost_source, cost_kind, settled_by, reason, row_id),
    )
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
