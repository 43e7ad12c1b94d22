"""Open the store named by the settings: embedded SQLite unless a PostgreSQL URL is given."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from keybrake.store.base import Store
from keybrake.store.migrate import ensure_schema
from keybrake.store.pg import PostgresStore
from keybrake.store.pg_conn import PGOptions, is_postgres_url, sqlalchemy_pg_url
from keybrake.store.sqlite import SQLiteStore


def sqlalchemy_url(database_url: str | None, data_dir: Path) -> str:
    if database_url and is_postgres_url(database_url):
        return sqlalchemy_pg_url(database_url)
    if database_url:
        return database_url
    return f"sqlite:///{data_dir / 'keybrake.db'}"


def open_store(
    database_url: str | None,
    data_dir: Path,
    *,
    migrate: bool,
    create: bool = True,
    sqlite_synchronous: str = "NORMAL",
    clock: Callable[[], int] | None = None,
    busy_timeout_ms: int = 2000,
    pg: PGOptions | None = None,
) -> Store:
    url = sqlalchemy_url(database_url, data_dir)
    if database_url and is_postgres_url(database_url):
        ensure_schema(url, migrate=migrate)
        return PostgresStore(database_url, pg, clock=clock)
    if not url.startswith("sqlite:///"):
        raise ValueError("KEYBRAKE_DATABASE_URL must start with postgresql:// (scale-out) or sqlite:/// (embedded)")
    path = url[len("sqlite:///") :]
    if not create and not Path(path).exists():
        raise FileNotFoundError(f"no Keybrake database at {path}; start 'keybrake serve' once first")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not Path(path).exists():
        # Sealed secrets and token hashes live here: owner-only, like the master key. SQLite
        # creates the -wal and -shm files with the database file's mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    ensure_schema(url, migrate=migrate)
    reports = pg or PGOptions()
    return SQLiteStore(
        path,
        synchronous=sqlite_synchronous,
        clock=clock,
        busy_timeout_ms=busy_timeout_ms,
        report_workers=reports.report_pool_size,
        report_timeout_ms=reports.report_timeout_ms,
        max_waiters=reports.max_waiters,
    )
