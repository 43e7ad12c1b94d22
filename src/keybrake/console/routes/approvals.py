"""Approvals inbox (`/console/approvals`): calls held for a person's decision (docs/approvals.md).

Pending approvals first, each with its Approve, Approve + grant for the rest of the run, and Deny
forms (admin-scope tokens only; others see the inbox read-only), then the recently decided ones.
The pending list refreshes itself every 3 s through htmx (`/console/approvals/pending`, answered
204 while nothing changed, so a reason being typed is not wiped). A decision goes through
`keybrake.admin.approvals.decide` exactly as the API's, recorded as `decided_by:
console:<admin token id>`, and wakes the holder of the call at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from keybrake.admin import approvals as approval_ops
from keybrake.admin.errors import ApiError
from keybrake.console.ops_forms import optional, validated
from keybrake.console.web import Form, Operator, SignInNeeded, notice_of, operator, page, posted, runtime, see_other

router = APIRouter(include_in_schema=False)
PATH = "/console/approvals"
PENDING_LIMIT = 100  # at most KEYBRAKE_APPROVAL_MAX_PENDING per key wait at once; a page shows this many
DECIDED_LIMIT = 50
DECIDED_STATES = ("approved", "denied", "expired", "cancelled")


def decided_by(op: Operator) -> str:
    """Who a console decision is recorded as: `console:<admin token id>` (`console:adm_…`)."""
    return f"console:{op.principal.id}"


async def _pending(request: Request) -> tuple[list[dict[str, Any]], str]:
    """The pending approvals (newest first, bounded) and a signature of which they are."""
    rows, _ = await approval_ops.list_approvals(
        runtime(request), state="pending", key_id=None, limit=PENDING_LIMIT, cursor=None
    )
    shown = hashlib.sha256(",".join(r["id"] for r in rows).encode()).hexdigest()[:16]
    return rows, shown


@router.get(PATH)
async def approvals_page(
    request: Request, op: Annotated[Operator, Depends(operator)], state: str = "", cursor: str = ""
) -> Response:
    """The inbox: pending approvals, then the recent decided ones (`state` filter, `cursor` paging)."""
    return await _render(request, op, state=state, cursor=cursor, notice=notice_of(request, op))


@router.get(PATH + "/pending")
async def pending_fragment(request: Request, shown: str = "") -> Response:
    """The pending list alone (htmx polls it); 204 when it still lists exactly the approvals `shown`.
    Once the session has ended, htmx is told to load the sign-in page (`HX-Redirect`) instead of
    swapping it into the list."""
    try:
        op = await operator(request)
    except SignInNeeded as exc:
        if request.headers.get("hx-request") != "true":
            raise
        target = see_other("/console/sign-in", next=PATH, why=exc.why or "").headers["location"]
        return Response(status_code=204, headers={"HX-Redirect": target})
    rows, sig = await _pending(request)
    if shown and shown == sig:
        return Response(status_code=204)
    return page(request, "approvals_pending.html", op, pending=rows, shown=sig, kept={})


async def _render(
    request: Request,
    op: Operator,
    *,
    state: str = "",
    cursor: str = "",
    status: int = 200,
    notice: str = "",
    problem: str = "",
    kept: dict[str, str] | None = None,
) -> Response:
    if state and state not in DECIDED_STATES:  # said (400) above the inbox, never dropped silently
        problem = f"{problem} state must be one of {', '.join(DECIDED_STATES)}; showing every decided state.".strip()
        state, status = "", max(status, 400)
    pending, sig = await _pending(request)
    decided, next_cursor = await approval_ops.list_approvals(
        runtime(request), state=state or None, key_id=None, limit=DECIDED_LIMIT, cursor=cursor or None
    )
    decided = [a for a in decided if a["state"] != "pending"]
    return page(
        request,
        "approvals.html",
        op,
        status=status,
        title="Approvals",
        pending=pending,
        shown=sig,
        decided=decided,
        state=state,
        states=DECIDED_STATES,
        next_cursor=next_cursor or "",
        notice=notice,
        problem=problem,
        kept=kept or {},
    )


@router.post(PATH + "/{approval_id}/approve")
async def approve(request: Request, approval_id: str, form: Annotated[Form, Depends(posted)]) -> Response:
    """Approve (button `action=approve`) or approve and grant the rest of the run up to
    `grant_run_usd` (`action=grant`); `reason` optional. 422 / 409 re-render the inbox with the
    API's message and what was typed."""
    kept = {"id": approval_id, "reason": form.get("reason"), "grant_run_usd": form.get("grant_run_usd")}
    grant = form.get("action") == "grant"
    try:
        _may_decide(form.op)
        if grant and not kept["grant_run_usd"]:
            raise ApiError(422, "validation_error", "grant_run_usd: enter the US dollars to grant the rest of the run")
        if not grant and kept["grant_run_usd"]:
            raise ApiError(
                422,
                "validation_error",
                "grant_run_usd: an amount was entered but Approve grants nothing; "
                "press Approve + grant to grant it, or clear it",
            )
        doc = {"reason": optional(kept["reason"]), "grant_run_usd": kept["grant_run_usd"] if grant else None}
        body = validated(approval_ops.ApproveIn, doc)
        by = decided_by(form.op)
        out = await approval_ops.decide(runtime(request), approval_id, "approved", by, body.reason, body.grant_run_usd)
    except ApiError as exc:
        return await _refused(request, form.op, exc, kept)
    _wake(request, approval_id)
    granted = f"; the rest of its run may reserve up to ${out['grant_run_usd']} without asking" if grant else ""
    return see_other(PATH, form.op, notice=f"Approved {approval_id}: the held call goes now{granted}.")


@router.post(PATH + "/{approval_id}/deny")
async def deny(request: Request, approval_id: str, form: Annotated[Form, Depends(posted)]) -> Response:
    """Deny with a required `reason` (the agent is told it: `approval_denied`)."""
    kept = {"id": approval_id, "deny_reason": form.get("reason")}
    try:
        _may_decide(form.op)
        if not kept["deny_reason"]:
            raise ApiError(422, "validation_error", "reason: a reason is required to deny (the agent is told it)")
        body = validated(approval_ops.DenyIn, {"reason": kept["deny_reason"]})
        await approval_ops.decide(runtime(request), approval_id, "denied", decided_by(form.op), body.reason)
    except ApiError as exc:
        return await _refused(request, form.op, exc, kept)
    _wake(request, approval_id)
    return see_other(PATH, form.op, notice=f"Denied {approval_id}: the agent gets approval_denied with your reason.")


async def _refused(request: Request, op: Operator, exc: ApiError, kept: dict[str, str]) -> Response:
    """The inbox again with the API's message, the status it would answer, and what was typed."""
    return await _render(request, op, status=exc.status, problem=exc.message, kept=kept)


def _may_decide(op: Operator) -> None:
    if not op.may_decide:
        raise ApiError(403, "insufficient_scope", "only an admin-scope token may decide an approval")


def _wake(request: Request, approval_id: str) -> None:
    """The holder of the call, when it is on this process, learns the decision now (as the API's)."""
    wake: Callable[[str], None] | None = getattr(request.app.state, "wake_approval", None)
    if wake is not None:
        wake(approval_id)
