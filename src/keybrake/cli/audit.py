"""`keybrake audit …`: the per-request audit log, as the admin API's /v1/audit (plus purge and tail)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from keybrake.admin.audit import parse_time, render_row
from keybrake.admin.errors import ApiError, not_found
from keybrake.cli.audit_follow import Follower, overlap_ms
from keybrake.cli.common import cell, data_dir_opt, json_text, metadata, print_json, run, settings_for, table
from keybrake.cli.tables import iso_opt
from keybrake.config import retention_error
from keybrake.runtime import Runtime
from keybrake.store.base import AuditQuery

_AUDIT_COLS = ("ts", "id", "key_id", "method", "path", "verdict", "status", "cost_usd")


@click.group()
def audit() -> None:
    """The per-request audit log."""


@audit.command("query")
@click.option("--run", "run_id", default=None, help="agent_run_id")
@click.option("--key", "key_id", default=None, help="Only this key's rows (vk_…).")
@click.option("--label-prefix", default=None, help="Only keys whose label starts with this.")
@click.option("--vendor", default=None, help="Only this vendor's rows.")
@click.option("--verdict", default=None, help="Only this verdict, e.g. allowed, cap_exceeded, outcome_unknown.")
@click.option("--error-code", default=None, help="Only rows refused with this error code.")
@click.option("--metadata", "meta", multiple=True, help="key=value: the key's metadata, exact. Repeatable.")
@click.option("--since", default=None, help="RFC 3339 or Unix seconds")
@click.option("--until", default=None, help="RFC 3339 or Unix seconds (exclusive)")
@click.option("--limit", type=int, default=100, show_default=True, help="Rows at most.")
@click.option("--json", "as_json", is_flag=True, help="The rows as a JSON array (times in RFC 3339).")
@iso_opt
@data_dir_opt
def audit_query(
    run_id: str | None,
    key_id: str | None,
    label_prefix: str | None,
    vendor: str | None,
    verdict: str | None,
    error_code: str | None,
    meta: tuple[str, ...],
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
            vendor=vendor,
            verdict=verdict,
            error_code=error_code,
            metadata=metadata(meta),
            since=parse_time(since, "since") if since else None,
            until=parse_time(until, "until") if until else None,
            limit=limit,
        )
    except ApiError as exc:
        raise click.ClickException(exc.message) from None

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        return await rt.audit_store.query_audit(q)

    rows = [render_row(r) for r in run(settings_for(data_dir), go)]
    if as_json:
        for r in rows:
            click.echo(json_text(r))
    else:
        table(rows, _AUDIT_COLS)


@audit.command("show", short_help="One row by its kbr_… id, as GET /v1/audit/{id}.")
@click.argument("row_id")
@data_dir_opt
def audit_show(row_id: str, data_dir: str | None) -> None:
    """One row by its `kbr_…` id (an answer's X-Keybrake-Request-Id), as GET /v1/audit/{id}."""

    async def go(rt: Runtime) -> dict[str, Any]:
        row = await rt.audit_store.get_audit(row_id)
        if row is None:
            raise not_found(f"audit row {row_id!r}")
        return render_row(row)

    print_json(run(settings_for(data_dir), go))


@audit.command("export", short_help="Every matching row, oldest first, as CSV or JSON lines.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True, help="CSV or JSON lines."
)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default="-", help="file (default: stdout)")
@click.option("--run", "run_id", default=None, help="agent_run_id")
@click.option("--key", "key_id", default=None, help="Only this key's rows (vk_…).")
@click.option("--label-prefix", default=None, help="Only keys whose label starts with this.")
@click.option("--vendor", default=None, help="Only this vendor's rows.")
@click.option("--verdict", default=None, help="Only this verdict, e.g. allowed, cap_exceeded, outcome_unknown.")
@click.option("--since", default=None, help="RFC 3339 or Unix seconds")
@click.option("--until", default=None, help="RFC 3339 or Unix seconds (exclusive)")
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

    run(settings_for(data_dir), go)


@audit.command("purge", short_help="Delete audit rows past retention now.")
@click.option("--older-than-days", type=int, default=None, help="default: KEYBRAKE_AUDIT_RETENTION_DAYS (90)")
@click.option("--export-dir", type=click.Path(file_okay=False), default=None, help="append purged rows here first")
@data_dir_opt
def audit_purge(older_than_days: int | None, export_dir: str | None, data_dir: str | None) -> None:
    """Delete audit rows past retention now (the server also does it hourly), in small batches,
    and what grew with them that nothing live needs (counters, ledger, alert deliveries, keys)."""
    from keybrake.jobs.retention import purge_all

    settings = settings_for(data_dir)
    days = settings.audit_retention_days if older_than_days is None else older_than_days
    if days < 0:
        raise click.BadParameter(f"must be 0 (retention off) or more days (got {days})", param_hint="--older-than-days")
    name = "KEYBRAKE_AUDIT_RETENTION_DAYS" if older_than_days is None else "--older-than-days"
    if (why := retention_error(name, days)) is not None:
        raise click.ClickException(why)
    target = Path(export_dir) if export_dir else settings.audit_purge_export_dir
    n = run(settings, lambda rt: purge_all(rt.store, days, target))
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


@audit.command("tail", short_help="The latest rows; with --follow, new rows as they come.")
@click.option("-n", "count", type=int, default=20, show_default=True, help="How many latest rows to print first.")
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep printing rows as they arrive, each once; a row printed in_flight is printed again,"
    " marked (update), when it completes. Ctrl-C stops.",
)
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between reads with --follow.")
@data_dir_opt
def audit_tail(count: int, follow: bool, interval: float, data_dir: str | None) -> None:
    """The latest rows, oldest first; with --follow, new rows as they arrive and in-flight rows
    again when they complete.

    A header line names the columns first (cost_usd: what the call cost, in USD)."""
    if count < 0:
        raise click.BadParameter(f"must be 0 or more (got {count})", param_hint="-n")
    if interval <= 0:
        raise click.BadParameter(f"must be more than 0 seconds (got {interval:g})", param_hint="--interval")
    settings = settings_for(data_dir)

    async def go(rt: Runtime) -> None:
        click.echo("  ".join(_AUDIT_COLS))  # the header once: the rows that follow are not aligned to it
        follower = Follower(rt.audit_store, _line, overlap_ms=overlap_ms(settings))
        await follower.start(count)
        if follow:
            await follower.follow(interval)

    try:
        run(settings, go)
    except KeyboardInterrupt:
        pass


def _line(row: dict[str, Any], update: bool = False) -> None:
    rendered = render_row(row)
    text = "  ".join(cell(rendered.get(c)) for c in _AUDIT_COLS)
    click.echo(f"{text}  (update)" if update else text, nl=True)
    sys.stdout.flush()
