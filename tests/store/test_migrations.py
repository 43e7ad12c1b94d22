"""Upgrading a database made by an earlier Keybrake: refused until migrated, nothing lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.command import upgrade

from keybrake.store import open_store
from keybrake.store.migrate import SchemaError, _config, current_revision, ensure_schema, head_revision


def _at_revision(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        cfg = _config()
        cfg.attributes["connection"] = conn
        upgrade(cfg, revision)
    engine.dispose()


@pytest.mark.sqlite_only
def test_an_0001_database_upgrades_to_head_keeping_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "keybrake.db"
    url = f"sqlite:///{db}"
    _at_revision(url, "0001")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO counters (scope, cap, window_start, used, reserved, cap_limit)"
            " VALUES ('key:vk_1', 'daily_usd', 0, 5, 1, 10)"
        )
    with pytest.raises(SchemaError, match="keybrake db upgrade"):
        ensure_schema(url, migrate=False)
    assert ensure_schema(url, migrate=True) == "upgraded"
    assert current_revision(url) == head_revision()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT used, reserved FROM counters").fetchall() == [(5, 1)]
        assert conn.execute("SELECT count(*) FROM dedup").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM budgets").fetchone() == (0,)
    store = open_store(None, tmp_path, migrate=False)
    assert store is not None
