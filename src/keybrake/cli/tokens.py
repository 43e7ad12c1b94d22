"""`keybrake admin-tokens …`: admin tokens (the store directly, so a lost token can be replaced)."""

from __future__ import annotations

from typing import Any

import click

from keybrake.cli.common import data_dir_opt, print_json, run, settings_for, table
from keybrake.cli.tables import iso_opt
from keybrake.core.timefmt import rfc3339
from keybrake.runtime import BOOTSTRAP_LABEL, Runtime, forget_bootstrap_file, retire_bootstrap
from keybrake.store.base import AdminTokenRecord
from keybrake.tokens import ADMIN_PREFIX, new_id, new_token


@click.group("admin-tokens", short_help="Admin tokens, made and revoked in the store.")
def admin_tokens() -> None:
    """Admin tokens (talks to the store directly, so a lost token can be replaced)."""


@admin_tokens.command("create", short_help="Make a new admin token (printed once).")
@click.option("--label", required=True, help="What the token is for, e.g. ops or ci (shown by list).")
@data_dir_opt
def admin_tokens_create(label: str, data_dir: str | None) -> None:
    """Make a new admin token (admin scope), printed once; also the way to replace a lost one.

    You now have a token of your own: the bootstrap token is revoked and its file removed (one
    line on stderr says so). The label `bootstrap` is reserved for the bootstrap token."""
    settings = settings_for(data_dir)
    if label.strip() == BOOTSTRAP_LABEL:
        why = f"'{BOOTSTRAP_LABEL}' is reserved for the bootstrap token; choose another"
        raise click.BadParameter(why, param_hint="--label")

    async def go(rt: Runtime) -> dict[str, Any]:
        token = new_token(ADMIN_PREFIX)
        rec = AdminTokenRecord(new_id("adm_"), "admin", label, rt.token_store.now_ms(), None)
        await rt.token_store.insert_admin_token(rec, rt.hash_token(token))
        await retire_bootstrap(rt, instead="the token below")
        return {"id": rec.id, "scope": rec.scope, "label": label, "token": token}

    print_json(run(settings, go))


@admin_tokens.command("list")
@iso_opt
@data_dir_opt
def admin_tokens_list(data_dir: str | None) -> None:
    """List admin tokens (ids, labels, times; never the tokens)."""

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        return [_render(r) for r in await rt.token_store.list_admin_tokens()]

    table(run(settings_for(data_dir), go), ("id", "scope", "label", "created_at", "revoked_at"))


def _render(rec: AdminTokenRecord) -> dict[str, Any]:
    """An admin token's row with its times in RFC 3339 (UTC, ms), as the admin API writes times."""
    row = dict(rec.__dict__)
    for name in ("created_at", "revoked_at"):
        if row.get(name) is not None:
            row[name] = rfc3339(row[name])
    return row


@admin_tokens.command("revoke", short_help="Revoke an admin token by its adm_… id.")
@click.argument("token_id")
@data_dir_opt
def admin_tokens_revoke(token_id: str, data_dir: str | None) -> None:
    """Revoke the admin token TOKEN_ID (adm_…); the bootstrap token file goes with the bootstrap token."""

    async def go(rt: Runtime) -> bool:
        done = await rt.token_store.revoke_admin_token(token_id)
        await forget_bootstrap_file(rt, always=False)  # removed if the token in it no longer works
        return done

    if not run(settings_for(data_dir), go):
        raise click.ClickException(f"no active admin token {token_id}")
    click.echo(f"revoked {token_id}")
