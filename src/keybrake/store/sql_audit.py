"""Audit and spend queries for every SQL engine: the operator's reports (`@report`), and the
audit rows retention may delete. Nothing here is on the proxy's hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keybrake.core.timefmt import DAY_MS
from keybrake.store.ids import audit_id_floor
from keybrake.store.records import AUDIT_FIELDS, SPEND_BUCKET_MS, AuditQuery, RecentRun, RunTotals, SpendRow
from keybrake.store.sql_base import SQLBase, blocking, report
from keybrake.store.sql_rows import _audit_dict, prefix_match

# Above every audit id (rows up to the end of year 9999): an upper bound that makes a walk from
# the newest row an index range on both engines, whatever the database's collation.
_TOP_ID = audit_id_floor(253_402_300_800_000)


class AuditQueries(SQLBase):
    """The audit log (rows, pages, export windows), spend totals, and retention's audit deletes."""

    # -- audit ----------------------------------------------------------------------------

    @blocking
    def get_audit(self, row_id: str) -> dict[str, Any] | None:
        rows = self._read(f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit WHERE id = ?", (row_id,))
        return _audit_dict(rows[0]) if rows else None

    @report
    def query_audit(self, q: AuditQuery) -> list[dict[str, Any]]:
        where: list[str] = []
        params: list[Any] = []
        for col in ("key_id", "agent_run_id", "triggering_event_id", "vendor", "error_code", "customer_scope_id"):
            v = getattr(q, col)
            if v is not None:
                where.append(f"{col} = ?")
                params.append(v)
        if q.verdict is not None:
            if q.verdict == "denied":
                where.append("substr(verdict, 1, 7) = 'denied_'")
            else:
                where.append("verdict = ?")
                params.append(q.verdict)
        if q.label_prefix is not None:
            sql, args = prefix_match("label", q.label_prefix)
            where.append(sql)
            params += args
        if q.idempotency_key_prefix is not None:
            sql, args = prefix_match("idempotency_key", q.idempotency_key_prefix)
            where.append(sql)
            params += args
        self._metadata_filter(q.metadata, where, params)
        _time_range(q, where, params)
        if q.cursor is not None:
            where.append("id < ?")
            params.append(q.cursor[1])
        if q.after_id is not None:
            where.append("id > ?")
            params.append(q.after_id)
        if q.through_id is not None:
            where.append("id <= ?")
            params.append(q.through_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order = "ASC" if q.ascending else "DESC"
        sql = f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit {clause} ORDER BY id {order} LIMIT ?"
        return [_audit_dict(r) for r in self._read(sql, (*params, q.limit))]

    @report
    def audit_window_end(self, q: AuditQuery, window: int) -> str | None:
        # Walks at most `window` entries of the id index: bounded whatever the filters match.
        where, params = ["id > ?"], [q.after_id or ""]
        _time_range(q, where, params)
        sql = f"SELECT id FROM audit WHERE {' AND '.join(where)} ORDER BY id LIMIT 1 OFFSET ?"
        rows = self._read(sql, (*params, window - 1))
        return str(rows[0][0]) if rows else None

    @report
    def audit_window_start(self, q: AuditQuery, window: int) -> tuple[str, int, str | None] | None:
        # Walks at most `window` + 1 entries of the id index downwards from the cursor (or the top).
        where, params = ["id < ?"], [q.cursor[1] if q.cursor is not None else _TOP_ID]
        _time_range(q, where, params)
        sql = f"SELECT id, ts FROM audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT 2 OFFSET ?"
        rows = self._read(sql, (*params, window - 1))
        if not rows:
            return None
        return str(rows[0][0]), int(rows[0][1]), str(rows[1][0]) if len(rows) > 1 else None

    @report
    def audit_run_totals(self, agent_run_id: str) -> RunTotals:
        # One run's rows on ix_audit_run (agent_run_id, id): bounded by the run, never the table.
        sql = (
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN verdict = 'allowed' THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN substr(verdict, 1, 7) = 'denied_' OR verdict = 'cap_exceeded'"
            " THEN 1 ELSE 0 END), 0),"
            " CAST(COALESCE(SUM(CASE WHEN cost_kind = 'refund' THEN 0 ELSE cost_usd END), 0) AS BIGINT),"
            " CAST(COALESCE(SUM(CASE WHEN cost_kind = 'refund' THEN cost_usd ELSE 0 END), 0) AS BIGINT),"
            " MIN(ts), MAX(ts) FROM audit WHERE agent_run_id = ?"
        )
        r = self._read(sql, (agent_run_id,))[0]
        return RunTotals(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), r[5], r[6])

    @report
    def recent_runs(self, window: int, limit: int) -> list[RecentRun]:
        # The latest `window` rows of the id index (a bounded walk), grouped by run.
        sql = (
            "SELECT agent_run_id, MAX(ts) AS last_ts FROM (SELECT agent_run_id, ts FROM audit WHERE id < ?"
            " ORDER BY id DESC LIMIT ?) AS latest WHERE agent_run_id IS NOT NULL"
            " GROUP BY agent_run_id ORDER BY last_ts DESC LIMIT ?"
        )
        return [RecentRun(str(r[0]), int(r[1])) for r in self._read(sql, (_TOP_ID, window, limit))]

    @report
    def count_audit_between(self, after_id: str, through_id: str) -> int:
        # Counted on the id index alone: no row is read or sent.
        rows = self._read("SELECT COUNT(*) FROM audit WHERE id > ? AND id <= ?", (after_id, through_id))
        return int(rows[0][0])

    @report
    def last_calls(self, key_ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for key_id in key_ids:  # ix_audit_key (key_id, id): the newest row of each key, one seek each
            rows = self._read("SELECT ts FROM audit WHERE key_id = ? ORDER BY id DESC LIMIT 1", (key_id,))
            if rows:
                out[key_id] = int(rows[0][0])
        return out

    # -- retention ------------------------------------------------------------------------

    @blocking
    def purgeable_audit(self, before_ms: int, limit: int, after_id: str = "") -> list[dict[str, Any]]:
        # Rows whose reservation is still kept (pending estimates, unknown outcomes) and rows
        # in flight stay: reconciliation and retries still settle them. Rows of a key still in
        # vault_keys stay: a budget created (or a key relabelled) later seeds from them, `total`
        # windows from all of them; a key goes (`purge_keys`) once it expired or was revoked
        # before the cutoff, and its rows become purgeable then.
        sql = (
            f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit WHERE id < ? AND id > ? AND reservation IS NULL"
            " AND verdict != 'in_flight' AND (key_id IS NULL OR NOT EXISTS"
            " (SELECT 1 FROM vault_keys k WHERE k.id = audit.key_id)) ORDER BY id LIMIT ?"
        )
        return [_audit_dict(r) for r in self._read(sql, (audit_id_floor(before_ms), after_id, limit))]

    @blocking
    def delete_audit(self, row_ids: list[str]) -> int:
        if not row_ids:
            return 0
        with self._tx() as cur:
            marks = ", ".join("?" for _ in row_ids)
            return int(cur.execute(f"DELETE FROM audit WHERE id IN ({marks})", row_ids).rowcount)

    @report
    def refusals_since(self, since_ms: int) -> list[tuple[str, str, int]]:
        # Walks ix_audit_refusals (error_code IS NOT NULL, by id) from `since_ms`: the day's
        # allowed calls are never read.
        rows = self._read(
            "SELECT verdict, error_code, COUNT(*) FROM audit WHERE id >= ? AND error_code IS NOT NULL"
            " GROUP BY verdict, error_code",
            (audit_id_floor(since_ms),),
        )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    # -- spend ----------------------------------------------------------------------------

    @report
    def spend(
        self, by: str, since: int | None, until: int | None, label_prefix: str | None, vendor: str | None
    ) -> list[SpendRow]:
        group = {"key": "key_id", "label": "label", "vendor": "vendor", "bucket": f"ts / {SPEND_BUCKET_MS}"}[by]
        # `+key_id` (SQLite): the time range (the primary key) must drive this scan, not ix_audit_key.
        where, params = [f"{self.NO_INDEX_PREFIX}key_id IS NOT NULL"], []
        if since is not None:
            where.append("id >= ?")
            params.append(audit_id_floor(since))
        if until is not None:
            where.append("id < ?")
            params.append(audit_id_floor(until))
        if label_prefix is not None:
            sql, args = prefix_match("label", label_prefix)
            where.append(sql)
            params += args
        if vendor is not None:
            where.append("vendor = ?")
            params.append(vendor)
        sql = (
            f"SELECT {group} AS g,"
            " CAST(COALESCE(SUM(CASE WHEN cost_kind = 'refund' THEN 0 ELSE cost_usd END), 0) AS BIGINT),"
            " CAST(COALESCE(SUM(CASE WHEN cost_kind = 'refund' THEN cost_usd ELSE 0 END), 0) AS BIGINT),"
            " COUNT(*), COALESCE(SUM(CASE WHEN substr(verdict, 1, 7) = 'denied_' THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN verdict = 'cap_exceeded' THEN 1 ELSE 0 END), 0)"
            f" FROM audit WHERE {' AND '.join(where)} GROUP BY {self.NO_INDEX_PREFIX}g"
        )
        return [SpendRow(*r) for r in self._read(sql, tuple(params))]

    @blocking
    def spend_days(self, since: int, until: int) -> list[tuple[str, str | None, int, int, int, int, int, int]]:
        """Audit totals per (vendor, label, UTC day) of the rows in [`since`, `until`) (Unix ms):
        (vendor, label, day start in Unix ms, charged µUSD, refunded µUSD, requests, denied,
        cap hits), summed as `spend` sums them. One pass over the range (the id index)."""
        sql = (
            f"SELECT vendor, label, ts / {DAY_MS} AS d,"
            " CAST(COALESCE(SUM(CASE WHEN cost_kind = 'refund' THEN 0 ELSE cost_usd END), 0) AS BIGINT),"
            " CAST(COALESCE(SUM(CASE WHEN cost_kind = 'refund' THEN cost_usd ELSE 0 END), 0) AS BIGINT),"
            " COUNT(*), COALESCE(SUM(CASE WHEN substr(verdict, 1, 7) = 'denied_' THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN verdict = 'cap_exceeded' THEN 1 ELSE 0 END), 0)"
            f" FROM audit WHERE {self.NO_INDEX_PREFIX}key_id IS NOT NULL AND id >= ? AND id < ?"
            f" GROUP BY {self.NO_INDEX_PREFIX}vendor, {self.NO_INDEX_PREFIX}label, d"
        )
        rows = self._read(sql, (audit_id_floor(since), audit_id_floor(until)))
        return [(r[0], r[1], int(r[2]) * DAY_MS, int(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7])) for r in rows]


def _time_range(q: AuditQuery, where: list[str], params: list[Any]) -> None:
    """Add `q.since` (inclusive) and `q.until` (exclusive), in Unix ms, as bounds on the audit id
    (ids start with their time, `audit_id_floor`): the id index serves the range."""
    if q.since is not None:
        where.append("id >= ?")
        params.append(audit_id_floor(q.since))
    if q.until is not None:
        where.append("id < ?")
        params.append(audit_id_floor(q.until))
