"""Audit rows written in bulk by the database itself, as an agent's many cheap requests would leave them."""

from __future__ import annotations

import sqlite3
from typing import Any

from keybrake.store.ids import audit_id_floor
from tests.harness import KeybrakeThread


def agent_rows(kb: KeybrakeThread, key: dict[str, Any], n: int, ts: int, verdict: str = "denied_endpoint") -> None:
    """`n` audit rows of `key` at `ts`, as n cheap requests would leave them (written by the database)."""
    prefix = audit_id_floor(ts)[:14]
    args = (prefix, ts, key["id"], key["label"], verdict, n - 1)
    if kb.settings.database_url:
        import psycopg

        with psycopg.connect(kb.settings.database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO audit (id, ts, key_id, label, vendor, credential, method, path, verdict, cost_usd,"
                " reserved_usd, cost_source, cost_kind) SELECT %s || lpad(i::text, 16, '0'), %s, %s, %s, 'stripe',"
                " 'default', 'POST', '/v1/customers', %s, 0, 0, 'none', 'none' FROM generate_series(0, %s) AS i",
                args,
            )
            conn.execute("ANALYZE audit")
        return
    db = sqlite3.connect(kb.settings.data_dir / "keybrake.db", isolation_level=None)
    try:
        db.execute(
            "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < ?) INSERT INTO audit"
            " (id, ts, key_id, label, vendor, credential, method, path, verdict, cost_usd, reserved_usd,"
            " cost_source, cost_kind) SELECT ? || printf('%016d', i), ?, ?, ?, 'stripe', 'default', 'POST',"
            " '/v1/customers', ?, 0, 0, 'none', 'none' FROM c",
            (n - 1, *args[:5]),
        )
        db.execute("ANALYZE")
    finally:
        db.close()
