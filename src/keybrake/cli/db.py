"""`keybrake db upgrade` and `keybrake migrate-sqlite-to-postgres`: the database itself."""

from __future__ import annotations

import dataclasses
import time

import click

from keybrake.cli.common import data_dir_opt, settings_for
from keybrake.cli.datadir import DB_NAME, require_data_dir
from keybrake.store.copy import CopyError, copy_sqlite_to_postgres
from keybrake.store.migrate import SchemaError, head_revision, upgrade_to_head
from keybrake.store.open import sqlalchemy_url
from keybrake.store.pg import is_postgres_url, redact_url


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@data_dir_opt
def db_upgrade(data_dir: str | None) -> None:
    """Migrate the database to this version's schema (back it up first)."""
    s = settings_for(data_dir)
    if not is_postgres_url(s.database_url):
        require_data_dir(s)  # a mistyped --data-dir is refused by name, never created
    try:
        upgrade_to_head(sqlalchemy_url(s.database_url, s.data_dir))
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"database schema is current ({head_revision()})")


@click.command("migrate-sqlite-to-postgres", short_help="Copy an embedded install into PostgreSQL.")
@data_dir_opt
@click.option(
    "--to",
    "target",
    envvar="KEYBRAKE_DATABASE_URL",
    required=True,
    help="The new, empty PostgreSQL database (postgresql://…; default KEYBRAKE_DATABASE_URL).",
)
@click.option("--force-live", is_flag=True, help="Copy even though a server seems to be running on the data dir.")
def migrate_sqlite_to_postgres(data_dir: str | None, target: str, force_live: bool) -> None:
    """Copy an embedded install (keys, credentials, counters, audit…) into an empty PostgreSQL database.

    Stop the server first. The copy is one transaction: all of it or nothing. Afterwards start
    every replica with KEYBRAKE_DATABASE_URL and the same master key as this install.
    """
    s = settings_for(data_dir)
    if not is_postgres_url(target):
        raise click.ClickException("--to must be a postgresql:// URL")
    require_data_dir(dataclasses.replace(s, database_url=None))  # the source: the embedded install
    src = s.data_dir / DB_NAME  # the file require_data_dir just found

    def progress(table: str, n: int) -> None:
        if table == "audit" and n % 100_000 == 0:
            click.echo(f"  audit: {n} rows", err=True)

    try:
        result = copy_sqlite_to_postgres(
            src, target, now_ms=int(time.time() * 1000), force_live=force_live, progress=progress
        )
    except CopyError as exc:
        raise click.ClickException(str(exc)) from None
    for table, n in result.rows.items():
        click.echo(f"{table}: {n}")
    click.echo(f"copied {src} to {redact_url(target)}; start the replicas with KEYBRAKE_DATABASE_URL set to it")
