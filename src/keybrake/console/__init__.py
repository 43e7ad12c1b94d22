"""The operator console (docs/console.md): server-rendered pages on the admin listener.

`mount(app)` adds the console's routes to the admin app (`keybrake.admin.api.build_admin_app`);
`keybrake.app` serves them on the admin listener only, never on the proxy port. Each page
reads and changes through the same functions as the admin API (`keybrake.admin.keys`, …), so a
change made here is validated, recorded and alerted on exactly like the API's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import Response

from keybrake.admin.errors import ApiError
from keybrake.admin.sessions import console_path
from keybrake.console.routes import (
    alerts,
    approvals,
    audit,
    budgets,
    credentials,
    key_detail,
    keys,
    overview,
    runs,
    session,
    spend,
    static,
)
from keybrake.console.spend_days import SpendDays
from keybrake.console.web import SignInNeeded, error_page, safe_next, see_other, sign_in_url
from keybrake.core.errors import EnforcementUnavailable

ROUTERS = (
    session.router,
    static.router,
    overview.router,
    keys.router,
    key_detail.router,
    runs.router,
    audit.router,
    spend.router,
    approvals.router,
    budgets.router,
    alerts.router,
    credentials.router,
)
Handler = Callable[[Request, Exception], Awaitable[Response]]


def mount(app: FastAPI) -> None:
    """Add the console's pages to the admin app, with its errors answered as pages."""
    for router in ROUTERS:
        app.include_router(router)
    app.state.spend_days = SpendDays()  # the Overview's and Spend's per-day totals (closed days kept)
    app.add_exception_handler(SignInNeeded, _sign_in_needed)  # type: ignore[arg-type]
    for exc_class in (ApiError, EnforcementUnavailable):
        app.add_exception_handler(exc_class, _as_page(app.exception_handlers[exc_class]))  # type: ignore[arg-type]


async def _sign_in_needed(request: Request, exc: SignInNeeded) -> Response:
    """No live session: a page goes to the sign-in form (and back after it); a part a page
    refreshes by itself (an htmx request) sends the whole page there, carrying no data; a POST
    is refused 401."""
    if request.headers.get("hx-request") == "true":
        where = request.headers.get("hx-current-url", "")
        target = safe_next(urlsplit(where).path + (f"?{urlsplit(where).query}" if urlsplit(where).query else ""))
        return Response(status_code=200, headers={"hx-redirect": sign_in_url(target, exc.why or "")})
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return see_other("/console/sign-in", next=target, why=exc.why or "")
    return error_page(
        request, 401, "You are not signed in (or your session ended): sign in again; nothing was changed."
    )


def _as_page(api_handler: Handler) -> Handler:
    """An exception handler answering console paths with an error page and others as before."""

    async def handler(request: Request, exc: Exception) -> Response:
        if not console_path(request.url.path):
            return await api_handler(request, exc)
        if isinstance(exc, ApiError):
            return error_page(request, exc.status, exc.message)
        return error_page(request, 503, "The store is unavailable; nothing was changed. Try again shortly.")

    return handler
