"""`/v1/budgets`: caps shared by every key a scope covers (docs/api.md, budgets)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from keybrake.admin import budgets
from keybrake.admin.models import BudgetIn
from keybrake.admin.routes.common import Admin, Principal, Rt, errors, json_request_body
from keybrake.admin.schemas import Budget, CreatedBudget, DeletedBudget, Page
from keybrake.admin.wire import KJSON, json_body, page, query_params
from keybrake.logs import event
from keybrake.runtime import Runtime

log = logging.getLogger("keybrake.admin")
router = APIRouter(prefix="/v1/budgets", tags=["budgets"])


@router.post("", status_code=201, response_model=CreatedBudget, responses=errors(413, 422))
async def create_budget(body: BudgetIn, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Create a budget."""
    out = await budgets.create(rt, body)
    event(log, "budget created", budget_id=out["id"], by=who.id)
    return KJSON(out, status_code=201)


@router.get("", response_model=Page[Budget], responses=errors())
async def list_budgets(request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Every budget with its usage, in one page."""
    query_params(request, ())
    return page([await budgets.render(rt, b) for b in await rt.budget_store.list_budgets()])


@router.get("/{budget_id}", response_model=Budget, responses=errors(404))
async def get_budget(budget_id: str, request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """One budget with its usage."""
    query_params(request, ())  # takes none: an unknown one is a 400, never ignored
    return KJSON(await budgets.render(rt, await budgets.get_record(rt, budget_id)))


@router.patch(
    "/{budget_id}",
    response_model=Budget,
    responses=errors(404, 413, 422),
    openapi_extra=json_request_body("BudgetMergePatch", required=True),
)
async def patch_budget(budget_id: str, request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Change name, caps or time zone (JSON merge patch)."""
    out = await budgets.patch(rt, budget_id, await json_body(request))
    event(log, "budget changed", budget_id=budget_id, by=who.id)
    return KJSON(out)


@router.delete("/{budget_id}", response_model=DeletedBudget, responses=errors(404))
async def delete_budget(budget_id: str, request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Delete a budget; answers it as it was."""
    query_params(request, ())  # takes none: an unknown one is a 400, never ignored
    out = await budgets.delete(rt, budget_id)
    event(log, "budget deleted", budget_id=budget_id, by=who.id)
    return KJSON(out)
