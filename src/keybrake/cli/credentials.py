"""`keybrake credentials …`: vendor secrets, as the admin API's /v1/credentials."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from keybrake.admin import credentials as creds_ops
from keybrake.admin.models import CredentialIn, RotateIn
from keybrake.cli.common import data_dir_opt, print_json, run, settings_for, table, validate
from keybrake.cli.tables import iso_opt
from keybrake.runtime import Runtime


@click.group(short_help="Vendor secrets, stored encrypted.")
def credentials() -> None:
    """Vendor secrets (stored encrypted, never shown again)."""


def _secret_arg(secret: str | None) -> str | dict[str, str]:
    """`--secret`, else a hidden prompt (a terminal) or one line of standard input; a JSON object
    (a vendor's multi-part secret) is parsed. Raises click.ClickException on JSON that does not parse."""
    if secret is None:
        secret = click.prompt("Secret", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline().strip()
    if secret.startswith("{"):
        try:
            parsed = json.loads(secret)
        except ValueError:
            raise click.ClickException("the secret looks like JSON but does not parse") from None
        if isinstance(parsed, dict):
            return parsed
    return secret


@credentials.command("add")
@click.option("--vendor", required=True, help="The vendor it is for (keybrake vendors list).")
@click.option(
    "--name", default="default", show_default=True, help="Its name; keys issued without --credential use `default`."
)
@click.option("--secret", default=None, help="Omit to read it from a prompt or standard input.")
@click.option("--base-url", default=None, help="Upstream URL, if not the vendor's own.")
@data_dir_opt
def credentials_add(vendor: str, name: str, secret: str | None, base_url: str | None, data_dir: str | None) -> None:
    """Store a vendor secret."""
    body = validate(CredentialIn, {"vendor": vendor, "name": name, "secret": _secret_arg(secret), "base_url": base_url})
    print_json(run(settings_for(data_dir), lambda rt: creds_ops.add(rt, body)))


@credentials.command("rotate")
@click.argument("name")
@click.option("--secret", default=None, help="The new secret; omit to read it from a prompt or standard input.")
@click.option("--base-url", default=None, help="A new upstream URL (default: unchanged).")
@data_dir_opt
def credentials_rotate(name: str, secret: str | None, base_url: str | None, data_dir: str | None) -> None:
    """Replace a credential's secret in place; every key keeps working."""
    body = validate(RotateIn, {"secret": _secret_arg(secret), "base_url": base_url})
    print_json(run(settings_for(data_dir), lambda rt: creds_ops.rotate(rt, name, body)))


@credentials.command("list")
@iso_opt
@data_dir_opt
def credentials_list(data_dir: str | None) -> None:
    """Every credential (never a secret), as GET /v1/credentials."""

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        return [await creds_ops.render(rt, c) for c in await rt.credential_store.list_credentials()]

    rows = run(settings_for(data_dir), go)
    table(rows, ("name", "vendor", "secret_hint", "base_url", "active_keys", "created_at"))


@credentials.command("show")
@click.argument("name")
@data_dir_opt
def credentials_show(name: str, data_dir: str | None) -> None:
    """One credential (never its secret), as GET /v1/credentials/{name}."""

    async def go(rt: Runtime) -> dict[str, Any]:
        return await creds_ops.render(rt, await creds_ops.get_record(rt, name))

    print_json(run(settings_for(data_dir), go))


@credentials.command("delete", short_help="Delete a credential (refused while keys use it).")
@click.argument("name")
@click.option("--revoke-keys", is_flag=True, help="Also revoke the keys that use it.")
@data_dir_opt
def credentials_delete(name: str, revoke_keys: bool, data_dir: str | None) -> None:
    """Delete a credential, as DELETE /v1/credentials/{name} (refused while keys use it, unless --revoke-keys)."""
    print_json(run(settings_for(data_dir), lambda rt: creds_ops.delete(rt, name, revoke_keys=revoke_keys)))
