"""`keybrake vendors …`: what the built-in vendors guard."""

from __future__ import annotations

import click


@click.group()
def vendors() -> None:
    """Built-in vendors."""


@vendors.command("guarded")
def vendors_guarded() -> None:
    """Endpoints refused unless a key names them literally (docs/policy.md, guarded endpoints)."""
    from keybrake.vendors import builtin_vendors

    for name, vendor in sorted(builtin_vendors().items()):
        for pattern in vendor.guarded:
            click.echo(f"{name}\t{pattern.text}")
