"""`keybrake` command line: serve, and everything an operator does by hand.

Operator commands open the store directly (same data dir / database URL and master key as the
server), so they work whether or not a server is running and need no admin token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import simplejson
from pydantic import ValidationError

from keybrake import logs
from keybrake.admin import budgets as budget_ops
from keybrake.admin import credentials as creds_ops
from keybrake.admin import keys as key_ops
from keybrake.admin import spend as spend_ops
from keybrake.admin.audit import parse_time, render_row
from keybrake.admin.errors import ApiError
from keybrake.admin.models import BudgetIn, BulkRevokeIn, CredentialIn, KeyIn, RotateIn
from keybrake.config import Settings, SettingsError, check_listeners, from_env, retention_error
from keybrake.crypto import MasterKeyError
from keybrake.runtime import Runtime, announce_bootstrap_token, ensure_admin_token, open_runtime
from keybrake.store.base import AdminTokenRecord, AuditQuery, KeyQuery
from keybrake.store.copy import CopyError, copy_sqlite_to_postgres
from keybrake.store.migrate import SchemaError, head_revision, upgrade_to_head
from keybrake.store.open import sqlalchemy_url
from keybrake.store.pg import is_postgres_url, redact_url
from keybrake.tokens import ADMIN_PREFIX, new_id, new_token

T = TypeVar("T")


def _settings(data_dir: str | None) -> Settings:
    try:
        s = from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    return s.with_overrides(data_dir=Path(data_dir) if data_dir else None)


def _run(settings: Settings, fn: Callable[[Runtime], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            rt = await open_runtime(settings, create=False)
        except (MasterKeyError, SchemaError, FileNotFoundError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        try:
            return await fn(rt)
        except ApiError as exc:
            where = f" ({exc.field})" if exc.field else ""
            raise click.ClickException(f"{exc.code}: {exc.message}{where}") from None
        finally:
            await rt.store.close()

    return asyncio.run(go())


def _print(obj: Any) -> None:
    click.echo(simplejson.dumps(obj, use_decimal=True, indent=2))


def _validate(model: Any, data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        msg, field = key_ops.pydantic_field(exc)
        raise click.ClickException(f"validation_error: {msg} ({field})") from None


data_dir_opt = click.option(
    "--data-dir", envvar="KEYBRAKE_DATA_DIR", default=None, help="Data directory (default ./keybrake-data)."
)


@click.group()
def main() -> None:
    """Keybrake: put the brakes on your agent's keys."""


