"""Approvals at the API edge: calls held for a person's decision, listed, read and decided
(docs/api.md, approvals; docs/approvals.md).

A decision is one compare-and-set in the store (`decide_approval`): it is taken only while the
approval is pending and its hold has not ended. One that loses (decided already, expired,
cancelled) is a 409 naming what the approval is now. The admin API and the CLI both decide here.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field, field_validator

from keybrake.admin.audit import decode_cursor, encode_cursor
from keybrake.admin.errors import ApiError, conflict, not_found
from keybrake.admin.policy import Money, Strict
from keybrake.core.money import to_json_number
from keybrake.core.timefmt import rfc3339
from keybrake.logs import event
from keybrake.runtime import Runtime
from keybrake.store.base import APPROVAL_STATES, ApprovalQuery, ApprovalRecord

log = logging.getLogger("keybrake.admin")
STATES = APPROVAL_STATES
_STATE_LIST = ", ".join(STATES[:-1]) + " or " + STATES[-1]


class ApproveIn(Strict):
    """`POST /v1/approvals/{id}/approve` (the body is optional)."""

    reason: str | None = Field(default=None, min_length=1, max_length=500)
    grant_run_usd: Money | None = Field(
        default=None,
        description="also let the rest of this call's run go without asking while what it reserves fits (USD, > 0)",
    )

    @field_validator("grant_run_usd")
    @classmethod
    def _some_money(cls, v: int | None) -> int | None:
        if v == 0:  # it would cover nothing: a grant covers calls that reserve more than $0
            raise ValueError("must be more than 0: a grant of $0 would cover no call (omit it to grant nothing)")
        return v


class DenyIn(Strict):
    """`POST /v1/approvals/{id}/deny`."""

    reason: str = Field(min_length=1, max_length=500)


def state_of(rec: ApprovalRecord, now: int) -> str:
    """The state as the API shows it: a pending approval past its hold is `expired` (its holder
    is ending it; no decision can be taken any more)."""
    return "expired" if rec.state == "pending" and rec.expires_at <= now else rec.state


def render(rec: ApprovalRecord, now: int) -> dict[str, Any]:
    return {
        "id": rec.id,
        "object": "approval",
        "state": state_of(rec, now),
        "key_id": rec.key_id,
        "label": rec.label,
        "agent_run_id": rec.agent_run_id,
        "vendor": rec.vendor,
        "method": rec.method,
        "endpoint": rec.endpoint,
        "amount_usd": to_json_number(rec.amount_usd),
        "summary": rec.summary,
        "reasons": list(rec.reasons),
        "created_at": rfc3339(rec.created_at),
        "expires_at": rfc3339(rec.expires_at),
        "decided_at": rfc3339(rec.decided_at) if rec.decided_at is not None else None,
        "decided_by": rec.decided_by,
        "reason": rec.reason,
        "grant_run_usd": to_json_number(rec.grant_usd) if rec.grant_usd is not None else None,
        "audit_id": rec.audit_id,
    }


def check_state(state: str | None) -> None:
    if state is not None and state not in STATES:
        raise ApiError(400, "invalid_request", f"state must be {_STATE_LIST}", "state")


async def list_approvals(
    rt: Runtime, *, state: str | None, key_id: str | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page, newest first, and the cursor of the next (None on the last page)."""
    check_state(state)
    before = decode_cursor(cursor)[1] if cursor is not None else None
    q = ApprovalQuery(state=state, key_id=key_id, before_id=before, limit=limit + 1)
    recs = await rt.approval_store.list_approvals(q)
    more, recs = len(recs) > limit, recs[:limit]
    now = rt.approval_store.now_ms()
    next_cursor = encode_cursor(recs[-1].created_at, recs[-1].id) if more else None
    return [render(r, now) for r in recs], next_cursor


async def get_record(rt: Runtime, approval_id: str) -> ApprovalRecord:
    rec = await rt.approval_store.approval_get(approval_id)
    if rec is None:
        raise not_found(f"approval {approval_id!r}")
    return rec


async def get(rt: Runtime, approval_id: str) -> dict[str, Any]:
    return render(await get_record(rt, approval_id), rt.approval_store.now_ms())


async def decide(
    rt: Runtime, approval_id: str, state: str, by: str, reason: str | None, grant_usd: int | None = None
) -> dict[str, Any]:
    """Take the decision `state` (approved | denied) by `by`; ApiError 404 when there is no such
    approval, 409 naming its state when the decision loses. Logs every decision taken."""
    taken, rec = await rt.approval_store.decide_approval(approval_id, state, by, reason, grant_usd)
    if rec is None:
        raise not_found(f"approval {approval_id!r}")
    now = rt.approval_store.now_ms()
    if not taken:
        raise conflict(lost_message(rec, now))
    event(log, "approval decided", approval_id=rec.id, state=rec.state, by=by)
    return render(rec, now)


def lost_message(rec: ApprovalRecord, now: int) -> str:
    """Why a decision on `rec` cannot be taken: what the approval is now."""
    state = state_of(rec, now)
    when = rfc3339(rec.decided_at) if rec.decided_at is not None else None
    if state in ("approved", "denied"):
        return f"approval {rec.id} is already {state} by {rec.decided_by} at {when}"
    if state == "expired":
        return f"approval {rec.id} expired: the hold ended at {rfc3339(rec.expires_at)}"
    if state == "cancelled":
        why = f" ({rec.reason})" if rec.reason else ""
        return f"approval {rec.id} was cancelled at {when}{why}"
    return f"approval {rec.id} is {state}"  # pending and unexpired: lost to nothing known
