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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from keybrake.errors import CapHit, EnforcementUnavailable
from keybrake.store.base import (
    AUDIT_FIELDS,
    AdminTokenRecord,
    AuditQuery,
    AuditRow,
    CapSpec,
    CounterValue,
    CredentialRecord,
    EarlierRequest,
    EarlierSettlement,
    KeyQuery,
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
from keybrake.store.windows import resets_at, window_start

_JSON_AUDIT = ("request_summary", "redacted_fields", "preflight_lookup", "metadata")
_AUDIT_COLS = (*AUDIT_FIELDS, "owner", "reservation", "fingerprint")
_INSERT_AUDIT = f"INSERT INTO audit ({', '.join(_AUDIT_COLS)}) VALUES ({', '.join(':' + c for c in _AUDIT_COLS)})"
# Guarded reservation: inserts the window's counter or adds to it only while it stays within
# the limit. No row comes back when the guard refuses, and nothing is changed.
_RESERVE = """
INSERT INTO counters (scope, cap, window_start, used, reserved, cap_limit)
VALUES {values}
ON CONFLICT (scope, cap, window_start) DO UPDATE
SET reserved = counters.reserved + excluded.reserved, cap_limit = excluded.cap_limit
WHERE excluded.cap_limit IS NULL OR counters.used + counters.reserved + excluded.reserved <= excluded.cap_limit
RETURNING cap, used, reserved
"""
_KEY_STATE = """
SELECT k.status, k.expires_at, k.policy_version, c.vendor AS c_vendor, c.secret_enc, c.base_url
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


def _row_params(
    row: AuditRow, owner: str | None, reservation: list[ReservedItem] | None, fingerprint: str | None = None
) -> dict[str, Any]:
    params = {f: getattr(row, f) for f in AUDIT_FIELDS}
    for f in _JSON_AUDIT:
        if params[f] is not None:
            params[f] = json.dumps(params[f], separators=(",", ":"), sort_keys=True)
    params["owner"] = owner
    params["fingerprint"] = fingerprint
    params["reservation"] = json.dumps([i.as_json() for i in reservation]) if reservation is not None else None
    return params


def _audit_dict(r: sqlite3.Row) -> dict[str, Any]:
    out = {f: r[f] for f in AUDIT_FIELDS}
    for f in _JSON_AUDIT:
        if out[f] is not None:
            out[f] = json.loads(out[f])
    return out


def _key(r: sqlite3.Row) -> KeyRecord:
    return KeyRecord(
        id=r["id"],
        vendor=r["vendor"],
        credential=r["credential"],
        label=r["label"],
        metadata=json.loads(r["metadata"]),
        policy=json.loads(r["policy"]),
        policy_version=r["policy_version"],
        status=r["status"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        revoked_at=r["revoked_at"],
        revoke_reason=r["revoke_reason"],
        issued_by=r["issued_by"],
    )


def _cred(r: sqlite3.Row) -> CredentialRecord:
    return CredentialRecord(
        name=r["name"],
        vendor=r["vendor"],
        secret_enc=bytes(r["secret_enc"]),
        secret_hint=r["secret_hint"],
        base_url=r["base_url"],
        livemode=None if r["livemode"] is None else bool(r["livemode"]),
        created_at=r["created_at"],
        rotated_at=r["rotated_at"],
    )


def _escape_like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class SQLiteStore:
    """The embedded engine. `clock` returns Unix ms; tests inject one to cross windows."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", clock: Callable[[], int] | None = None) -> None:
        self.path = path
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
        self._db.execute("PRAGMA mmap_size=268435456")
        self._db.execute("PRAGMA temp_store=MEMORY")

    def now_ms(self) -> int:
        return self._clock()

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        """One IMMEDIATE transaction; any database error means enforcement is unavailable."""
        cur = self._db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc
        try:
            yield cur
        except sqlite3.Error as exc:
            self._rollback(cur)
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc
        except BaseException:
            self._rollback(cur)
            raise
        else:
            try:
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(cur)
                raise EnforcementUnavailable(f"sqlite: {exc}") from exc

    @staticmethod
    def _rollback(cur: sqlite3.Cursor) -> None:
        try:
            cur.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _read(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc

    def _write(self, sql: str, params: Any = ()) -> int:
        with self._tx() as cur:
            return cur.execute(sql, params).rowcount

    async def close(self) -> None:
        self._db.close()

    async def ping(self) -> None:
        self._read("SELECT 1")

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
    ) -> ReserveResult:
        try:
            return self._reserve(key_id, policy_version, caps, row, owner, retry)
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
                resets_at(cap.window, refused.ws),
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
                caps = [replace(c, amount=0) if c.is_usd else c for c in caps]
                row.reserved_usd, row.cost_source, row.cost_kind = 0, "none", "none"
            items: list[ReservedItem] = []
            params: dict[str, Any] = {}
            values: list[str] = []
            for i, cap in enumerate(caps):
                ws = window_start(cap.window, now)
                scope = f"{cap.scope}:{cap.scope_id}"
                if cap.limit is not None and cap.amount > cap.limit:
                    raise _CapRefused(cap, scope, ws)
                items.append(ReservedItem(scope, cap.counter, ws, cap.amount, cap.is_usd))
                values.append(f"(:s{i}, :c{i}, :w{i}, 0, :a{i}, :l{i})")
                params.update(
                    {f"s{i}": scope, f"c{i}": cap.counter, f"w{i}": ws, f"a{i}": cap.amount, f"l{i}": cap.limit}
                )
            got = {r["cap"]: r for r in cur.execute(_RESERVE.format(values=", ".join(values)), params).fetchall()}
            remaining: int | None = None
            for cap, item in zip(caps, items, strict=True):
                r = got.get(cap.counter)
                if r is None:  # the guard refused this counter: the whole transaction rolls back
                    raise _CapRefused(cap, item.counter_scope, item.window_start)
                if cap.is_usd and cap.limit is not None:
                    left = cap.limit - r["used"] - r["reserved"]
                    remaining = left if remaining is None else min(remaining, left)
            cur.execute(_INSERT_AUDIT, _row_params(row, owner, items, retry.fingerprint if retry else None))
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

    # -- keys -----------------------------------------------------------------------------

    async def insert_key(self, key: KeyRecord, token_hash: str) -> None:
        self._write(
            "INSERT INTO vault_keys (id, token_hash, vendor, credential, label, metadata, policy, policy_version,"
            " status, created_at, expires_at, revoked_at, revoke_reason, issued_by) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.id,
                token_hash,
                key.vendor,
                key.credential,
                key.label,
                json.dumps(key.metadata),
                json.dumps(key.policy),
                key.policy_version,
                key.status,
                key.created_at,
                key.expires_at,
                key.revoked_at,
                key.revoke_reason,
                key.issued_by,
            ),
        )

    async def get_key(self, key_id: str) -> KeyRecord | None:
        rows = self._read("SELECT * FROM vault_keys WHERE id = ?", (key_id,))
        return _key(rows[0]) if rows else None

    async def list_keys(self, q: KeyQuery) -> list[KeyRecord]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        now = self.now_ms()
        if q.label_prefix is not None:
            where.append("label LIKE ? ESCAPE '\\'")
            params.append(_escape_like(q.label_prefix))
        if q.label is not None:
            where.append("label = ?")
            params.append(q.label)
        for col in ("vendor", "credential"):
            if getattr(q, col) is not None:
                where.append(f"{col} = ?")
                params.append(getattr(q, col))
        if q.status == "active":
            where.append("status = 'active' AND expires_at > ?")
            params.append(now)
        elif q.status == "expired":
            where.append("status = 'active' AND expires_at <= ?")
            params.append(now)
        elif q.status == "revoked":
            where.append("status = 'revoked'")
        for k, v in q.metadata.items():
            where.append("json_extract(metadata, ?) = ?")
            params += [f'$."{k}"', v]
        if q.cursor is not None:
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [q.cursor[0], q.cursor[0], q.cursor[1]]
        sql = f"SELECT * FROM vault_keys WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?"
        return [_key(r) for r in self._read(sql, (*params, q.limit))]

    async def update_key(
        self,
        key_id: str,
        expected_version: int,
        *,
        label: str | None,
        metadata: dict[str, str],
        policy: dict[str, Any],
        expires_at: int,
    ) -> bool:
        n = self._write(
            "UPDATE vault_keys SET label = ?, metadata = ?, policy = ?, expires_at = ?,"
            " policy_version = policy_version + 1 WHERE id = ? AND policy_version = ? AND status = 'active'",
            (label, json.dumps(metadata), json.dumps(policy), expires_at, key_id, expected_version),
        )
        return n == 1

    async def revoke_key(self, key_id: str, reason: str | None) -> KeyRecord | None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE vault_keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?,"
                " policy_version = policy_version + 1 WHERE id = ? AND status = 'active'",
                (self.now_ms(), reason, key_id),
            )
            r = cur.execute("SELECT * FROM vault_keys WHERE id = ?", (key_id,)).fetchone()
        return _key(r) if r else None

    async def revoke_keys(
        self, *, label_prefix: str | None, vendor: str | None, credential: str | None, reason: str | None
    ) -> tuple[int, int]:
        now = self.now_ms()
        where: list[str] = ["status = 'active'"]
        params: list[Any] = [now, reason]
        if label_prefix is not None:
            where.append("label LIKE ? ESCAPE '\\'")
            params.append(_escape_like(label_prefix))
        for col, val in (("vendor", vendor), ("credential", credential)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        n = self._write(
            "UPDATE vault_keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?,"
            f" policy_version = policy_version + 1 WHERE {' AND '.join(where)}",
            params,
        )
        return n, now

    async def counters_for(self, scope: str, counters: list[tuple[str, int]]) -> dict[str, CounterValue]:
        out: dict[str, CounterValue] = {}
        for name, ws in counters:
            rows = self._read(
                "SELECT used, reserved FROM counters WHERE scope = ? AND cap = ? AND window_start = ?",
                (scope, name, ws),
            )
            used, reserved = (rows[0]["used"], rows[0]["reserved"]) if rows else (0, 0)
            out[name] = CounterValue(used, reserved, ws)
        return out

    async def active_key_count(self, credential: str) -> int:
        rows = self._read(
            "SELECT count(*) FROM vault_keys WHERE credential = ? AND status = 'active' AND expires_at > ?",
            (credential, self.now_ms()),
        )
        return int(rows[0][0])

    # -- credentials ----------------------------------------------------------------------

    async def insert_credential(self, cred: CredentialRecord) -> bool:
        with self._tx() as cur:
            n = cur.execute(
                "INSERT INTO credentials (name, vendor, secret_enc, secret_hint, base_url, livemode, created_at,"
                " rotated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    cred.name,
                    cred.vendor,
                    cred.secret_enc,
                    cred.secret_hint,
                    cred.base_url,
                    cred.livemode,
                    cred.created_at,
                    cred.rotated_at,
                ),
            ).rowcount
        return n == 1

    async def rotate_credential(
        self, name: str, secret_enc: bytes, hint: str, base_url: str | None, livemode: bool | None
    ) -> bool:
        n = self._write(
            "UPDATE credentials SET secret_enc = ?, secret_hint = ?, base_url = ?, livemode = ?, rotated_at = ?"
            " WHERE name = ?",
            (secret_enc, hint, base_url, livemode, self.now_ms(), name),
        )
        return n == 1

    async def list_credentials(self) -> list[CredentialRecord]:
        return [_cred(r) for r in self._read("SELECT * FROM credentials ORDER BY created_at DESC, name")]

    async def delete_credential(self, name: str) -> bool:
        return self._write("DELETE FROM credentials WHERE name = ?", (name,)) == 1

    # -- admin tokens ---------------------------------------------------------------------

    async def insert_admin_token(self, rec: AdminTokenRecord, token_hash: str) -> None:
        self._write(
            "INSERT INTO admin_tokens (id, token_hash, scope, label, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (rec.id, token_hash, rec.scope, rec.label, rec.created_at, rec.revoked_at),
        )

    async def admin_token_by_hash(self, token_hash: str) -> AdminTokenRecord | None:
        rows = self._read(
            "SELECT id, scope, label, created_at, revoked_at FROM admin_tokens WHERE token_hash = ?", (token_hash,)
        )
        return AdminTokenRecord(**dict(rows[0])) if rows else None

    async def list_admin_tokens(self) -> list[AdminTokenRecord]:
        rows = self._read("SELECT id, scope, label, created_at, revoked_at FROM admin_tokens ORDER BY created_at DESC")
        return [AdminTokenRecord(**dict(r)) for r in rows]

    async def revoke_admin_token(self, token_id: str) -> bool:
        return (
            self._write(
                "UPDATE admin_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (self.now_ms(), token_id)
            )
            == 1
        )

    # -- reconciliation -------------------------------------------------------------------

    async def pending_estimates(self, older_than_ms: int, limit: int) -> list[PendingEstimate]:
        rows = self._read(
            "SELECT id, ts, key_id, vendor, credential, vendor_object_id, account_context, reserved_usd, cost_kind"
            " FROM audit WHERE verdict = 'allowed' AND cost_source = 'estimate' AND reservation IS NOT NULL"
            " AND vendor_object_id IS NOT NULL AND id < ? ORDER BY id LIMIT ?",
            (audit_id_floor(older_than_ms), limit),
        )
        return [PendingEstimate(**dict(r)) for r in rows]

    async def settle_pending(self, row_id: str, cost_usd: int, cost_source: str, cost_kind: str) -> bool:
        with self._tx() as cur:
            return _settle_kept(cur, row_id, cost_usd, cost_source, cost_kind, "reconciliation", ("allowed",), None)

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

    # -- audit ----------------------------------------------------------------------------

    async def get_audit(self, row_id: str) -> dict[str, Any] | None:
        rows = self._read(f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit WHERE id = ?", (row_id,))
        return _audit_dict(rows[0]) if rows else None

    async def query_audit(self, q: AuditQuery) -> list[dict[str, Any]]:
        where: list[str] = []
        params: list[Any] = []
        for col in ("key_id", "agent_run_id", "triggering_event_id", "vendor", "error_code", "customer_scope_id"):
            v = getattr(q, col)
            if v is not None:
                where.append(f"{col} = ?")
                params.append(v)
        if q.verdict is not None:
            if q.verdict == "denied":
                where.append("verdict LIKE 'denied\\_%' ESCAPE '\\'")
            else:
                where.append("verdict = ?")
                params.append(q.verdict)
        if q.label_prefix is not None:
            where.append("label LIKE ? ESCAPE '\\'")
            params.append(_escape_like(q.label_prefix))
        if q.idempotency_key_prefix is not None:
            where.append("idempotency_key LIKE ? ESCAPE '\\'")
            params.append(_escape_like(q.idempotency_key_prefix))
        if q.since is not None:
            where.append("id >= ?")
            params.append(audit_id_floor(q.since))
        if q.until is not None:
            where.append("id < ?")
            params.append(audit_id_floor(q.until))
        if q.cursor is not None:
            where.append("id < ?")
            params.append(q.cursor[1])
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit {clause} ORDER BY id DESC LIMIT ?"
        return [_audit_dict(r) for r in self._read(sql, (*params, q.limit))]


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
            actual = settlement.cost_usd if it.is_usd else (it.amount if settlement.forwarded else 0)
            got = cur.execute(
                _SETTLE,
                {
                    "scope": it.counter_scope,
                    "cap": it.counter,
                    "ws": it.window_start,
                    "amount": it.amount,
                    "actual": actual,
                },
            ).fetchone()
        if it.counter == job.daily_counter:
            row.cap_usage_after_usd = got[0] if got else None
    kept = items if settlement.keep_reservation else None
    params = _row_params(row, None, kept)
    cur.execute(_SETTLE_AUDIT, {c: params[c] for c in ("id", *_SETTLE_COLS)})
    if job.settles_earlier is not None:
        _settle_earlier(cur, job.settles_earlier, row.id)
    if job.ledger is not None:
        _ledger_put(cur, job.ledger[0], job.ledger[1], row.ts)


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
        # USD counters move to the real cost; the request itself was forwarded, so it counts.
        actual = cost_usd if it.is_usd else it.amount
        cur.execute(
            _SETTLE,
            {
                "scope": it.counter_scope,
                "cap": it.counter,
                "ws": it.window_start,
                "amount": it.amount,
                "actual": actual,
            },
        ).fetchone()
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
