"""Schema migrations through Alembic, one history for every engine."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.command import upgrade
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

_DIR = Path(__file__).parent / "migrations"


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


def current_revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade_to_head(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            cfg = _config()
            cfg.attributes["connection"] = conn
            upgrade(cfg, "head")
    finally:
        engine.dispose()


def ensure_schema(url: str, *, migrate: bool) -> str:
    """Create an empty database, refuse an older one unless `migrate`, always refuse a newer one."""
    script = ScriptDirectory.from_config(_config())
    head = head_revision()
    current = current_revision(url)
    if current == head:
        return "current"
    if current is None:
        upgrade_to_head(url)
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
    upgrade_to_head(url)
    return "upgraded"