# -- serve ------------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Listen address (KEYBRAKE_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (KEYBRAKE_PORT, default 8080).")
@click.option(
    "--admin-host",
    default=None,
    help="Serve the admin API on its own address (KEYBRAKE_ADMIN_HOST, default 127.0.0.1 with --admin-port).",
)
@click.option(
    "--admin-port",
    type=int,
    default=None,
    help="Serve the admin API on its own port, not on the proxy port (KEYBRAKE_ADMIN_PORT).",
)
@click.option(
    "--admin-socket",
    default=None,
    help="Serve the admin API on a unix socket (mode 0600), not on the proxy port (KEYBRAKE_ADMIN_SOCKET).",
)
@data_dir_opt
@click.option("--migrate", is_flag=True, help="Upgrade an older database schema before starting.")
def serve(
    host: str | None,
    port: int | None,
    admin_host: str | None,
    admin_port: int | None,
    admin_socket: str | None,
    data_dir: str | None,
    migrate: bool,
) -> None:
    """Run the proxy and the admin API (on the proxy port, or on a listener of its own)."""
    import uvicorn
    import uvloop

    from keybrake.app import KeybrakeApp
    from keybrake.listener import ListenerError, bind_listeners, ensure_fd_limit, server_config

    settings = _settings(data_dir).with_overrides(
        host=host,
        port=port,
        admin_host=admin_host,
        admin_port=admin_port,
        admin_socket=Path(admin_socket) if admin_socket else None,
        migrate=migrate or None,
    )
    try:
        check_listeners(settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    logs.configure(settings.log_level)
    warning = ensure_fd_limit(settings)
    if warning:
        logs.event(logging.getLogger("keybrake"), warning, logging.WARNING)

    async def go() -> None:
        try:
            rt = await open_runtime(settings, create=True)
        except (MasterKeyError, SchemaError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        listeners = None
        try:
            token = await ensure_admin_token(rt)
            if token:
                announce_bootstrap_token(token, settings.data_dir)
            try:
                listeners = bind_listeners(settings)
            except ListenerError as exc:
                raise click.ClickException(str(exc)) from None
            app = KeybrakeApp(rt)
            app.stop_hooks.append(listeners.close)  # removes a unix socket file on a clean stop
            for lst in listeners.all:
                logs.event(logging.getLogger("keybrake"), "listening", listener=lst.role, address=lst.address,
                           max_connections=lst.limit)  # fmt: skip
            server = uvicorn.Server(server_config(app, settings, listeners))
            await server.serve(sockets=listeners.sockets)
            if not server.started:
                raise click.ClickException("keybrake could not start (see the log above)")
        finally:
            if listeners is not None:
                listeners.close()
            await rt.store.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(go())


# -- db ---------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@data_dir_opt
def db_upgrade(data_dir: str | None) -> None:
    """Migrate the database to this version's schema (back it up first)."""
    s = _settings(data_dir)
    if not is_postgres_url(s.database_url):
        s.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        upgrade_to_head(sqlalchemy_url(s.database_url, s.data_dir))
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"database schema is current ({head_revision()})")


@main.command("migrate-sqlite-to-postgres")
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
    s = _settings(data_dir)
    if not is_postgres_url(target):
        raise click.ClickException("--to must be a postgresql:// URL")
    src = s.data_dir / "keybrake.db"

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


# -- credentials ------------------------------------------------------------------------


@main.group()
def credentials() -> None:
    """Vendor secrets (stored encrypted, never shown again)."""


def _secret_arg(vendor: str, secret: str | None) -> str | dict[str, str]:
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
@click.option("--vendor", required=True)
@click.option("--name", default="default", show_default=True)
@click.option("--secret", default=None, help="Omit to read it from a prompt or standard input.")
@click.option("--base-url", default=None)
@data_dir_opt
def credentials_add(vendor: str, name: str, secret: str | None, base_url: str | None, data_dir: str | None) -> None:
    """Store a vendor secret."""
    body = _validate(
        CredentialIn, {"vendor": vendor, "name": name, "secret": _secret_arg(vendor, secret), "base_url": base_url}
    )
    _print(_run(_settings(data_dir), lambda rt: creds_ops.add(rt, body)))


@credentials.command("rotate")
@click.argument("name")
@click.option("--secret", default=None)
@click.option("--base-url", default=None)
@data_dir_opt
def credentials_rotate(name: str, secret: str | None, base_url: str | None, data_dir: str | None) -> None:
    """Replace a credential's secret in place; every key keeps working."""
    body = _validate(RotateIn, {"secret": _secret_arg("", secret), "base_url": base_url})
    _print(_run(_settings(data_dir), lambda rt: creds_ops.rotate(rt, name, body)))


@credentials.command("list")
@data_dir_opt
def credentials_list(data_dir: str | None) -> None:
    async def go(rt: Runtime) -> list[dict[str, Any]]:
        return [await creds_ops.render(rt, c) for c in await rt.store.list_credentials()]

    rows = _run(_settings(data_dir), go)
    _table(rows, ("name", "vendor", "secret_hint", "base_url", "active_keys", "created_at"))


@credentials.command("delete")
@click.argument("name")
@click.option("--revoke-keys", is_flag=True, help="Also revoke the keys that use it.")
@data_dir_opt
def credentials_delete(name: str, revoke_keys: bool, data_dir: str | None) -> None:
    _print(_run(_settings(data_dir), lambda rt: creds_ops.delete(rt, name, revoke_keys=revoke_keys)))


# -- keys -------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Vault keys."""


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
@click.option("--customer", "customers", multiple=True, help="Allowed Stripe customer. Repeatable.")
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
    policy: dict[str, Any] = {}
    if policy_json:
        text = Path(policy_json[1:]).read_text() if policy_json.startswith("@") else policy_json
        try:
            policy = json.loads(text)
        except ValueError:
            raise click.ClickException("--policy is not valid JSON") from None
    for name, value in (
        ("daily_usd_cap", daily_usd_cap),
        ("total_usd_cap", total_usd_cap),
        ("max_usd_per_call", max_usd_per_call),
        ("max_requests_per_hour", max_requests_per_hour),
    ):
        if value is not None:
            policy[name] = value
    if allowed:
        policy["allowed_endpoints"] = list(allowed)
    if customers:
        policy["customer_allowlist"] = list(customers)
    metadata = {}
    for item in meta:
        k, sep, v = item.partition("=")
        if not sep:
            raise click.ClickException(f"--metadata {item!r} must be key=value")
        metadata[k] = v
    body: dict[str, Any] = {
        "vendor": vendor,
        "credential": credential,
        "label": label,
        "policy": policy,
        "metadata": metadata or None,
    }
    if expires_in is not None:
        body["expires_in"] = int(expires_in) if expires_in.isascii() and expires_in.isdigit() else expires_in
    valid = _validate(KeyIn, body)
    out = _run(_settings(data_dir), lambda rt: key_ops.issue(rt, valid, None))
    _print(out)
    for w in out["warnings"]:
        click.echo(f"warning: {w}", err=True)


@keys.command("list")
@click.option("--label-prefix", default=None)
@click.option("--vendor", default=None)
@click.option("--status", type=click.Choice(["active", "revoked", "expired"]), default=None)
@click.option("--limit", type=int, default=100)
@data_dir_opt
def keys_list(
    label_prefix: str | None, vendor: str | None, status: str | None, limit: int, data_dir: str | None
) -> None:
    q = KeyQuery(label_prefix=label_prefix, vendor=vendor, status=status, limit=limit)
    rows, _ = _run(_settings(data_dir), lambda rt: key_ops.list_keys(rt, q))
    _table(rows, ("id", "label", "vendor", "status", "spent_usd", "expires_at"))


@keys.command("show")
@click.argument("key_id")
@data_dir_opt
def keys_show(key_id: str, data_dir: str | None) -> None:
    async def go(rt: Runtime) -> dict[str, Any]:
        return await key_ops.render(rt, await key_ops.get_record(rt, key_id))

    _print(_run(_settings(data_dir), go))


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
    if key_id:
        _print(_run(_settings(data_dir), lambda rt: key_ops.revoke(rt, key_id, reason)))
        return
    body = _validate(
        BulkRevokeIn,
        {
            "label_prefix": label_prefix,
            "vendor": vendor,
            "credential": credential,
            "reason": reason,
            "all": everything,
        },
    )
    _print(_run(_settings(data_dir), lambda rt: key_ops.bulk_revoke(rt, body)))


# -- audit ------------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The per-request audit log."""


_AUDIT_COLS = ("ts", "id", "key_id", "method", "path", "verdict", "status", "cost_usd")


@audit.command("query")
@click.option("--run", "run_id", default=None, help="agent_run_id")
@click.option("--key", "key_id", default=None)
@click.option("--label-prefix", default=None)
@click.option("--verdict", default=None)
@click.option("--since", default=None, help="RFC 3339 or Unix seconds")
@click.option("--until", default=None)
@click.option("--limit", type=int, default=100)
@click.option("--json", "as_json", is_flag=True)
@data_dir_opt
def audit_query(
    run_id: str | None,
    key_id: str | None,
    label_prefix: str | None,
    verdict: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
    data_dir: str | None,
) -> None:
    """Rows matching the filters, newest first."""
    try:
        q = AuditQuery(
            agent_run_id=run_id,
            key_id=key_id,
            label_prefix=label_prefix,
            verdict=verdict,
            since=parse_time(since, "since") if since else None,
            until=parse_time(until, "until") if until else None,
            limit=limit,
        )
    except ApiError as exc:
        raise click.ClickException(exc.message) from None

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        return await rt.store.query_audit(q)

    rows = [render_row(r) for r in _run(_settings(data_dir), go)]
    if as_json:
        for r in rows:
            click.echo(simplejson.dumps(r, use_decimal=True))
    else:
        _table(rows, _AUDIT_COLS)


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default="-", help="file (default: stdout)")
@click.option("--run", "run_id", default=None, help="agent_run_id")
@click.option("--key", "key_id", default=None)
@click.option("--label-prefix", default=None)
@click.option("--vendor", default=None)
@click.option("--verdict", default=None)
@click.option("--since", default=None, help="RFC 3339 or Unix seconds")
@click.option("--until", default=None)
@data_dir_opt
def audit_export(
    fmt: str,
    out_path: str,
    run_id: str | None,
    key_id: str | None,
    label_prefix: str | None,
    vendor: str | None,
    verdict: str | None,
    since: str | None,
    until: str | None,
    data_dir: str | None,
) -> None:
    """Every matching row, oldest first, streamed (CSV with a header row, or JSON lines)."""
    from keybrake.admin.audit import export

    q = AuditQuery(
        agent_run_id=run_id,
        key_id=key_id,
        label_prefix=label_prefix,
        vendor=vendor,
        verdict=verdict,
        since=parse_time(since, "since") if since else None,
        until=parse_time(until, "until") if until else None,
    )

    async def go(rt: Runtime) -> int:
        count = 0
        with click.open_file(out_path, "wb") as out:
            async for chunk in export(rt.store, q, fmt):
                out.write(chunk)
                count += 1
        return count

    _run(_settings(data_dir), go)


