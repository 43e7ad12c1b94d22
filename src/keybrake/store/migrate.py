"""Schema migrations through Alembic, one history for every engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic.command import upgrade
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x6B62_6D69_6772  # "kbmigr": one schema change at a time per database


class SchemaError(Exception):
    """The database schema is not the one this code runs on."""


def _config() -> Config:
    cfg = Config(str(_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(_DIR))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


@contextmanager
def _schema_tx(url: str) -> Iterator[sa.Connection]:
    """One transaction for reading and changing the schema. On PostgreSQL it holds an advisory
    lock, so replicas starting together on an empty database migrate it once, not concurrently."""
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            yield conn
    except sa.exc.OperationalError as exc:
        raise SchemaError(f"cannot reach the database: {str(exc.orig).strip().splitlines()[0]}") from None
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    with _schema_tx(url) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: sa.Connection, revision: str = "head") -> None:
    cfg = _config()
    cfg.attributes["connection"] = conn
    upgrade(cfg, revision)


def upgrade_to_head(url: str, revision: str = "head") -> None:
    """Upgrade to `revision` (the head unless an older one is named: tests build old databases)."""
    with _schema_tx(url) as conn:
        _upgrade(conn, revision)


def ensure_schema(url: str, *, migrate: bool) -> str:
    """Create an empty database, refuse an older one unless `migrate`, always refuse a newer one."""
    script = ScriptDirectory.from_config(_config())
    head = head_revision()
    with _schema_tx(url) as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return "current"
        if current is None:
            _upgrade(conn)
            return "created"
        known = {rev.revision for rev in script.walk_revisions()}
        if current not in known:
            raise SchemaError(
                f"the database schema ({current}) is newer than this Keybrake ({head}); upgrade Keybrake "
                "or point it at another database"
            )
        if not migrate:
            raise SchemaError(
                f"the database schema ({current}) is older than this Keybrake ({head}); run "
                "'keybrake db upgrade' (back up first) or start with --migrate"
            )
        _upgrade(conn)
        return "upgraded"
