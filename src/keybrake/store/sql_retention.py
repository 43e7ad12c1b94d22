"""Retention of everything that grows with traffic, beyond the audit rows (docs/operations.md, "Retention").

`jobs/retention.py` calls these with a cutoff (Unix ms: now − KEYBRAKE_AUDIT_RETENTION_DAYS);
each method deletes in short batches (one transaction each) and returns how many rows went.
What a live cap, budget or reservation still needs is never deleted:

- counters: a row goes once its window ended before the cutoff. The window's end is bounded by
  its start + MAX_WINDOW_MS (the longest window, a local month, lasts at most 31 days and an
  hour), so rows whose `window_start` is older than cutoff − MAX_WINDOW_MS go; `total` windows
  (`window_start` = 0) never end and stay, except those of a purged key. A counter a kept
  reservation (pending estimate, unknown outcome, in flight) still has to settle into stays.
  A current window always starts after now − MAX_WINDOW_MS, so it is never touched.
- ledger and ledger_counts: an object's facts and counts go once nothing touched it (no answer,
  no counted row) since max(cutoff, now − OBJECT_LIFETIME_MS), and no row counting for it still
  holds a reservation. Stripe cannot capture an authorisation after 30 days; a later call on a
  purged object looks it up again (a pre-flight GET), as for any object Keybrake never saw.
- alert_outbox: deliveries in a final state (`delivered`, `failed`) created before the cutoff;
  pending deliveries stay until they are delivered or given up.
- vault_keys: keys that expired or were revoked before the cutoff, with no row still holding a
  reservation for them, go with their own counters (every window, `total` too): such a key can
  never be used again, and its token then answers 401 like any unknown token.

Bounded elsewhere: `dedup` (expired entries, every minute), `issuances` (24 h), `alert_fired`
(40 days), `instances` (one per running replica).
"""

from __future__ import annotations

import json
from typing import Any

from keybrake.core.timefmt import DAY_MS, HOUR_MS
from keybrake.store.ids import audit_id_floor
from keybrake.store.sql_base import SQLBase, blocking

MAX_WINDOW_MS = 31 * DAY_MS + HOUR_MS  # the longest cap window: a local month (with a DST hour)
OBJECT_LIFETIME_MS = 31 * DAY_MS  # a Stripe authorisation can be captured for at most 30 days
FINAL_DELIVERY_STATES = ("delivered", "failed")


