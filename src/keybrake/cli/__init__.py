"""`keybrake` command line: serve, and everything an operator does by hand.

One module per admin API resource (credentials, keys, budgets, alerts, approvals, audit, spend, admin tokens), plus
serve, db, vendors and demo; `common` holds what they share. Operator commands open the store directly
(same data dir / database URL and master key as the server), so they work whether or not a server
is running and need no admin token. A command's docstring is its `--help` text; every command and
option has help text (tests/test_cli_help.py walks the tree).
"""

from __future__ import annotations

import click

from keybrake.cli.alerts import alerts
from keybrake.cli.approvals import approvals
from keybrake.cli.audit import audit
from keybrake.cli.budgets import budgets
from keybrake.cli.credentials import credentials
from keybrake.cli.db import db, migrate_sqlite_to_postgres
from keybrake.cli.demo import demo
from keybrake.cli.keys import keys
from keybrake.cli.mcp import mcp
from keybrake.cli.serve import serve
from keybrake.cli.spend import spend_cmd
from keybrake.cli.tokens import admin_tokens
from keybrake.cli.vendors import vendors

__all__ = ["main"]


@click.group()
@click.version_option(package_name="keybrake", prog_name="keybrake")
def main() -> None:
    """Keybrake: put the brakes on your agent's keys."""


for _command in (
    serve,
    db,
    migrate_sqlite_to_postgres,
    credentials,
    keys,
    audit,
    spend_cmd,
    budgets,
    vendors,
    admin_tokens,
    alerts,
    approvals,
    demo,
    mcp,
):
    main.add_command(_command)