@audit.command("purge")
@click.option("--older-than-days", type=int, default=None, help="default: KEYBRAKE_AUDIT_RETENTION_DAYS (90)")
@click.option("--export-dir", type=click.Path(file_okay=False), default=None, help="append purged rows here first")
@data_dir_opt
def audit_purge(older_than_days: int | None, export_dir: str | None, data_dir: str | None) -> None:
    """Delete audit rows past retention now (the server also does it hourly), in small batches,
    and what grew with them that nothing live needs (counters, ledger, alert deliveries, keys)."""
    from keybrake.jobs.retention import purge_all

    settings = _settings(data_dir)
    days = settings.audit_retention_days if older_than_days is None else older_than_days
    if days < 0:
        raise click.BadParameter(f"must be 0 (retention off) or more days (got {days})", param_hint="--older-than-days")
    name = "KEYBRAKE_AUDIT_RETENTION_DAYS" if older_than_days is None else "--older-than-days"
    if (why := retention_error(name, days)) is not None:
        raise click.ClickException(why)
    target = Path(export_dir) if export_dir else settings.audit_purge_export_dir
    n = _run(settings, lambda rt: purge_all(rt.store, days, target))
    own = (
        f"{n['alert_fired']} alert fire-once marks older than 40 days, {n['dedup']} ended dedup entries,"
        f" {n['issuances']} key issuances older than 24 hours"
    )
    if days == 0:
        # Exit 0: "nothing to purge" is not a failure for a cron job.
        click.echo(f"retention is off (0 days): no audit rows purged, nor what grew with them; deleted {own}")
        return
    click.echo(
        f"deleted {n['audit']} audit rows older than {days} days; with them {n['counters']} counters of ended"
        f" windows, {n['ledger']} ledger objects (and their ledger_counts), {n['alert_outbox']} alert deliveries,"
        f" {n['vault_keys']} keys; and {own}"
    )


