"""`keybrake alerts …`: alert destinations and their deliveries, as the admin API's /v1/alerts."""

from __future__ import annotations

from typing import Any

import click

from keybrake.admin import alerts as alert_ops
from keybrake.admin.audit import parse_limit
from keybrake.cli.common import data_dir_opt, print_json, run, settings_for, table, validate
from keybrake.cli.tables import iso_opt
from keybrake.jobs.alerts import DEFAULT_THRESHOLDS, EVENTS
from keybrake.runtime import Runtime

_DEFAULT_PCTS = ", ".join(map(str, DEFAULT_THRESHOLDS))
_ALERT_COLS = ("id", "type", "url", "events", "thresholds", "anomaly_factor", "created_at")


@click.group(short_help="Where alerts go (webhook or Slack).")
def alerts() -> None:
    """Where alerts go (webhook or Slack), and what was sent there."""


@alerts.command("create", short_help="Add a destination, as POST /v1/alerts.")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["webhook", "slack"]),
    required=True,
    help="A signed webhook or a Slack incoming webhook.",
)
@click.option("--url", required=True, help="https URL the alerts are POSTed to.")
@click.option("--event", "events", multiple=True, required=True, help=f"Repeatable; one of {', '.join(EVENTS)}.")
@click.option(
    "--threshold",
    "thresholds",
    type=int,
    multiple=True,
    help=f"Cap use % that fires cap.threshold (1 to 100). Repeatable; default {_DEFAULT_PCTS}.",
)
@click.option("--anomaly-factor", type=float, default=None, help="Spend this many times the usual fires anomaly (3).")
@data_dir_opt
def alerts_create(
    kind: str,
    url: str,
    events: tuple[str, ...],
    thresholds: tuple[int, ...],
    anomaly_factor: float | None,
    data_dir: str | None,
) -> None:
    """Add a destination, as POST /v1/alerts; its signing secret is printed once."""
    body: dict[str, Any] = {"type": kind, "url": url, "events": list(events)}
    if thresholds:
        body["thresholds"] = list(thresholds)
    if anomaly_factor is not None:
        body["anomaly_factor"] = anomaly_factor
    valid = validate(alert_ops.AlertIn, body)
    out = run(settings_for(data_dir), lambda rt: alert_ops.create(rt, valid))
    print_json(out)
    for w in out["warnings"]:
        click.echo(f"warning: {w}", err=True)


@alerts.command("list", short_help="Every destination, as GET /v1/alerts.")
@iso_opt
@data_dir_opt
def alerts_list(data_dir: str | None) -> None:
    """Every destination (the URL's host only: its path is a secret), as GET /v1/alerts."""

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        return [alert_ops.render(d) for d in await rt.alert_store.list_alerts()]

    table(run(settings_for(data_dir), go), _ALERT_COLS)


@alerts.command("deliveries")
@click.option(
    "--state", type=click.Choice(alert_ops.DELIVERY_STATES), default=None, help="Only deliveries in this state."
)
@click.option("--limit", default="100", show_default=True, help="1 to 1000.")
@click.option("--json", "as_json", is_flag=True, help="The deliveries as a JSON array.")
@iso_opt
@data_dir_opt
def alerts_deliveries(state: str | None, limit: str, as_json: bool, data_dir: str | None) -> None:
    """Deliveries, newest first, as GET /v1/alerts/deliveries."""

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        rows = await rt.alert_store.list_deliveries(parse_limit(limit), state=state, before=None)
        return [alert_ops.render_delivery(d) for d in rows]

    rows = run(settings_for(data_dir), go)
    if as_json:
        print_json(rows)
    else:
        table(rows, ("id", "alert_id", "type", "state", "attempts", "response_status", "created_at", "delivered_at"))


@alerts.command("delete", short_help="Delete a destination, as DELETE /v1/alerts/{id}.")
@click.argument("alert_id")
@data_dir_opt
def alerts_delete(alert_id: str, data_dir: str | None) -> None:
    """Delete a destination, as DELETE /v1/alerts/{id}; prints it as it was."""
    print_json(run(settings_for(data_dir), lambda rt: alert_ops.delete(rt, alert_id)))
