"""Budgets (`/console/budgets`): caps shared by every key a scope covers (docs/api.md, budgets).

Lists every budget with its scope and each cap as used / limit with its reset time; creates one
from a form through `keybrake.admin.budgets.create` with the API's model (`BudgetIn`), its
refusals shown on the page with the form kept; deletes one after a confirmation.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from keybrake.admin import budgets
from keybrake.admin.errors import ApiError
from keybrake.admin.models import BudgetIn
from keybrake.console.ops_forms import count, optional, validated
from keybrake.console.web import Form, Operator, notice_of, operator, page, posted, runtime, see_other
from keybrake.logs import event

log = logging.getLogger("keybrake.console")
router = APIRouter(include_in_schema=False)
PATH = "/console/budgets"
SCOPE_KINDS = (
    ("all", "Every key"),
    ("label_prefix", "Keys whose label starts with"),
    ("vendor", "Keys of the vendor"),
    ("credential", "Keys using the credential"),
)
USD_FIELDS = ("daily_usd_cap", "monthly_usd_cap", "total_usd_cap", "approval_above_usd")
FIELDS = ("name", "scope_kind", "scope_value", *USD_FIELDS, "daily_request_cap", "timezone")
# A cap's counter (the API's `usage` keys) as the page names it.
COUNTERS = {
    "daily_usd": "Daily spend",
    "monthly_usd": "Monthly spend",
    "total_usd": "Total spend",
    "daily_requests": "Daily requests",
}


@router.get(PATH)
async def budgets_page(request: Request, op: Annotated[Operator, Depends(operator)]) -> Response:
    """Every budget with its usage, and the form to create one."""
    return await _render(request, op, notice=notice_of(request, op))


async def _render(
    request: Request, op: Operator, *, status: int = 200, notice: str = "", problem: str = "", **kept: str
) -> Response:
    rt = runtime(request)
    rows = [await budgets.render(rt, b) for b in await rt.budget_store.list_budgets()]
    form = {name: kept.get(name, "") for name in FIELDS}
    form["scope_kind"] = form["scope_kind"] or "all"
    form["timezone"] = form["timezone"] or "UTC"
    return page(
        request,
        "budgets.html",
        op,
        status=status,
        title="Budgets",
        budgets=rows,
        counters=COUNTERS,
        scope_kinds=SCOPE_KINDS,
        form=form,
        notice=notice,
        problem=problem,
    )


def budget_doc(form: Form) -> dict[str, Any]:
    """The API's create body (`POST /v1/budgets`) for the form's fields: empty fields omitted."""
    kind = form.get("scope_kind") or "all"
    doc: dict[str, Any] = {
        "name": form.get("name"),
        "scope": "all" if kind == "all" else {kind: form.get("scope_value")},
        "timezone": form.get("timezone") or "UTC",
    }
    for name in USD_FIELDS:
        if (value := optional(form.get(name))) is not None:
            doc[name] = value
    if (requests := count(form.get("daily_request_cap"))) is not None:
        doc["daily_request_cap"] = requests
    return doc


@router.post(PATH)
async def create_budget(request: Request, form: Annotated[Form, Depends(posted)]) -> Response:
    """Create a budget; a refusal re-renders the page with the API's message and the form kept."""
    kept = {name: form.get(name) for name in FIELDS}
    try:
        body = validated(BudgetIn, budget_doc(form))
        out = await budgets.create(runtime(request), body)
    except ApiError as exc:
        return await _render(request, form.op, status=exc.status, problem=exc.message, **kept)
    event(log, "budget created", budget_id=out["id"], by=form.op.principal.id)
    warned = " ".join(f"Warning: {w}." for w in out.get("warnings", []))
    return see_other(PATH, form.op, notice=f"Created budget {out['name']} ({out['id']}). {warned}".strip())


@router.post(PATH + "/{budget_id}/delete")
async def delete_budget(request: Request, budget_id: str, form: Annotated[Form, Depends(posted)]) -> Response:
    """Without `confirm=yes`: the confirmation, naming the budget and what deleting it does. With
    it: delete (through `keybrake.admin.budgets.delete`) and back to the list."""
    rt = runtime(request)
    if form.get("confirm") != "yes":
        budget = await budgets.render(rt, await budgets.get_record(rt, budget_id))
        return page(request, "budgets_delete.html", form.op, title="Delete budget", budget=budget)
    out = await budgets.delete(rt, budget_id)
    event(log, "budget deleted", budget_id=budget_id, by=form.op.principal.id)
    return see_other(PATH, form.op, notice=f"Deleted budget {out['name']} ({budget_id}): its caps no longer apply.")
