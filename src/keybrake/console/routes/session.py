"""Sign-in and sign-out (docs/console.md, signing in): an admin token in, a session cookie out.

Failed sign-ins are counted per address with the admin API's failed authentications (past 10 a
minute: 429, while a valid token still gets in). The token is never echoed, logged or stored.
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from keybrake.admin.errors import ApiError
from keybrake.admin.gate import FAILURES_PER_MINUTE, client_address
from keybrake.admin.sessions import COOKIE, end_session, open_session
from keybrake.console.web import Form, page, posted, runtime, safe_next, same_origin, see_other, session_cookie
from keybrake.logs import event
from keybrake.runtime import Runtime
from keybrake.tokens import VAULT_PREFIX

router = APIRouter(include_in_schema=False)
log = logging.getLogger("keybrake.console")
_SIGNED_OUT = {
    "expired": "Your session expired; sign in again.",
    "signed_out": "You signed out; sign in again to go on.",
    "token_revoked": "The admin token this session was opened with has been revoked; sign in with another.",
}


def _hours(rt: Runtime) -> str:
    h = rt.settings.console_session_s / 3600
    return f"{h:g} hours" if h != 1 else "1 hour"


@router.get("/console/sign-in")
async def sign_in_page(request: Request, next: str = "/console", why: str = "") -> Response:
    """The sign-in form; `why` says why an earlier session ended."""
    rt = runtime(request)
    return page(request, "sign_in.html", None, next=safe_next(next), session_hours=_hours(rt),
                notice=_SIGNED_OUT.get(why, ""))  # fmt: skip


@router.post("/console/sign-in")
async def sign_in(request: Request) -> Response:
    """Check the admin token; on success open a session (cookie) and go to `next`."""
    rt = runtime(request)
    fields = await _sign_in_fields(request)
    token, nxt = fields.get("token", "").strip(), safe_next(fields.get("next"))
    rec = None
    if token and len(token) <= 200 and not token.startswith(VAULT_PREFIX):
        rec = await rt.token_store.admin_token_by_hash(rt.hash_token(token))
    if rec is None or rec.revoked_at is not None:
        client = client_address(dict(request.scope))
        count = request.app.state.auth_failures.failed(client)
        event(log, "console sign-in failed", logging.WARNING, client=client)
        if count > FAILURES_PER_MINUTE:
            msg = f"More than {FAILURES_PER_MINUTE} failed sign-ins in a minute from this address; wait a minute."
            return page(request, "sign_in.html", None, status=429, next=nxt, session_hours=_hours(rt), problem=msg)
        problem = (
            "That is a vault key: the console needs an admin token."
            if token.startswith(VAULT_PREFIX)
            else "Unknown or revoked admin token."
        )
        return page(request, "sign_in.html", None, status=401, next=nxt, session_hours=_hours(rt), problem=problem)
    cookie, session = await open_session(rt, rec)
    event(log, "console sign-in", logging.INFO, admin_token_id=rec.id, session_id=session.id)
    answer = see_other(nxt)
    answer.set_cookie(
        COOKIE, cookie, max_age=rt.settings.console_session_s, path="/console", httponly=True, samesite="strict",
        secure=secure_cookie(request, rt),
    )  # fmt: skip
    return answer


def secure_cookie(request: Request, rt: Runtime) -> bool:
    """The cookie is `Secure` when the console was reached over HTTPS: this request's scheme (Keybrake's
    own TLS, or a trusted proxy's forwarded one), or an https KEYBRAKE_PUBLIC_URL (a TLS proxy in
    front whose forwarded headers are not trusted)."""
    public = rt.settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


async def _sign_in_fields(request: Request) -> dict[str, str]:
    """The sign-in form's fields. Raises ApiError 403 for a form sent from another site (a login
    CSRF: signing a browser in as someone else), 400 for a body that is no sign-in form."""
    origin = request.headers.get("origin")
    if origin is not None and not same_origin(origin, request):
        raise ApiError(403, "csrf_failed", "the sign-in form was sent from another site")
    body = (await request.body()).decode("utf-8", "replace")
    try:
        return dict(parse_qsl(body, keep_blank_values=True, max_num_fields=10))
    except ValueError:  # more fields than the form has: input refused, not an internal error
        raise ApiError(400, "invalid_request", "the sign-in form could not be read") from None


@router.post("/console/sign-out")
async def sign_out(request: Request, form: Annotated[Form, Depends(posted)]) -> Response:
    """End the session (server side, at once) and clear the cookie."""
    rt = runtime(request)
    await end_session(rt, session_cookie(request))
    event(log, "console sign-out", logging.INFO, session_id=form.op.principal.session_id)
    answer = see_other("/console/sign-in", why="signed_out")
    answer.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return answer
