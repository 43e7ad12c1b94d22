"""The SQL engines' store: every method written once, as synchronous DB-API code run by the
engine's `_run` (see `sql_base.py`); none awaits between BEGIN and COMMIT.

The parts, by what they serve: `sql_reserve.py` (the reservation), `sql_settle.py` (settlement
and reconciliation), `sql_instances.py` (meta, leases, recovery), `sql_ledger.py` (the object
ledger), `sql_admin.py` (keys, credentials, admin tokens, issuances), `sql_audit.py` (audit
and spend reports), `sql_budgets.py`, `sql_alerts.py`, `sql_approvals.py`, `sql_sessions.py` (console sign-ins) and
`sql_retention.py`. This module adds
the proxy's small reads and writes outside a reservation.
"""

from __future__ import annotations

from keybrake.store.records import AuditRow, CredentialRecord, KeyRecord
from keybrake.store.reservations import DedupHit
from keybrake.store.sql_admin import AdminQueries
from keybrake.store.sql_alerts import AlertQueries
from keybrake.store.sql_approvals import ApprovalQueries
from keybrake.store.sql_audit import AuditQueries
from keybrake.store.sql_base import blocking, idempotent
from keybrake.store.sql_budgets import BudgetQueries
from keybrake.store.sql_instances import InstanceQueries
from keybrake.store.sql_ledger import LedgerQueries
from keybrake.store.sql_reserve import ReserveQueries, _dedup_hit
from keybrake.store.sql_retention import RetentionQueries
from keybrake.store.sql_rows import _INSERT_AUDIT_ONCE, _cred, _key, _row_params
from keybrake.store.sql_sessions import SessionQueries
from keybrake.store.sql_settle import SettleQueries


class SQLStore(
    ReserveQueries,
    SettleQueries,
    InstanceQueries,
    AdminQueries,
    AuditQueries,
    BudgetQueries,
    AlertQueries,
    LedgerQueries,
    RetentionQueries,
    ApprovalQueries,
    SessionQueries,
):
    """The store logic shared by the SQLite and PostgreSQL engines."""

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
    def count_request(self, key_id: str, window_start: int) -> None:
        """Count one request in a key's hourly request counter, outside any reservation."""
        self._write(
            "INSERT INTO counters (scope, cap, window_start, used, reserved, cap_limit)"
            " VALUES (?, 'hourly_requests', ?, 1, 0, NULL)"
            " ON CONFLICT (scope, cap, window_start) DO UPDATE SET used = counters.used + 1",
            (f"key:{key_id}", window_start),
        )

    @idempotent
    def insert_audit(self, row: AuditRow) -> None:
        """Write the row of a request that reserved nothing (a denial, a replay); once per id,
        however often it runs (a retry after a lost connection leaves one row)."""
        self._write(_INSERT_AUDIT_ONCE, _row_params(row, None, None))

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
