"""`keybrake budgets …`: caps shared by many keys, as the admin API's /v1/budgets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from keybrake.admin import budgets as budget_ops
from keybrake.admin.models import BudgetIn
from keybrake.cli.common import data_dir_opt, json_text, print_json, run, settings_for, table, validate
from keybrake.cli.tables import iso_opt
from keybrake.runtime import Runtime


@click.group(short_help="Caps shared by every key a scope covers.")
def budgets() -> None:
    """Caps shared by every key a scope covers (label prefix, vendor, credential or all)."""


_CAP_OPTIONS = (
    click.option("--daily-usd-cap", default=None, help="USD per day (in --timezone)"),
    click.option("--monthly-usd-cap", default=None, help="USD per calendar month (in --timezone)"),
    click.option("--total-usd-cap", default=None, help="USD over the budget's life"),
    click.option("--daily-request-cap", type=int, default=None, help="forwarded requests per day"),
    click.option("--approval-above-usd", default=None, help="calls of covered keys above this USD wait for a person"),
)


def _cap_options(fn: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_CAP_OPTIONS):
        fn = option(fn)
    return fn


def _caps(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


@budgets.command("create", short_help="Create a budget over one scope.")
@click.option("--name", required=True, help="A name for people (unique not required).")
@click.option("--label-prefix", default=None, help="Cover every key whose label starts with this.")
@click.option("--vendor", default=None, help="Cover every key of this vendor.")
@click.option("--credential", default=None, help="Cover every key on this credential.")
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
    body = validate(BudgetIn, {"name": name, "scope": scope, "timezone": timezone, **_caps(**caps)})
    print_json(run(settings_for(data_dir), lambda rt: budget_ops.create(rt, body)))


@budgets.command("list", short_help="List every budget with its caps and usage.")
@iso_opt
@data_dir_opt
def budgets_list(data_dir: str | None) -> None:
    """List every budget: id, name, scope, time zone and each cap's used/limit in USD or requests."""

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        return [await budget_ops.render(rt, b) for b in await rt.budget_store.list_budgets()]

    rows = run(settings_for(data_dir), go)
    for row in rows:
        row["scope"] = json_text(row["scope"])  # quoted: the scope "all" apart from a prefix named all
        row["usage"] = ", ".join(f"{k} {v['used']}/{v['limit']}" for k, v in row["usage"].items())
    table(rows, ("id", "name", "scope", "timezone", "usage"))


@budgets.command("show", short_help="Show one budget, as GET /v1/budgets/{id}.")
@click.argument("budget_id")
@data_dir_opt
def budgets_show(budget_id: str, data_dir: str | None) -> None:
    """Show one budget (bud_…) as GET /v1/budgets/{id} answers: its scope, caps and usage."""

    async def go(rt: Runtime) -> dict[str, Any]:
        return await budget_ops.render(rt, await budget_ops.get_record(rt, budget_id))

    print_json(run(settings_for(data_dir), go))


@budgets.command("update")
@click.argument("budget_id")
@click.option("--name", default=None, help="New name.")
@click.option("--timezone", default=None, help="New IANA time zone for day and month roll-over.")
@click.option(
    "--remove", multiple=True, type=click.Choice((*budget_ops.CAPS, "approval_above_usd")), help="remove a cap"
)
@_cap_options
@data_dir_opt
def budgets_update(
    budget_id: str, name: str | None, timezone: str | None, remove: tuple[str, ...], data_dir: str | None, **caps: Any
) -> None:
    """Change a budget's name, time zone or caps (its scope never changes)."""
    patch_doc: dict[str, Any] = {**_caps(name=name, timezone=timezone, **caps), **{r: None for r in remove}}
    print_json(run(settings_for(data_dir), lambda rt: budget_ops.patch(rt, budget_id, patch_doc)))


@budgets.command("delete", short_help="Delete a budget and its counters.")
@click.argument("budget_id")
@data_dir_opt
def budgets_delete(budget_id: str, data_dir: str | None) -> None:
    """Delete a budget (bud_…) and its counters; prints it with "deleted": true (keys keep their own caps)."""
    print_json(run(settings_for(data_dir), lambda rt: budget_ops.delete(rt, budget_id)))
