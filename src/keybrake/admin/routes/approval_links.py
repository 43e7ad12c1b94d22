"""`/v1/approvals/{id}/decide`: the signed approve / deny links of approval.requested (docs/approvals.md).

A link is its own authority (whoever reads the Slack channel has no admin token), so the admin
gate lets exactly these two operations through without one (`gate.decision_link`), and each
checks the link first: its signature over approval id, action and expiry (constant-time, with
the install's link secret, `core.approvals.link_secret`), then its expiry. A wrong signature or
an expired link is a 403 page and decides nothing.

- GET shows what the call is and a form; it never decides (chat and mail scanners open links).
- POST decides, once: the store's compare-and-set takes the first decision while the hold lasts
  and a second use (or a use after the hold) is a 409 page. `decided_by` is `slack-link`. The
  holder on this replica is woken at once (`wake_approval`); others see it at their next poll.

They answer HTML (`admin.approval_page`), never the admin API's JSON, and are left out of
/openapi.json: they are pages for a person, not operations for a client.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from keybrake.admin import approval_page as pages
from keybrake.admin.routes.common import Rt
from keybrake.core.approvals import LINK_ACTIONS, link_secret, link_valid
from keybrake.core.errors import EnforcementUnavailable
from keybrake.logs import event
from keybrake.runtime import Runtime

log = logging.getLogger("keybrake.admin")
router = APIRouter(prefix="/v1/approvals", tags=["approvals"], include_in_schema=False)

DECIDED_BY = "slack-link"
_SIG = re.compile(r"[0-9a-f]{64}", re.ASCII)
_EXPIRES = re.compile(r"[0-9]{1,16}", re.ASCII)
_FORM = "application/x-www-form-urlencoded"


class Refused(Exception):
    """A link that decides nothing: the status and the page's title and text."""

    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(title)
        self.status, self.title, self.text = status, title, text


def page(status: int, html: str) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers=pages.PAGE_HEADERS)


def refused(exc: Refused) -> HTMLResponse:
    return page(exc.status, pages.message(exc.title, exc.text))


def check_link(rt: Runtime, approval_id: str, request: Request) -> str:
    """The link's action, once its query is exactly `action`, `expires` and `sig`, the signature
    signs this approval, action and expiry, and the expiry has not passed. Raises Refused."""
    raw = parse_qs(request.url.query, keep_blank_values=True)
    if set(raw) != {"action", "expires", "sig"} or any(len(v) != 1 for v in raw.values()):
        raise Refused(403, "Not a decision link", "This is not a whole approve or deny link; nothing was decided.")
    action, expires, sig = raw["action"][0], raw["expires"][0], raw["sig"][0]
    if action not in LINK_ACTIONS or not _EXPIRES.fullmatch(expires) or not _SIG.fullmatch(sig):
        raise Refused(403, "Not a decision link", "This link is malformed; nothing was decided.")
    if not link_valid(link_secret(rt.pepper), approval_id, action, int(expires), sig):
        raise Refused(
            403,
            "This link's signature is not valid",
            "The link was changed (its approval, action or expiry) or was not made by this Keybrake; nothing was "
            "decided. Use the link exactly as the alert gave it.",
        )
    if int(expires) <= rt.store.now_ms():
        raise Refused(
            403,
            "This link has expired",
            "The call's hold has ended, and with it this link; nothing was decided. The agent was told no one "
            "decided in time and may ask again.",
        )
    return action


@router.get("/{approval_id}/decide", response_class=HTMLResponse)
async def decision_page(approval_id: str, request: Request, rt: Runtime = Rt) -> HTMLResponse:
    """The confirmation page: what the call is, and a form that POSTs the decision."""
    try:
        action = check_link(rt, approval_id, request)
        rec = await rt.approval_store.approval_get(approval_id)
    except Refused as exc:
        return refused(exc)
    except EnforcementUnavailable:
        return _store_down()
    if rec is None:
        return page(404, pages.message("No such approval", "This approval does not exist (any more)."))
    now = rt.store.now_ms()
    if rec.state != "pending" or rec.expires_at <= now:
        return page(409, pages.message(*pages.outcome(rec)))
    return page(200, pages.confirm(rec, action, now))


@router.post("/{approval_id}/decide", response_class=HTMLResponse)
async def decide_by_link(approval_id: str, request: Request, rt: Runtime = Rt) -> HTMLResponse:
    """Decide, once, as the link says (a deny may carry a `reason` form field)."""
    try:
        action = check_link(rt, approval_id, request)
        reason = _reason(await request.body(), request.headers.get("content-type", ""), action)
    except Refused as exc:
        return refused(exc)
    state = "approved" if action == "approve" else "denied"
    try:
        taken, rec = await rt.approval_store.decide_approval(approval_id, state, DECIDED_BY, reason)
    except EnforcementUnavailable:
        return _store_down()
    if rec is None:
        return page(404, pages.message("No such approval", "This approval does not exist (any more)."))
    if not taken:
        return page(409, pages.message(*pages.outcome(rec)))
    wake: Callable[[str], None] | None = getattr(request.app.state, "wake_approval", None)
    if wake is not None:
        wake(approval_id)  # the holder on this replica goes now; others see it at their next poll
    event(log, "approval decided by link", approval_id=approval_id, state=state, client=_client(request))
    if state == "approved":
        return page(200, pages.message("Approved", "The call goes to the vendor now. This link is used up."))
    return page(200, pages.message("Denied", "The call was refused and the agent told so. This link is used up."))


def _reason(body: bytes, content_type: str, action: str) -> str | None:
    """The deny reason of a form body (url-encoded, `reason` at most once), else None."""
    if not body:
        return None
    if content_type.split(";")[0].strip().lower() != _FORM:
        raise Refused(415, "Not a form", "The decision is sent by the page's form; nothing was decided.")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=4)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "Not a form", "The form could not be read; nothing was decided.") from None
    if set(fields) - {"reason"} or len(fields.get("reason", [])) > 1:
        raise Refused(400, "Not a form", "The form holds fields it should not; nothing was decided.")
    reason = (fields.get("reason") or [""])[0].strip()
    if action != "deny" or not reason:
        return None
    if len(reason) > pages.MAX_REASON or "\x00" in reason:
        raise Refused(400, "Reason too long", f"A reason has at most {pages.MAX_REASON} characters; nothing decided.")
    return reason


def _client(request: Request) -> str:
    return request.client.host if request.client else "local"


def _store_down() -> HTMLResponse:
    event(log, "decision link failed: store unavailable", logging.ERROR)
    return page(503, pages.message("Try again shortly", "Keybrake's store is unavailable; nothing was decided."))
