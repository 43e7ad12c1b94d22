"""Admin side of every SQL engine: keys, credentials, admin tokens, idempotent issuance.

Nothing here is on the proxy's hot path; see `sql_reserve.py` and `sql_settle.py` for reservations
and settlement, `sql_audit.py` for audit and spend, `sql_budgets.py` for budgets.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from keybrake.store.records import (
    AdminTokenRecord,
    CounterUsage,
    CounterValue,
    CredentialInUse,
    CredentialRecord,
    KeyQuery,
    KeyRecord,
)
from keybrake.store.sql_base import SQLBase, blocking, report
from keybrake.store.sql_rows import _cred, _key, prefix_match

_INSERT_KEY = (
    "INSERT INTO vault_keys (id, token_hash, vendor, credential, label, metadata, policy, policy_version,"
    " status, created_at, expires_at, revoked_at, revoke_reason, issued_by, credential_gen) VALUES"
    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _key_params(key: KeyRecord, token_hash: str) -> tuple[Any, ...]:
    return (
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
        key.credential_gen,
    )


def _revocable(label_prefix: str | None, vendor: str | None, credential: str | None) -> tuple[str, list[Any]]:
    """The WHERE (and its parameters) of the keys a bulk revocation stops: status 'active' (an
    expired key not yet revoked included) and every given filter. `revoke_keys` revokes these
    rows; `revocable_keys` counts them first: one rule for both."""
    where: list[str] = ["status = 'active'"]
    params: list[Any] = []
    if label_prefix is not None:
        sql, args = prefix_match("label", label_prefix)
        where.append(sql)
        params += args
    for col, val in (("vendor", vendor), ("credential", credential)):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    return " AND ".join(where), params


class AdminQueries(SQLBase):
    """Keys, credentials, admin tokens and idempotent issuance (see `admin_roles.py`)."""

    # -- keys -----------------------------------------------------------------------------

    @blocking
    def insert_key(self, key: KeyRecord, token_hash: str) -> None:
        self._write(_INSERT_KEY, _key_params(key, token_hash))

    @blocking
    def issue_key(self, key: KeyRecord, token_hash: str) -> KeyRecord | None:
        """Insert `key` bound to its credential's current generation (None: no such credential).

        The credential row is read FOR SHARE in the same transaction, so a concurrent
        `delete_credential` (FOR UPDATE) either waits for this key to commit and then revokes it,
        or has deleted the row and this issue is refused: no key outlives its credential.
        """
        with self._tx() as cur:
            c = cur.execute(
                f"SELECT generation FROM credentials WHERE name = ? AND vendor = ?{self.FOR_SHARE}",
                (key.credential, key.vendor),
            ).fetchone()
            if c is None:
                return None
            bound = replace(key, credential_gen=c[0])
            cur.execute(_INSERT_KEY, _key_params(bound, token_hash))
            return bound

    @blocking
    def get_key(self, key_id: str) -> KeyRecord | None:
        rows = self._read("SELECT * FROM vault_keys WHERE id = ?", (key_id,))
        return _key(rows[0]) if rows else None

    @blocking
    def list_keys(self, q: KeyQuery) -> list[KeyRecord]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        now = self.now_ms()
        if q.label_prefix is not None:
            sql, args = prefix_match("label", q.label_prefix)
            where.append(sql)
            params += args
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
        self._metadata_filter(q.metadata, where, params)
        if q.cursor is not None:
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [q.cursor[0], q.cursor[0], q.cursor[1]]
        sql = f"SELECT * FROM vault_keys WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?"
        return [_key(r) for r in self._read(sql, (*params, q.limit))]

    @blocking
    def revoke_key(self, key_id: str, reason: str | None) -> KeyRecord | None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE vault_keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?,"
                " policy_version = policy_version + 1 WHERE id = ? AND status = 'active'",
                (self.now_ms(), reason, key_id),
            )
            r = cur.execute("SELECT * FROM vault_keys WHERE id = ?", (key_id,)).fetchone()
        return _key(r) if r else None

    @blocking
    def revoke_keys(
        self, *, label_prefix: str | None, vendor: str | None, credential: str | None, reason: str | None
    ) -> tuple[int, int]:
        now = self.now_ms()
        where, args = _revocable(label_prefix, vendor, credential)
        n = self._write(
            "UPDATE vault_keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?,"
            f" policy_version = policy_version + 1 WHERE {where}",
            [now, reason, *args],
        )
        return n, now

    @blocking
    def revocable_keys(
        self, *, label_prefix: str | None, vendor: str | None, credential: str | None, limit: int
    ) -> tuple[int, list[KeyRecord]]:
        where, args = _revocable(label_prefix, vendor, credential)
        n = self._read(f"SELECT count(*) FROM vault_keys WHERE {where}", args)[0][0]
        rows = self._read(
            f"SELECT * FROM vault_keys WHERE {where} ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit)
        )
        return int(n), [_key(r) for r in rows]

    @blocking
    def counters_for(self, scope: str, counters: list[tuple[str, int]]) -> dict[str, CounterValue]:
        out: dict[str, CounterValue] = {}
        for name, ws in counters:
            rows = self._read(
                "SELECT used, reserved FROM counters WHERE scope = ? AND cap = ? AND window_start = ?",
                (scope, name, ws),
            )
            used, reserved = (rows[0]["used"], rows[0]["reserved"]) if rows else (0, 0)
            out[name] = CounterValue(used, reserved, ws)
        return out

    @report
    def keys_near_caps(
        self, counters: list[tuple[str, int]], min_pct: int, now_ms: int, limit: int
    ) -> list[CounterUsage]:
        # One probe per (counter, window start) on ix_counters_window (window_start, scope, cap):
        # the current windows' rows only, keys' scopes only; the fullest first, at most `limit`.
        parts, params = [], []
        for name, ws in counters:
            parts.append(
                "SELECT c.scope, c.cap, c.window_start, c.used, c.reserved, c.cap_limit FROM counters c"
                " JOIN vault_keys k ON k.id = substr(c.scope, 5)"
                " WHERE c.window_start = ? AND substr(c.scope, 1, 4) = 'key:' AND c.cap = ?"
                " AND c.cap_limit > 0 AND (c.used + c.reserved) * 100 >= c.cap_limit * ?"
                " AND k.status = 'active' AND k.expires_at > ?"
            )
            params += [ws, name, min_pct, now_ms]
        if not parts:
            return []
        sql = (
            f"SELECT * FROM ({' UNION ALL '.join(parts)}) AS near"
            " ORDER BY (used + reserved) * 1.0 / cap_limit DESC, scope LIMIT ?"
        )
        return [CounterUsage(r[0], r[1], r[2], r[3], r[4], r[5]) for r in self._read(sql, (*params, limit))]

    @blocking
    def active_key_count(self, credential: str) -> int:
        rows = self._read(
            "SELECT count(*) FROM vault_keys WHERE credential = ? AND status = 'active' AND expires_at > ?",
            (credential, self.now_ms()),
        )
        return int(rows[0][0])

    # -- credentials ----------------------------------------------------------------------

    @blocking
    def insert_credential(self, cred: CredentialRecord) -> bool:
        with self._tx() as cur:
            n = cur.execute(
                "INSERT INTO credentials (name, vendor, secret_enc, secret_hint, base_url, livemode, created_at,"
                " rotated_at, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    cred.name,
                    cred.vendor,
                    cred.secret_enc,
                    cred.secret_hint,
                    cred.base_url,
                    cred.livemode,
                    cred.created_at,
                    cred.rotated_at,
                    cred.generation,
                ),
            ).rowcount
        return n == 1

    @blocking
    def rotate_credential(
        self, name: str, secret_enc: bytes, hint: str, base_url: str | None, livemode: bool | None
    ) -> bool:
        n = self._write(
            "UPDATE credentials SET secret_enc = ?, secret_hint = ?, base_url = ?, livemode = ?, rotated_at = ?"
            " WHERE name = ?",
            (secret_enc, hint, base_url, livemode, self.now_ms(), name),
        )
        return n == 1

    @blocking
    def list_credentials(self) -> list[CredentialRecord]:
        return [_cred(r) for r in self._read("SELECT * FROM credentials ORDER BY created_at DESC, name")]

    @blocking
    def delete_credential(self, name: str, *, revoke_keys: bool = False, reason: str | None = None) -> int | None:
        """Lock the credential row (FOR UPDATE), revoke its active keys if asked, delete it: one transaction.

        Returns how many keys were revoked, None when no credential has that name. Raises
        CredentialInUse (nothing changed) when active keys remain and `revoke_keys` is false.
        Keys being issued concurrently hold the row FOR SHARE (`issue_key`): the lock waits for
        them, and the revoke that follows sees them.
        """
        now = self.now_ms()
        with self._tx() as cur:
            c = cur.execute(f"SELECT generation FROM credentials WHERE name = ?{self.FOR_UPDATE}", (name,)).fetchone()
            if c is None:
                return None
            if not revoke_keys:
                active = cur.execute(
                    "SELECT count(*) FROM vault_keys WHERE credential = ? AND status = 'active' AND expires_at > ?",
                    (name, now),
                ).fetchone()[0]
                if active:
                    raise CredentialInUse(int(active))
            n = cur.execute(
                "UPDATE vault_keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?,"
                " policy_version = policy_version + 1 WHERE credential = ? AND status = 'active'",
                (now, reason, name),
            ).rowcount
            cur.execute("DELETE FROM credentials WHERE name = ?", (name,))
            return int(n)

    # -- admin tokens ---------------------------------------------------------------------

    @blocking
    def insert_admin_token(self, rec: AdminTokenRecord, token_hash: str) -> None:
        self._write(
            "INSERT INTO admin_tokens (id, token_hash, scope, label, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (rec.id, token_hash, rec.scope, rec.label, rec.created_at, rec.revoked_at),
        )

    @blocking
    def admin_token_by_hash(self, token_hash: str) -> AdminTokenRecord | None:
        rows = self._read(
            "SELECT id, scope, label, created_at, revoked_at FROM admin_tokens WHERE token_hash = ?", (token_hash,)
        )
        return AdminTokenRecord(**dict(rows[0])) if rows else None

    @blocking
    def list_admin_tokens(self) -> list[AdminTokenRecord]:
        rows = self._read("SELECT id, scope, label, created_at, revoked_at FROM admin_tokens ORDER BY created_at DESC")
        return [AdminTokenRecord(**dict(r)) for r in rows]

    @blocking
    def revoke_admin_token(self, token_id: str) -> bool:
        return (
            self._write(
                "UPDATE admin_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (self.now_ms(), token_id)
            )
            == 1
        )

    # -- idempotent issuance --------------------------------------------------------------

    @blocking
    def issuance_get(self, issuer: str, idempotency_key: str, since_ms: int) -> tuple[str, bytes] | None:
        rows = self._read(
            "SELECT body_hash, answer_enc FROM issuances WHERE issuer = ? AND idempotency_key = ? AND created_at >= ?",
            (issuer, idempotency_key, since_ms),
        )
        return (rows[0]["body_hash"], bytes(rows[0]["answer_enc"])) if rows else None

    @blocking
    def issuance_put(self, issuer: str, idempotency_key: str, body_hash: str, answer_enc: bytes) -> bool:
        """Record the first answer; False if one is already recorded (a concurrent duplicate)."""
        now = self.now_ms()
        with self._tx() as cur:
            cur.execute("DELETE FROM issuances WHERE created_at < ?", (now - 24 * 3_600_000,))
            n = cur.execute(
                "INSERT INTO issuances (issuer, idempotency_key, body_hash, answer_enc, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (issuer, idempotency_key, body_hash, answer_enc, now),
            ).rowcount
        return n == 1

    @blocking
    def purge_issuances(self) -> int:
        """Forget recorded key issuances older than 24 hours (their Idempotency-Key window)."""
        with self._tx() as cur:
            return int(
                cur.execute("DELETE FROM issuances WHERE created_at < ?", (self.now_ms() - 24 * 3_600_000,)).rowcount
            )