class RetentionQueries(SQLBase):
    """Batch deletes for the retention loop; every method returns the number of rows deleted."""

    def _kept_counters(self) -> set[tuple[str, str, int]]:
        """Counters that a kept reservation (in flight, unknown outcome, pending estimate) settles into."""
        kept: set[tuple[str, str, int]] = set()
        for r in self._read("SELECT reservation FROM audit WHERE reservation IS NOT NULL"):
            try:
                items = json.loads(r[0])
            except (TypeError, ValueError):
                continue
            for it in items if isinstance(items, list) else []:
                if isinstance(it, list) and len(it) >= 3:
                    kept.add((str(it[0]), str(it[1]), int(it[2])))
        return kept

    @blocking
    def purge_counters(self, before_ms: int, batch: int) -> int:
        """Counter rows of windows that ended before `before_ms` (and not kept); see the module doc."""
        kept = self._kept_counters()
        newest_start = before_ms - MAX_WINDOW_MS
        deleted, after = 0, (0, "", "")
        while True:
            rows = self._read(
                "SELECT scope, cap, window_start FROM counters WHERE window_start > 0 AND window_start < ?"
                " AND (window_start > ? OR (window_start = ? AND (scope > ? OR (scope = ? AND cap > ?))))"
                " ORDER BY window_start, scope, cap LIMIT ?",
                (newest_start, after[0], after[0], after[1], after[1], after[2], batch),
            )
            if not rows:
                return deleted
            gone = [(r[0], r[1], int(r[2])) for r in rows if (r[0], r[1], int(r[2])) not in kept]
            deleted += self._delete_counters(gone)
            last = rows[-1]
            after = (int(last[2]), last[0], last[1])
            if len(rows) < batch:
                return deleted

    def _delete_counters(self, keys: list[tuple[str, str, int]]) -> int:
        n = 0
        if keys:
            with self._tx() as cur:
                for scope, cap, ws in keys:
                    n += cur.execute(
                        "DELETE FROM counters WHERE scope = ? AND cap = ? AND window_start = ?", (scope, cap, ws)
                    ).rowcount
        return n

    @blocking
    def purge_ledger(self, before_ms: int, batch: int) -> int:
        """Ledger objects (facts and counts) untouched since the cutoff and the object lifetime."""
        cutoff = min(before_ms, self.now_ms() - OBJECT_LIFETIME_MS)
        floor = audit_id_floor(max(cutoff, 0))
        deleted = 0
        while True:
            rows = self._read(
                "SELECT l.credential, l.object_id FROM ledger l WHERE l.updated_at < ? AND NOT EXISTS ("
                " SELECT 1 FROM ledger_counts c LEFT JOIN audit a ON a.id = c.row_id"
                " WHERE c.credential = l.credential AND c.object_id = l.object_id"
                " AND ((substr(c.row_id, 1, 4) = 'kbr_' AND c.row_id >= ?) OR a.reservation IS NOT NULL"
                " OR a.verdict = 'in_flight')) AND NOT EXISTS (SELECT 1 FROM audit f WHERE f.verdict = 'in_flight'"
                " AND f.credential = l.credential AND f.object_ref = l.object_id) ORDER BY l.updated_at LIMIT ?",
                (cutoff, floor, batch),
            )
            if not rows:
                return deleted
            with self._tx() as cur:
                for cred, oid in rows:
                    cur.execute("DELETE FROM ledger_counts WHERE credential = ? AND object_id = ?", (cred, oid))
                    deleted += cur.execute(
                        "DELETE FROM ledger WHERE credential = ? AND object_id = ?", (cred, oid)
                    ).rowcount
            if len(rows) < batch:
                return deleted

    @blocking
    def purge_outbox(self, before_ms: int, batch: int) -> int:
        """Alert deliveries in a final state, created before the cutoff."""
        marks = ", ".join("?" for _ in FINAL_DELIVERY_STATES)
        deleted = 0
        while True:
            ids = [
                r[0]
                for r in self._read(
                    f"SELECT id FROM alert_outbox WHERE created_at < ? AND state IN ({marks})"
                    " ORDER BY created_at LIMIT ?",
                    (before_ms, *FINAL_DELIVERY_STATES, batch),
                )
            ]
            deleted += self._delete_ids("alert_outbox", ids)
            if len(ids) < batch:
                return deleted

    @blocking
    def purge_keys(self, before_ms: int, batch: int) -> int:
        """Keys expired or revoked before the cutoff (no reservation kept for them), with their counters."""
        deleted = 0
        while True:
            ids = [
                r[0]
                for r in self._read(
                    "SELECT k.id FROM vault_keys k WHERE (k.expires_at < ? OR k.revoked_at < ?) AND NOT EXISTS ("
                    " SELECT 1 FROM audit a WHERE a.key_id = k.id AND (a.reservation IS NOT NULL"
                    " OR a.verdict = 'in_flight')) LIMIT ?",
                    (before_ms, before_ms, batch),
                )
            ]
            if ids:
                with self._tx() as cur:
                    for key_id in ids:
                        cur.execute("DELETE FROM counters WHERE scope = ?", (f"key:{key_id}",))
                        deleted += cur.execute("DELETE FROM vault_keys WHERE id = ?", (key_id,)).rowcount
            if len(ids) < batch:
                return deleted

    def _delete_ids(self, table: str, ids: list[Any]) -> int:
        if not ids:
            return 0
        with self._tx() as cur:
            marks = ", ".join("?" for _ in ids)
            return int(cur.execute(f"DELETE FROM {table} WHERE id IN ({marks})", ids).rowcount)
