"""`keybrake` command line: serve, and everything an operator does by hand.

One module per admin API resource (credentials, keys, budgets, alerts, approvals, audit, spend, admin tokens), plus
serve, db, vendors and demo; `common` holds what they share. Operator commands open the store directly
(same data dir / database URL and master key as the server), so they work whether or not a server
is running and need no admin token. A command's docstring is its `--help` text; every command and
option has help text (tests/test_cli_help.py walks the tree).
"""

from __future__ import annotations

import importlib
from collections.abc import MutableMapping

import click

__all__ = ["main"]

# Each command's module, imported only when that command runs or a listing needs it: `keybrake mcp`
# on an agent's machine loads neither the store nor the admin layer (≈ 1 s CPU saved at its start).
COMMANDS = {
    "serve": "keybrake.cli.serve:serve",
    "db": "keybrake.cli.db:db",
    "migrate-sqlite-to-postgres": "keybrake.cli.db:migrate_sqlite_to_postgres",
    "credentials": "keybrake.cli.credentials:credentials",
    "keys": "keybrake.cli.keys:keys",
    "audit": "keybrake.cli.audit:audit",
    "spend": "keybrake.cli.spend:spend_cmd",
    "budgets": "keybrake.cli.budgets:budgets",
    "vendors": "keybrake.cli.vendors:vendors",
    "admin-tokens": "keybrake.cli.tokens:admin_tokens",
    "alerts": "keybrake.cli.alerts:alerts",
    "approvals": "keybrake.cli.approvals:approvals",
    "demo": "keybrake.cli.demo:demo",
    "mcp": "keybrake.cli.mcp:mcp",
}


class LazyGroup(click.Group):
    """A click group whose subcommands (name → "module:attribute") are imported on first use
    (click's documented lazy-loading pattern: `list_commands` and `get_command` overridden)."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, attribute = self.lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command) or command.name != cmd_name:
                raise RuntimeError(f"{self.lazy[cmd_name]} is not the click command {cmd_name!r}")
            self.add_command(command)
        return super().get_command(ctx, cmd_name)

    def load_all(self) -> MutableMapping[str, click.Command]:
        """Every subcommand, imported (for walks over the whole tree: help checks, tests)."""
        ctx = click.Context(self)
        for name in self.list_commands(ctx):
            self.get_command(ctx, name)
        return self.commands


@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.version_option(package_name="keybrake", prog_name="keybrake")
def main() -> None:
    """Keybrake: put the brakes on your agent's keys."""
