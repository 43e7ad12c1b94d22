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
from keybrake.cli.tables import iso_opt
from keybrake.runtime import Runtime
from keybrake.store.base import KeyQuery


@click.group()
def keys() -> None:
    """Vault keys."""


_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false"}


def _load_policy(policy_json: str | None) -> Any:
    """`--policy` as JSON (its text, or @file.json's); {} when it is not given.

    Raises click.ClickException when it is not valid JSON or its file cannot be read."""
    if not policy_json:
        return {}
    try:
        text = Path(policy_json[1:]).read_text() if policy_json.startswith("@") else policy_json
    except OSError as exc:
        raise click.ClickException(f"--policy {policy_json}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except ValueError:
        raise click.ClickException("--policy is not valid JSON") from None


def _policy(policy_json: str | None, caps: dict[str, str | int | None]) -> dict[str, Any]:
    """The policy document: `--policy` (a JSON object, or @file.json holding one) with each cap option
    given set over it.

    Raises click.ClickException when `--policy` is not valid JSON or its file cannot be read, and
    click.UsageError naming --policy when it is not a JSON object.
    """
    policy = _load_policy(policy_json)
    if not isinstance(policy, dict):
        what = "null" if policy is None else _JSON_TYPES.get(type(policy), "no object")
        raise click.UsageError(f"--policy must be a JSON object (the policy), not {what}")
    return {**policy, **{name: value for name, value in caps.items() if value is not None}}


def _policy_patch(policy_json: str | None, caps: dict[str, str | int | None]) -> dict[str, Any] | None:
    """The policy merge patch of `keys update`: as `_policy`, but `--policy null` alone is None (the
    merge patch that removes the whole policy). Raises click.UsageError when null comes with a cap."""
    if policy_json and _load_policy(policy_json) is None:
        if any(value is not None for value in caps.values()):
            raise click.UsageError("--policy null removes the whole policy: give no cap option with it")
        return None
    return _policy(policy_json, caps)


def _expires_in(value: str) -> int | str:
    """`--expires-in` as the API takes it: seconds (digits) as a number, else the text (90s, 8h, 7d)."""
    return int(value) if value.isascii() and value.isdigit() else value


@keys.command("issue")
@click.option("--vendor", required=True, help="The vendor the key is for (keybrake vendors list).")
@click.option("--credential", default=None, help="Credential name; default: the only one, else the one named default.")
@click.option("--label", default=None, help="Label, e.g. tenant:agent:run (budgets match its prefix).")
@click.option("--expires-in", default=None, help="90s, 15m, 8h, 7d or seconds.")
@click.option("--daily-usd-cap", default=None, help="USD per UTC day.")
@click.option("--total-usd-cap", default=None, help="USD over the key's life.")
@click.option("--max-usd-per-call", default=None, help="USD one call may move.")
@click.option("--max-requests-per-hour", type=int, default=None, help="Forwarded requests per hour.")
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
    settings = settings_for(data_dir)  # first: it registers the vendors defined by files, and their policy fields
    valid = validate(key_models().key_in, body)  # the policy fields of the vendors registered
    out = run(settings, lambda rt: key_ops.issue(rt, valid, None))
    print_json(out)
    _warn(out["warnings"])


def _warn(warnings: list[str]) -> None:
    """Each of an answer's `warnings` on standard error, as `warning: <text>`."""
    for w in warnings:
        click.echo(f"warning: {w}", err=True)


@keys.command("list")
@click.option("--label-prefix", default=None, help="Labels starting with this.")
@click.option("--label", default=None, help="This exact label.")
@click.option("--vendor", default=None, help="Keys of this vendor.")
@click.option("--credential", default=None, help="Keys on this credential.")
@click.option("--status", type=click.Choice(["active", "revoked", "expired"]), default=None, help="Keys in this state.")
@click.option("--metadata", "meta", multiple=True, help="key=value, exact. Repeatable.")
@click.option("--limit", type=int, default=100, show_default=True, help="Keys at most (no cursor).")
@iso_opt
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
    """List keys, newest first, as GET /v1/keys (the first page: --limit)."""
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
    """One key with its usage and spend, as GET /v1/keys/{id}."""

    async def go(rt: Runtime) -> dict[str, Any]:
        return await key_ops.render(rt, await key_ops.get_record(rt, key_id))

    print_json(run(settings_for(data_dir), go))


@keys.command("revoke", short_help="Revoke one key, or every key the filters match.")
@click.argument("key_id", required=False)
@click.option("--reason", default=None, help="Why, recorded with the revoke.")
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
    bulk = [
        opt
        for opt, given in (
            ("--label-prefix", label_prefix is not None),
            ("--vendor", vendor is not None),
            ("--credential", credential is not None),
            ("--all", everything),
        )
        if given
    ]
    if key_id and bulk:  # else the filters would be ignored: KEY_ID alone is revoked
        raise click.UsageError(f"give KEY_ID (one key) or {', '.join(bulk)} (bulk), not both")
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


@keys.command("update", short_help="Change an active key's label, metadata, expiry or policy.")
@click.argument("key_id")
@click.option("--label", default=None, help="New label.")
@click.option("--clear-label", is_flag=True, help="Remove the label.")
@click.option("--expires-in", default=None, help="New expiry from now: 90s, 15m, 8h, 7d or seconds.")
@click.option("--expires-at", default=None, help="New expiry, RFC 3339.")
@click.option("--daily-usd-cap", default=None, help="USD per UTC day.")
@click.option("--total-usd-cap", default=None, help="USD over the key's life.")
@click.option("--max-usd-per-call", default=None, help="USD one call may move.")
@click.option("--max-requests-per-hour", type=int, default=None, help="Forwarded requests per hour.")
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
    if (policy := _policy_patch(policy_json, caps)) or policy_json:
        doc["policy"] = policy
    if expires_in is not None:
        doc["expires_in"] = _expires_in(expires_in)
    if expires_at is not None:
        doc["expires_at"] = expires_at
    if not doc:
        raise click.UsageError("nothing to change: give --label, --metadata, --expires-in, a cap or --policy")
    out = run(settings_for(data_dir), lambda rt: key_ops.patch(rt, key_id, doc))
    print_json(out)
    _warn(out["warnings"])
