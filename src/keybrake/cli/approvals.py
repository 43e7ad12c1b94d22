"""`keybrake approvals …`: calls held for a person's decision, as the admin API's /v1/approvals
(docs/approvals.md). Decisions go through the same operation as the API's; the holder of the
call, on whichever replica, sees it at its next read of the store (within a quarter second)."""

from __future__ import annotations

import getpass
from typing import Any

import click

from keybrake.admin import approvals as approval_ops
from keybrake.admin.audit import parse_limit
from keybrake.cli.common import data_dir_opt, print_json, run, settings_for, table, validate
from keybrake.cli.tables import iso_opt
from keybrake.runtime import Runtime

_COLS = ("id", "state", "key_id", "label", "method", "endpoint", "amount_usd", "created_at", "expires_at")


@click.group(short_help="Calls held for a person's decision: list, approve, deny.")
def approvals() -> None:
    """Calls held for a person's decision (policy approval_above_usd / approval_endpoints)."""


def decided_by() -> str:
    """Who a decision made here is recorded as: `cli:<operating-system user>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return "cli"


@approvals.command("list", short_help="Approvals, newest first, as GET /v1/approvals.")
@click.option("--state", type=click.Choice(approval_ops.STATES), default=None, help="Only approvals in this state.")
@click.option("--key-id", default=None, help="Only approvals of this key (vk_…).")
@click.option("--limit", default="100", show_default=True, help="1 to 1000 (no cursor).")
@click.option("--json", "as_json", is_flag=True, help="The approvals as a JSON array.")
@iso_opt
@data_dir_opt
def approvals_list(state: str | None, key_id: str | None, limit: str, as_json: bool, data_dir: str | None) -> None:
    """Approvals, newest first, as GET /v1/approvals (the first page: --limit)."""

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        rows, _ = await approval_ops.list_approvals(
            rt, state=state, key_id=key_id, limit=parse_limit(limit), cursor=None
        )
        return rows

    rows = run(settings_for(data_dir), go)
    if as_json:
        print_json(rows)
    else:
        table(rows, _COLS)


@approvals.command("get", short_help="Show one approval, as GET /v1/approvals/{id}.")
@click.argument("approval_id")
@data_dir_opt
def approvals_get(approval_id: str, data_dir: str | None) -> None:
    """Show one approval (apr_…) as GET /v1/approvals/{id} answers."""
    print_json(run(settings_for(data_dir), lambda rt: approval_ops.get(rt, approval_id)))


@approvals.command("approve", short_help="Let a held call go.")
@click.argument("approval_id")
@click.option("--reason", default=None, help="Why (at most 500 characters), recorded with the decision.")
@click.option(
    "--grant-run-usd",
    default=None,
    help="Also let the rest of this call's run go without asking while what it reserves fits (USD).",
)
@data_dir_opt
def approvals_approve(approval_id: str, reason: str | None, grant_run_usd: str | None, data_dir: str | None) -> None:
    """Approve a held call (apr_…), as POST /v1/approvals/{id}/approve; prints the approval.

    Fails (conflict) when the approval is no longer pending or its hold has ended."""
    doc: dict[str, Any] = {k: v for k, v in {"reason": reason, "grant_run_usd": grant_run_usd}.items() if v is not None}
    body = validate(approval_ops.ApproveIn, doc)
    by = decided_by()
    print_json(
        run(
            settings_for(data_dir),
            lambda rt: approval_ops.decide(rt, approval_id, "approved", by, body.reason, body.grant_run_usd),
        )
    )


@approvals.command("deny", short_help="Refuse a held call.")
@click.argument("approval_id")
@click.option("--reason", required=True, help="Why (1 to 500 characters); the agent is told.")
@data_dir_opt
def approvals_deny(approval_id: str, reason: str, data_dir: str | None) -> None:
    """Deny a held call (apr_…), as POST /v1/approvals/{id}/deny; prints the approval.

    Fails (conflict) when the approval is no longer pending or its hold has ended."""
    body = validate(approval_ops.DenyIn, {"reason": reason})
    by = decided_by()
    print_json(run(settings_for(data_dir), lambda rt: approval_ops.decide(rt, approval_id, "denied", by, body.reason)))
