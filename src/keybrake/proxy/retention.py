"""Audit retention: rows older than KEYBRAKE_AUDIT_RETENTION_DAYS are deleted in small batches.

Each batch is one short transaction and the loop yields between batches, so the proxy's own
writes are never locked out for long. With KEYBRAKE_AUDIT_PURGE_EXPORT_DIR set, every batch is
appended (JSON lines, the export's fields) and fsynced to a file there before it is deleted.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from keybrake.admin.audit import jsonl_line
from keybrake.errors import EnforcementUnavailable
from keybrake.logs import event
from keybrake.store.base import Store
from keybrake.timefmt import DAY_MS, rfc3339

log = logging.getLogger("keybrake.retention")
BATCH = 2000
INTERVAL_S = 3600.0


async def purge(store: Store, days: int, export_dir: Path | None, *, batch: int = BATCH) -> int:
    """Delete every purgeable row older than `days`; returns how many were deleted."""
    # Fire-once alert marks outlive every window they guard after 40 days.
    await store.purge_fired(store.now_ms() - 40 * DAY_MS)
    if days <= 0:
        return 0
    before = store.now_ms() - days * DAY_MS
    deleted = 0
    while True:
        rows = await store.purgeable_audit(before, batch)
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
        await asyncio.sleep(0)  # let the proxy's requests in between batches
        if len(rows) < batch:
            break
    if deleted:
        event(log, "audit rows purged", deleted=deleted, older_than=rfc3339(before))
    return deleted


async def run_forever(store: Store, days: int, export_dir: Path | None) -> None:
    while True:
        try:
            await purge(store, days, export_dir)
        except (EnforcementUnavailable, OSError) as exc:
            event(log, "audit purge failed; nothing was deleted unexported", logging.ERROR, error=str(exc))
        await asyncio.sleep(INTERVAL_S)
