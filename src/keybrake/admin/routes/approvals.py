"""`/v1/approvals`: calls held for a person's decision, listed, read, approved and denied
(docs/api.md, approvals; docs/approvals.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from keybrake.admin import approvals as approval_ops
from keybrake.admin.audit import parse_limit
from keybrake.admin.errors import ApiError
from keybrake.admin.routes.common import Admin, Principal, Rt, errors
from keybrake.admin.schemas import Approval, Page
from keybrake.admin.wire import KJSON, page, query_params
from keybrake.runtime import Runtime

log = logging.getLogger("keybrake.admin")
router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


@router.get("", response_model=Page[Approval], responses=errors())
async def list_approvals(
    request: Request,
    rt: Runtime = Rt,
    who: Principal = Admin,
    state: str | None = Query(None, description="pending, approved, denied, expired or cancelled"),
    key_id: str | None = Query(None, description="approvals of this key"),
    limit: str | None = Query(None, description="1 to 1000, default 100"),
    cursor: str | None = Query(None, description="a previous page's next_cursor"),
) -> Response:
    """Approvals, newest first, one page."""
    query_params(request, ("state", "key_id", "limit", "cursor"))
    page_size = parse_limit(limit)
    data, next_cursor = await approval_ops.list_approvals(
        rt, state=state, key_id=key_id, limit=page_size, cursor=cursor
    )
    return page(data, next_cursor)


@router.get("/{approval_id}", response_model=Approval, responses=errors(404))
async def get_approval(approval_id: str, request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """One approval."""
    query_params(request, ())  # takes none: an unknown one is a 400, never ignored
    return KJSON(await approval_ops.get(rt, approval_id))


@router.post("/{approval_id}/approve", response_model=Approval, responses=errors(403, 404, 409, 413, 422))
async def approve_approval(
    approval_id: str,
    request: Request,
    body: approval_ops.ApproveIn | None = Body(None),
    rt: Runtime = Rt,
    who: Principal = Admin,
) -> Response:
    """Let the held call go (only while it is pending and its hold has not ended)."""
    query_params(request, ())
    _may_decide(who)
    body = body or approval_ops.ApproveIn()
    out = await approval_ops.decide(rt, approval_id, "approved", who.id, body.reason, body.grant_run_usd)
    _wake(request, approval_id)
    return KJSON(out)


@router.post("/{approval_id}/deny", response_model=Approval, responses=errors(403, 404, 409, 413, 422))
async def deny_approval(
    approval_id: str, body: approval_ops.DenyIn, request: Request, rt: Runtime = Rt, who: Principal = Admin
) -> Response:
    """Refuse the held call (`approval_denied`); a reason is required."""
    query_params(request, ())
    _may_decide(who)
    out = await approval_ops.decide(rt, approval_id, "denied", who.id, body.reason)
    _wake(request, approval_id)
    return KJSON(out)


def _may_decide(who: Principal) -> None:
    if who.token.scope != "admin":
        raise ApiError(403, "insufficient_scope", "only an admin-scope token may decide an approval")


def _wake(request: Request, approval_id: str) -> None:
    """The holder of the call, when it is on this process, learns the decision now (not at its next poll)."""
    wake: Callable[[str], None] | None = getattr(request.app.state, "wake_approval", None)
    if wake is not None:
        wake(approval_id)
