"""`keybrake vendors …`: the registered vendors and what the built-in vendors guard."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import click

from keybrake.cli.common import print_json, table


@click.group()
def vendors() -> None:
    """Registered vendors (built in, or registered by a wrapper before the command runs)."""


@vendors.command("guarded")
def vendors_guarded() -> None:
    """Endpoints refused unless a key names them literally (docs/policy.md, guarded endpoints)."""
    from keybrake.vendors import build_vendors

    for name, vendor in sorted(build_vendors().items()):
        for pattern in vendor.guarded:
            click.echo(f"{name}\t{pattern.text}")


def vendor_rows() -> list[dict[str, Any]]:
    """Every registered vendor, in registration order: `{"name", "base_url", "upstream_hosts",
    "settings"}`. `base_url` is where requests go when a credential sets none; `upstream_hosts` the
    hosts a credential's `base_url` may name without `KEYBRAKE_UPSTREAM_HOSTS`; each setting is
    `{"env", "kind", "default", "value"}` — `value` the text set in this environment (None: unset,
    the default applies; not parsed here), `default` None for a file setting (the vendor's
    built-in table)."""
    from keybrake.vendors import build_vendors, registry

    built = build_vendors()
    rows = []
    for spec in registry.specs():
        vendor = built[spec.name]
        settings = [
            {
                "env": s.env,
                "kind": s.kind,
                "default": s.default if isinstance(s.default, int | float | Decimal | str) else None,
                "value": os.environ.get(s.env),
            }
            for s in spec.settings
        ]
        rows.append(
            {
                "name": spec.name,
                "base_url": vendor.default_base_url,
                "upstream_hosts": list(vendor.upstream_hosts),
                "settings": settings,
            }
        )
    return rows


@vendors.command("list")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON (with each setting's default)")
def vendors_list(as_json: bool) -> None:
    """Registered vendors: name (the /{vendor}/ path prefix), default base URL, upstream hosts and
    their KEYBRAKE_* settings (env=value where set in this environment)."""
    rows = vendor_rows()
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["settings"] = [f"{s['env']}={s['value']}" if s["value"] is not None else s["env"] for s in row["settings"]]
    table(rows, ("name", "base_url", "upstream_hosts", "settings"))
