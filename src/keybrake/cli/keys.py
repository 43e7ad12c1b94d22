"""`keybrake keys …`: vault keys, as the admin API's /v1/keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from keybrake.admin import keys as key_ops
from keybrake.admin.key_models import key_models
from keybrake.admin.models import BulkRevokeIn
from keybrake.cli.common import data_dir_opt, metadata, print_json, run, settings_for, table, validate
from keybrake.runtime import Runtime
from keybrake.store.base import KeyQuery


@click.group()
def keys() -> None:
    """Vault keys."""


def _policy(policy_json: str | None, caps: dict[str, str | int | None]) -> dict[str, Any]:
    """The policy document: `--policy` (JSON, or @file.json) with each cap option given set over it.

    Raises click.ClickException when `--policy` is not valid JSON.
    """
    policy: dict[str, Any] = {}
    if policy_json:
        text = Path(policy_json[1:]).read_text() if policy_json.startswith("@") else policy_json
        try:
            policy = json.loads(text)
        except ValueError:
            raise click.ClickException("--policy is not valid JSON") from None
    for name, value in caps.items():
        if value is not None:
            policy[name] = value
    return policy


def _expires_in(value: str) -> int | str:
    """`--expires-in` as the API takes it: seconds (digits) as a number, else the text (90s, 8h, 7d)."""
    return int(value) if value.isascii() and value.isdigit() else value


@keys.command("issue")
@click.option("--vendor", required=True)
@click.option("--credential", default=None)
@click.option("--label", default=None)
@click.option("--expires-in", default=None, help="90s, 15m, 8h, 7d or seconds.")
@click.option("--daily-usd-cap", default=None)
@click.option("--total-usd-cap", default=None)
@click.option("--max-usd-per-call", default=None)
@click.option("--max-requests-per-hour", type=int, default=None)
@click.option("--allow", "allowed", multiple=True, help="Allowed endpoint, e.g. 'POST /v1/charges'. Repeatable.")
@click.option("--customer", "customers", multiple=True, help="Allowed customer id (customer_allowlist). Repeatable.")
@click.option("--metadata", "meta", multiple=True, help="key=value. Repeatable.")
@click.option("--policy", "policy_json", default=None, help="Whole policy as JSON, or @file.json.")
@data_dir_opt
def keys_issue(
    vendor: str,
    credential: str | None,
    label: str | None,
    expires_in: str | None,
    daily_usd_cap: str | None,
    total_usd_cap: str | None,
    max_usd_per_call: str | None,
    max_requests_per_hour: int | None,
    allowed: tuple[str, ...],
    customers: tuple[str, ...],
    meta: tuple[str, ...],
    policy_json: str | None,
    data_dir: str | None,
) -> None:
    """Issue a vault key; the token is printed once."""
    policy = _policy(
        policy_json,
        {
            "daily_usd_cap": daily_usd_cap,
            "total_usd_cap": total_usd_cap,
            "max_usd_per_call": max_usd_per_call,
            "max_requests_per_hour": max_requests_per_hour,
        },
    )
    if allowed:
        policy["allowed_endpoints"] = list(allowed)
    if customers:
        policy["customer_allowlist"] = list(customers)
    meta_doc = metadata(meta)
    body: dict[str, Any] = {
        "vendor": vendor,
        "credential": credential,
        "label": label,
        "policy": policy,
        "metadata": meta_doc or None,
    }
    if expires_in is not None:
        body["expires_in"] = _expires_in(expires_in)
    valid = validate(key_models().key_in, body)  # the policy fields of the vendors registered
    out = run(settings_for(data_dir), lambda rt: key_ops.issue(rt, valid, None))
    print_json(out)
    for w in out["warnings"]:
        click.echo(f"warning: {w}", err=True)


@keys.command("list")
@click.option("--label-prefix", default=None)
@click.option("--label", default=None, help="This exact label.")
@click.option("--vendor", default=None)
@click.option("--credential", default=None)
@click.option("--status", type=click.Choice(["active", "revoked", "expired"]), default=None)
@click.option("--metadata", "meta", multiple=True, help="key=value, exact. Repeatable.")
@click.option("--limit", type=int, default=100)
@data_dir_opt
def keys_list(
    label_prefix: str | None,
    label: str | None,
    vendor: str | None,
    credential: str | None,
    status: str | None,
    meta: tuple[str, ...],
    limit: int,
    data_dir: str | None,
) -> None:
    q = KeyQuery(
        label_prefix=label_prefix,
        label=label,
        vendor=vendor,
        credential=credential,
        status=status,
        metadata=metadata(meta),
        limit=limit,
    )
    rows, _ = run(settings_for(data_dir), lambda rt: key_ops.list_keys(rt, q))
    table(rows, ("id", "label", "vendor", "status", "spent_usd", "expires_at"))


@keys.command("show")
@click.argument("key_id")
@data_dir_opt
def keys_show(key_id: str, data_dir: str | None) -> None:
    async def go(rt: Runtime) -> dict[str, Any]:
        return await key_ops.render(rt, await key_ops.get_record(rt, key_id))

    print_json(run(settings_for(data_dir), go))


@keys.command("revoke")
@click.argument("key_id", required=False)
@click.option("--reason", default=None)
@click.option("--label-prefix", default=None, help="Bulk: every active key under this label prefix.")
@click.option("--vendor", default=None, help="Bulk: every active key of this vendor.")
@click.option("--credential", default=None, help="Bulk: every active key using this credential.")
@click.option("--all", "everything", is_flag=True, help="Bulk: every active key of every vendor (the kill switch).")
@data_dir_opt
def keys_revoke(
    key_id: str | None,
    reason: str | None,
    label_prefix: str | None,
    vendor: str | None,
    credential: str | None,
    everything: bool,
    data_dir: str | None,
) -> None:
    """Revoke one key, or (with filters, or --all) every matching key: effective on the next request."""
    if not key_id and not everything and label_prefix is None and vendor is None and credential is None:
        raise click.UsageError("give a KEY_ID, or at least one of --label-prefix, --vendor, --credential, or --all")
    if key_id:
        print_json(run(settings_for(data_dir), lambda rt: key_ops.revoke(rt, key_id, reason)))
        return
    body = validate(
        BulkRevokeIn,
        {
            "label_prefix": label_prefix,
            "vendor": vendor,
            "credential": credential,
            "reason": reason,
            "all": everything,
        },
    )
    print_json(run(settings_for(data_dir), lambda rt: key_ops.bulk_revoke(rt, body)))


@keys.command("update")
@click.argument("key_id")
@click.option("--label", default=None)
@click.option("--clear-label", is_flag=True, help="Remove the label.")
@click.option("--expires-in", default=None, help="New expiry from now: 90s, 15m, 8h, 7d or seconds.")
@click.option("--expires-at", default=None, help="New expiry, RFC 3339.")
@click.option("--daily-usd-cap", default=None)
@click.option("--total-usd-cap", default=None)
@click.option("--max-usd-per-call", default=None)
@click.option("--max-requests-per-hour", type=int, default=None)
@click.option("--metadata", "meta", multiple=True, help="key=value, set (merged into the key's). Repeatable.")
@click.option("--remove-metadata", "unmeta", multiple=True, help="A metadata key to remove. Repeatable.")
@click.option("--policy", "policy_json", default=None, help="Policy merge patch (JSON or @file.json); null removes.")
@data_dir_opt
def keys_update(
    key_id: str,
    label: str | None,
    clear_label: bool,
    expires_in: str | None,
    expires_at: str | None,
    daily_usd_cap: str | None,
    total_usd_cap: str | None,
    max_usd_per_call: str | None,
    max_requests_per_hour: int | None,
    meta: tuple[str, ...],
    unmeta: tuple[str, ...],
    policy_json: str | None,
    data_dir: str | None,
) -> None:
    """Change an active key's label, metadata, expiry or policy, as PATCH /v1/keys/{id} (a JSON merge
    patch: what is not given stays; the policy is checked with the key's vendor's fields)."""
    caps = {
        "daily_usd_cap": daily_usd_cap,
        "total_usd_cap": total_usd_cap,
        "max_usd_per_call": max_usd_per_call,
        "max_requests_per_hour": max_requests_per_hour,
    }
    doc: dict[str, Any] = {}
    if label is not None or clear_label:
        doc["label"] = None if clear_label else label
    if meta or unmeta:
        doc["metadata"] = {**metadata(meta), **{k: None for k in unmeta}}
    if (policy := _policy(policy_json, caps)) or policy_json:
        doc["policy"] = policy
    if expires_in is not None:
        doc["expires_in"] = _expires_in(expires_in)
    if expires_at is not None:
        doc["expires_at"] = expires_at
    if not doc:
        raise click.UsageError("nothing to change: give --label, --metadata, --expires-in, a cap or --policy")
    print_json(run(settings_for(data_dir), lambda rt: key_ops.patch(rt, key_id, doc)))