@audit.command("tail")
@click.option("-n", "count", type=int, default=20)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new rows.")
@click.option("--interval", type=float, default=1.0)
@data_dir_opt
def audit_tail(count: int, follow: bool, interval: float, data_dir: str | None) -> None:
    """The latest rows; with --follow, new rows as they arrive."""
    settings = _settings(data_dir)

    async def go(rt: Runtime) -> None:
        rows = list(reversed(await rt.store.query_audit(AuditQuery(limit=count))))
        seen = {r["id"] for r in rows}
        for r in rows:
            _line(render_row(r))
        while follow:
            await asyncio.sleep(interval)
            since = (rows[-1]["ts"] - 5000) if rows else int(time.time() * 1000) - 5000
            fresh = [
                r
                for r in reversed(await rt.store.query_audit(AuditQuery(since=since, limit=1000)))
                if r["id"] not in seen
            ]
            for r in fresh:
                seen.add(r["id"])
                rows.append(r)
                _line(render_row(r))

    try:
        _run(settings, go)
    except KeyboardInterrupt:
        pass


def _line(row: dict[str, Any]) -> None:
    click.echo("  ".join(str(row.get(c)) for c in _AUDIT_COLS))


# -- spend ------------------------------------------------------------------------------


@main.command("spend")
@click.option("--group-by", default="key", show_default=True, help=spend_ops.GROUPS)
@click.option("--since", default=None, help="RFC 3339 or Unix seconds (inclusive)")
@click.option("--until", default=None, help="RFC 3339 or Unix seconds (exclusive)")
@click.option("--label-prefix", default=None)
@click.option("--vendor", default=None)
@click.option("--timezone", default="UTC", show_default=True, help="for --group-by day|hour")
@data_dir_opt
def spend_cmd(
    group_by: str,
    since: str | None,
    until: str | None,
    label_prefix: str | None,
    vendor: str | None,
    timezone: str,
    data_dir: str | None,
) -> None:
    """Who spent what: gross (what caps consume) and net (refunds subtracted) per group."""
    out = _run(
        _settings(data_dir),
        lambda rt: spend_ops.spend(
            rt,
            group_by=group_by,
            since=parse_time(since, "since") if since else None,
            until=parse_time(until, "until") if until else None,
            label_prefix=label_prefix,
            vendor=vendor,
            timezone=timezone,
            bounded=False,  # on the host, off the proxy's loop and pool: all-time totals allowed
        ),
    )
    _table(
        out["data"], ("group", "gross_usd", "net_usd", "charged_usd", "refunded_usd", "requests", "denied", "cap_hits")
    )


