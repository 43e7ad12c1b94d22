"""`keybrake spend`: who spent what, as the admin API's /v1/spend."""

from __future__ import annotations

import click

from keybrake.admin import spend as spend_ops
from keybrake.admin.audit import parse_time
from keybrake.cli.common import data_dir_opt, run, settings_for, table


@click.command("spend", short_help="Who spent what, gross and net.")
@click.option("--group-by", default="key", show_default=True, help=spend_ops.GROUPS)
@click.option("--since", default=None, help="RFC 3339 or Unix seconds (inclusive)")
@click.option("--until", default=None, help="RFC 3339 or Unix seconds (exclusive)")
@click.option("--label-prefix", default=None, help="Only keys whose label starts with this.")
@click.option("--vendor", default=None, help="Only this vendor.")
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
    out = run(
        settings_for(data_dir),
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
    table(
        out["data"], ("group", "gross_usd", "net_usd", "charged_usd", "refunded_usd", "requests", "denied", "cap_hits")
    )
