"""Copy an embedded (SQLite) install into PostgreSQL: `keybrake migrate-sqlite-to-postgres`.

Everything an install knows moves: the sealed pepper and canary (so vault keys still
authenticate and the same master key still opens the store), credentials, keys, budgets, admin
tokens, counters (spend so far, kept reservations), the object ledger, dedup entries, alert
destinations and their outbox, and every audit row. Process leases (`instances`) do not: they
belong to the processes that wrote them.

The copy is one PostgreSQL transaction: it lands whole or not at all. The target must be empty
(a new database); the source is read in one snapshot and must not be served while it is copied.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from keybrake.store.migrate import SchemaError, current_revision, ensure_schema, head_revision
from keybrake.store.pg_conn import sqlalchemy_pg_url
from keybrake.store.records import LEASE_STALE_MS

# Parents before children is not needed (no foreign keys), but audit goes last: it is the big one.
TABLES = (
    "kb_meta",
    "admin_tokens",
    "credentials",
    "vault_keys",
    "budgets",
    "counters",
    "issuances",
    "ledger",
    "ledger_counts",
    "dedup",
    "alert_destinations",
    "alert_outbox",
    "alert_fired",
    "audit",
)


class CopyError(Exception):
    pass


@dataclass(frozen=True)
class CopyResult:
    rows: dict[str, int]


def copy_sqlite_to_postgres(
    sqlite_path: Path,
    pg_url: str,
    *,
    now_ms: int,
    batch: int = 5000,
    force_live: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> CopyResult:
    if not sqlite_path.exists():
        raise CopyError(f"no Keybrake database at {sqlite_path}")
    src_url = f"sqlite:///{sqlite_path}"
    head = head_revision()
    if current_revision(src_url) != head:
        raise CopyError(f"the SQLite database is not at this Keybrake's schema ({head}); run 'keybrake db upgrade'")
    dst_url = sqlalchemy_pg_url(pg_url)
    try:
        ensure_schema(dst_url, migrate=False)
    except SchemaError as exc:
        raise CopyError(f"PostgreSQL: {exc}") from None
    dst_engine = sa.create_engine(dst_url, poolclass=sa.pool.NullPool)
    meta = sa.MetaData()
    meta.reflect(dst_engine, only=TABLES)
    copied: dict[str, int] = {}
    try:
        with closing(sqlite3.connect(sqlite_path, isolation_level=None)) as src, dst_engine.begin() as dst:
            src.execute("BEGIN")  # one read snapshot of the whole file
            if not force_live:
                live = src.execute(
                    "SELECT count(*) FROM instances WHERE heartbeat_at > ?", (now_ms - LEASE_STALE_MS,)
                ).fetchone()[0]
                if live:
                    raise CopyError(
                        "a Keybrake server is still running on this data directory (its lease was renewed in the "
                        "last 30 s); stop it first, so that nothing is written after the copy"
                    )
            for name in TABLES:
                n = dst.execute(sa.select(sa.func.count()).select_from(meta.tables[name])).scalar_one()
                if n:
                    raise CopyError(f"the PostgreSQL database is not empty ({name} has {n} rows); copy into a new one")
            for name in TABLES:
                copied[name] = _copy_table(src, dst, meta.tables[name], batch, progress)
            for name in TABLES:  # verify inside the transaction: commit only a complete copy
                n = dst.execute(sa.select(sa.func.count()).select_from(meta.tables[name])).scalar_one()
                if n != copied[name]:
                    raise CopyError(f"{name}: {n} rows in PostgreSQL after copying {copied[name]}")
    except sa.exc.OperationalError as exc:
        raise CopyError(f"database error, nothing was copied: {str(exc.orig).strip().splitlines()[0]}") from None
    except sqlite3.Error as exc:
        raise CopyError(f"SQLite: {exc}; nothing was copied") from None
    finally:
        dst_engine.dispose()
    return CopyResult(copied)


def _copy_table(
    src: sqlite3.Connection,
    dst: sa.Connection,
    table: sa.Table,
    batch: int,
    progress: Callable[[str, int], None] | None,
) -> int:
    cols = [c.name for c in table.columns]
    bools = {c.name for c in table.columns if isinstance(c.type, sa.Boolean)}
    order = ", ".join(c.name for c in table.primary_key.columns) or cols[0]
    result = src.execute(f"SELECT {', '.join(cols)} FROM {table.name} ORDER BY {order}")  # noqa: S608
    total = 0
    while chunk := result.fetchmany(batch):
        rows: list[dict[str, Any]] = []
        for r in chunk:
            row = dict(zip(cols, r, strict=True))
            for b in bools:  # SQLite keeps booleans as 0/1
                if row[b] is not None:
                    row[b] = bool(row[b])
            rows.append(row)
        dst.execute(table.insert(), rows)
        total += len(rows)
        if progress is not None:
            progress(table.name, total)
    return total