# -- budgets ----------------------------------------------------------------------------


@main.group()
def budgets() -> None:
    """Caps shared by every key a scope covers (label prefix, vendor, credential or all)."""


_CAP_OPTIONS = (
    click.option("--daily-usd-cap", default=None, help="USD per day (in --timezone)"),
    click.option("--monthly-usd-cap", default=None, help="USD per calendar month (in --timezone)"),
    click.option("--total-usd-cap", default=None, help="USD over the budget's life"),
    click.option("--daily-request-cap", type=int, default=None, help="forwarded requests per day"),
)


def _cap_options(fn: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_CAP_OPTIONS):
        fn = option(fn)
    return fn


def _caps(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


@budgets.command("create")
@click.option("--name", required=True)
@click.option("--label-prefix", default=None)
@click.option("--vendor", default=None)
@click.option("--credential", default=None)
@click.option("--all", "everything", is_flag=True, help="cover every key")
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone where days and months roll over")
@_cap_options
@data_dir_opt
def budgets_create(
    name: str,
    label_prefix: str | None,
    vendor: str | None,
    credential: str | None,
    everything: bool,
    timezone: str,
    data_dir: str | None,
    **caps: Any,
) -> None:
    """Create a budget: exactly one of --label-prefix, --vendor, --credential or --all."""
    scope: Any = "all" if everything else _caps(label_prefix=label_prefix, vendor=vendor, credential=credential)
    body = _validate(BudgetIn, {"name": name, "scope": scope, "timezone": timezone, **_caps(**caps)})
    _print(_run(_settings(data_dir), lambda rt: budget_ops.create(rt, body)))


@budgets.command("list")
@data_dir_opt
def budgets_list(data_dir: str | None) -> None:
    async def go(rt: Runtime) -> list[dict[str, Any]]:
        return [await budget_ops.render(rt, b) for b in await rt.store.list_budgets()]

    rows = _run(_settings(data_dir), go)
    for row in rows:
        row["scope"] = json.dumps(row["scope"])
        row["usage"] = ", ".join(f"{k} {v['used']}/{v['limit']}" for k, v in row["usage"].items())
    _table(rows, ("id", "name", "scope", "timezone", "usage"))


@budgets.command("show")
@click.argument("budget_id")
@data_dir_opt
def budgets_show(budget_id: str, data_dir: str | None) -> None:
    async def go(rt: Runtime) -> dict[str, Any]:
        return await budget_ops.render(rt, await budget_ops.get_record(rt, budget_id))

    _print(_run(_settings(data_dir), go))


@budgets.command("update")
@click.argument("budget_id")
@click.option("--name", default=None)
@click.option("--timezone", default=None)
@click.option("--remove", multiple=True, type=click.Choice(budget_ops.CAPS), help="remove a cap")
@_cap_options
@data_dir_opt
def budgets_update(
    budget_id: str, name: str | None, timezone: str | None, remove: tuple[str, ...], data_dir: str | None, **caps: Any
) -> None:
    """Change a budget's name, time zone or caps (its scope never changes)."""
    patch_doc: dict[str, Any] = {**_caps(name=name, timezone=timezone, **caps), **{r: None for r in remove}}
    _print(_run(_settings(data_dir), lambda rt: budget_ops.patch(rt, budget_id, patch_doc)))


@budgets.command("delete")
@click.argument("budget_id")
@data_dir_opt
def budgets_delete(budget_id: str, data_dir: str | None) -> None:
    _print(_run(_settings(data_dir), lambda rt: budget_ops.delete(rt, budget_id)))


# -- vendors ----------------------------------------------------------------------------


@main.group()
def vendors() -> None:
    """Built-in vendors."""


@vendors.command("guarded")
def vendors_guarded() -> None:
    """Endpoints refused unless a key names them literally (docs/policy.md, guarded endpoints)."""
    from keybrake.vendors import builtin_vendors

    for name, vendor in sorted(builtin_vendors().items()):
        for pattern in vendor.guarded:
            click.echo(f"{name}\t{pattern.text}")


# -- admin tokens -----------------------------------------------------------------------


@main.group("admin-tokens")
def admin_tokens() -> None:
    """Admin tokens (talks to the store directly, so a lost token can be replaced)."""


@admin_tokens.command("create")
@click.option("--label", required=True)
@data_dir_opt
def admin_tokens_create(label: str, data_dir: str | None) -> None:
    async def go(rt: Runtime) -> dict[str, Any]:
        token = new_token(ADMIN_PREFIX)
        rec = AdminTokenRecord(new_id("adm_"), "admin", label, rt.store.now_ms(), None)
        await rt.store.insert_admin_token(rec, rt.hash_token(token))
        return {"id": rec.id, "scope": rec.scope, "label": label, "token": token}

    _print(_run(_settings(data_dir), go))


@admin_tokens.command("list")
@data_dir_opt
def admin_tokens_list(data_dir: str | None) -> None:
    async def go(rt: Runtime) -> list[dict[str, Any]]:
        return [r.__dict__ for r in await rt.store.list_admin_tokens()]

    _table(_run(_settings(data_dir), go), ("id", "scope", "label", "created_at", "revoked_at"))


@admin_tokens.command("revoke")
@click.argument("token_id")
@data_dir_opt
def admin_tokens_revoke(token_id: str, data_dir: str | None) -> None:
    async def go(rt: Runtime) -> bool:
        return await rt.store.revoke_admin_token(token_id)

    if not _run(_settings(data_dir), go):
        raise click.ClickException(f"no active admin token {token_id}")
    click.echo(f"revoked {token_id}")


def _table(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> None:
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
