"""`keybrake vendors …`: the registered vendors (built in, defined by a file, or registered by a
wrapper), what they guard, and checking a vendor definition file."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from keybrake.cli.common import data_dir_opt, print_json, settings_for, table
from keybrake.envvars import Env


@click.group(short_help="Registered vendors, built in or from files.")
def vendors() -> None:
    """Registered vendors (built in, or registered by a wrapper before the command runs)."""


@vendors.command("guarded", short_help="Endpoints refused unless a key names them.")
@data_dir_opt
def vendors_guarded(data_dir: str | None) -> None:
    """Endpoints refused unless a key names them literally (docs/policy.md, guarded endpoints), of
    every vendor, those defined by files included."""
    from keybrake.vendors import build_vendors

    settings_for(data_dir)  # registers the vendors defined by files
    for name, vendor in sorted(build_vendors().items()):
        for pattern in vendor.guarded:
            click.echo(f"{name}\t{pattern.text}")


def vendor_rows() -> list[dict[str, Any]]:
    """Every registered vendor, in registration order: `{"name", "title", "source", "base_url",
    "upstream_hosts", "settings"}`. `title` is a definition's human name (else the name); `source`
    is where it comes from (`configured.load.origin`: "built-in", "built-in definition", its
    definition file, "registered in Python"); `base_url` is where requests go when a credential
    sets none; `upstream_hosts` the hosts a credential's
    `base_url` may name without `KEYBRAKE_UPSTREAM_HOSTS`; each setting is `{"env", "kind",
    "default", "value"}` — `value` the text set in this environment (None: unset, the default
    applies; not parsed here), `default` None for a file setting (the vendor's built-in table)."""
    from keybrake.vendors import build_vendors, registry
    from keybrake.vendors.configured.load import origin
    from keybrake.vendors.configured.vendor import ConfiguredVendor

    built = build_vendors()
    env = Env(os.environ)
    rows = []
    for spec in registry.specs():
        vendor = built[spec.name]
        settings = [
            {
                "env": s.env,
                "kind": s.kind,
                "default": s.default if isinstance(s.default, int | float | Decimal | str) else None,
                "value": env.text(s.env),  # as set (validated by settings_for above)
            }
            for s in spec.settings
        ]
        rows.append(
            {
                "name": spec.name,
                "title": vendor.definition.title if isinstance(vendor, ConfiguredVendor) else spec.name,
                "source": origin(spec),
                "base_url": vendor.default_base_url,
                "upstream_hosts": list(vendor.upstream_hosts),
                "settings": settings,
            }
        )
    return rows


@vendors.command("list", short_help="Registered vendors, their origin and settings.")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON (with each setting's default)")
@data_dir_opt
def vendors_list(as_json: bool, data_dir: str | None) -> None:
    """Registered vendors: name (the /{vendor}/ path prefix), where each comes from (built in, or
    its definition file in KEYBRAKE_VENDORS_DIR), default base URL, upstream hosts and their
    KEYBRAKE_* settings (env=value where set in this environment). An invalid definition file is
    reported, as `keybrake serve` would refuse to start."""
    settings_for(data_dir)  # registers the vendors defined by files, as every command does
    rows = vendor_rows()
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["settings"] = [f"{s['env']}={s['value']}" if s["value"] is not None else s["env"] for s in row["settings"]]
    table(rows, ("name", "title", "source", "base_url", "upstream_hosts", "settings"))


@vendors.command("check", short_help="Validate one vendor definition file.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def vendors_check(file: Path) -> None:
    """Validate one vendor definition file without starting anything (docs/vendors.md, vendors
    defined by a file): its TOML, every key, and its name and policy fields against the built-in
    vendors. Exits 1 with the file, the key and what is wrong."""
    from keybrake.vendors import registry
    from keybrake.vendors.configured.load import check_together, installed, packaged_file, read_file
    from keybrake.vendors.configured.schema import DefinitionError

    try:
        definition = read_file(file)
        itself = definition.name if packaged_file(file) else None  # a built-in definition, checked against the rest
        check_together([definition], [s for s in registry.specs() if s.name not in installed() and s.name != itself])
    except DefinitionError as exc:
        raise click.ClickException(f"vendor definition {exc}") from None
    endpoints, scopes = len(definition.endpoints), len({sc.field for sc in definition.scopes})
    click.echo(f"{file}: vendor {definition.name!r} ({definition.title}) is valid: {endpoints} endpoints, "
               f"{scopes} scope fields")  # fmt: skip
