"""Retention: what grows with traffic and is older than KEYBRAKE_AUDIT_RETENTION_DAYS is deleted.

Audit rows first, then what grew with them and nothing live needs any more (store/sql_retention.py:
counters of ended windows, ledger objects past their lifetime, final alert deliveries, keys
expired or revoked before the cutoff); docs/operations.md lists every table and its bound.
Each batch is one short transaction and the loop yields between batches, so the proxy's own
writes are never locked out for long. With KEYBRAKE_AUDIT_PURGE_EXPORT_DIR set, every batch is
appended (JSON lines, the export's fields) and fsynced to a file there before it is deleted.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from keybrake.config import retention_error
from keybrake.core.audit_lines import jsonl_line
from keybrake.core.errors import EnforcementUnavailable
from keybrake.core.timefmt import DAY_MS, rfc3339
from keybrake.jobs.base import Job
from keybrake.logs import event
from keybrake.store.base import RetentionStore

log = logging.getLogger("keybrake.retention")
BATCH = 2000
INTERVAL_S = 3600.0
# Every table docs/operations.md's retention table bounds (`ledger_counts` goes with `ledger`).
TABLES = ("audit", "counters", "ledger", "alert_outbox", "vault_keys", "alert_fired", "dedup", "issuances")


async def purge(store: RetentionStore, days: int, export_dir: Path | None, *, batch: int = BATCH) -> int:
    """Delete every purgeable row older than `days`; returns how many audit rows were deleted."""
    return (await purge_all(store, days, export_dir, batch=batch))["audit"]


async def purge_all(store: RetentionStore, days: int, export_dir: Path | None, *, batch: int = BATCH) -> dict[str, int]:
    """Apply retention to every table that grows with traffic; returns rows deleted per table
    (every name of TABLES; `ledger` counts objects, their `ledger_counts` rows go with them).

    Raises EnforcementUnavailable (the store) or OSError (the export): audit rows are deleted
    only once exported. ValueError when 0 < `days` < MIN_RETENTION_DAYS (config.retention_error).

    Keys expired or revoked before the cutoff go first; audit rows of a key still in the store
    are never deleted (`purgeable_audit`), so a budget created or a key relabelled later is
    seeded from all of a live key's spend, its `total` window included.
    """
    if (why := retention_error("retention days", days)) is not None:
        raise ValueError(why)
    counts = dict.fromkeys(TABLES, 0)
    # Tables with bounds of their own, purged whatever R is (even 0): fire-once alert marks
    # outlive every window they guard after 40 days; dedup entries end with their window;
    # key issuances are replayed for 24 hours.
    counts["alert_fired"] = await store.purge_fired(store.now_ms() - 40 * DAY_MS)
    counts["dedup"] = await store.dedup_purge()
    counts["issuances"] = await store.purge_issuances()
    if days <= 0:
        return counts
    before = store.now_ms() - days * DAY_MS
    counts["vault_keys"] = await store.purge_keys(before, batch)
    counts["audit"] = await _purge_audit(store, before, export_dir, batch)
    counts["alert_outbox"] = await store.purge_outbox(before, batch)
    counts["counters"] = await store.purge_counters(before, batch)
    counts["ledger"] = await store.purge_ledger(before, batch)
    if any(counts.values()):
        event(log, "retention purged", older_than=rfc3339(before), **counts)
    return counts


async def _purge_audit(store: RetentionStore, before: int, export_dir: Path | None, batch: int) -> int:
    deleted, after = 0, ""
    while True:
        rows = await store.purgeable_audit(before, batch, after)
        if not rows:
            break
        if export_dir is not None:
            export_dir.mkdir(parents=True, exist_ok=True)
            path = export_dir / f"keybrake-audit-purged-{rfc3339(store.now_ms())[:10]}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, b"".join(jsonl_line(r) for r in rows))
                os.fsync(fd)
            finally:
                os.close(fd)
        deleted += await store.delete_audit([r["id"] for r in rows])
        after = rows[-1]["id"]
        await asyncio.sleep(0)  # let the proxy's requests in between batches
        if len(rows) < batch:
            break
    return deleted


class RetentionJob(Job):
    """`purge_all` at start and every INTERVAL_S (an hour) after the previous pass ended.

    A pass that fails (the store is down, or the export file cannot be written) deletes nothing
    unexported; the next pass tries again.
    """

    name = "retention"
    log = logging.getLogger("keybrake.retention")
    failure = "audit purge failed; nothing was deleted unexported"
    handled = (EnforcementUnavailable, OSError)
    first_pass_now = True

    def __init__(self, store: RetentionStore, days: int, export_dir: Path | None) -> None:
        """`days` is KEYBRAKE_AUDIT_RETENTION_DAYS, `export_dir` KEYBRAKE_AUDIT_PURGE_EXPORT_DIR."""
        self.store, self.days, self.export_dir = store, days, export_dir

    def delay_s(self) -> float:
        return INTERVAL_S

    async def run_once(self) -> int:
        """One retention pass; returns the rows deleted, every table together."""
        return sum((await purge_all(self.store, self.days, self.export_dir)).values())
