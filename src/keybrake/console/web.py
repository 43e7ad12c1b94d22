"""What every console page shares: the templates, the signed-in operator, the CSRF-checked form,
and the answers (a page, a redirect, an error page). docs/console.md describes the console.

Pages are rendered on the server with Jinja2 (autoescaping on: every value is escaped unless a
template marks it otherwise, and none does for data). The one script is the vendored htmx, used
for the live parts (the audit tail); every page works without it. The security headers of every
console answer (Content-Security-Policy and the rest) are added by the admin gate.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from keybrake.admin.auth import SCOPE_PRINCIPAL, Principal
from keybrake.admin.errors import ApiError
from keybrake.admin.sessions import SCOPE_SESSION_COOKIE, SCOPE_SESSION_PROBLEM, csrf_token, csrf_valid
from keybrake.console.format import FILTERS
from keybrake.runtime import Runtime

TEMPLATES = files("keybrake.console") / "templates"
MAX_FIELDS = 200  # fields of one posted form
env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,  # a name a template uses that a page did not pass is an error, not ""
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(FILTERS)

# The navigation, in order: (path, label). Every page a signed-in operator reaches from it.
NAV = (
    ("/console", "Overview"),
    ("/console/keys", "Keys"),
    ("/console/runs", "Runs"),
    ("/console/audit", "Audit"),
    ("/console/spend", "Spend"),
    ("/console/budgets", "Budgets"),
    ("/console/alerts", "Alerts"),
    ("/console/credentials", "Credentials"),
    ("/console/approvals", "Approvals"),
)


class SignInNeeded(Exception):
    """No live session: GET pages redirect to the sign-in page, other requests get 401."""

    def __init__(self, why: str | None) -> None:
        super().__init__(why or "not signed in")
        self.why = why


@dataclass(frozen=True)
class Operator:
    """The signed-in operator of a request: the admin token's id and label, the CSRF token."""

    principal: Principal
    csrf: str

    @property
    def may_decide(self) -> bool:
        """Admin-scope tokens decide approvals (as on the API)."""
        return self.principal.token.scope == "admin"


def runtime(request: Request) -> Runtime:
    """The Runtime the admin app was built for."""
    rt: Runtime = request.app.state.runtime
    return rt


def session_cookie(request: Request) -> str:
    """The value of the session cookie the admin gate found live (of those sent), "" without one.
    Every use (the session, its CSRF token, sign-out) reads this one: another cookie planted beside
    it (another port of the host can set one) never supplies the CSRF token."""
    value = request.scope.get(SCOPE_SESSION_COOKIE)
    return value if isinstance(value, str) else ""


async def operator(request: Request) -> Operator:
    """The signed-in operator (a FastAPI dependency). Raises SignInNeeded without a live session."""
    principal = request.scope.get(SCOPE_PRINCIPAL)
    cookie = session_cookie(request)
    if not isinstance(principal, Principal) or principal.via != "session" or not cookie:
        raise SignInNeeded(request.scope.get(SCOPE_SESSION_PROBLEM))
    before_read = getattr(request.app.state, "before_read", None)
    if before_read is not None:
        await before_read()  # the settlements this process has answered are in what the page reads
    return Operator(principal, csrf_token(cookie))


@dataclass(frozen=True)
class Form:
    """A posted form (application/x-www-form-urlencoded), its CSRF token checked."""

    fields: dict[str, str]
    op: Operator

    def get(self, name: str, default: str = "") -> str:
        """The field's value, stripped; `default` when absent."""
        return self.fields.get(name, default).strip()


async def posted(request: Request) -> Form:
    """The form of a console POST (a FastAPI dependency): signed in, sent from this origin, with the
    session's CSRF token in `csrf_token` (a body that is no form has none). Raises SignInNeeded,
    ApiError 403 `csrf_failed` (nothing is changed), or 400 for a form that cannot be read."""
    op = await operator(request)
    origin = request.headers.get("origin")
    if origin is not None and not same_origin(origin, request):
        raise ApiError(
            403,
            "csrf_failed",
            "the form was sent from another site (refused as cross-site request forgery, CSRF); nothing was changed",
        )
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: dict[str, str] = {}
    if ctype == "application/x-www-form-urlencoded":  # anything else carries no CSRF token: refused below
        try:
            pairs = parse_qsl((await request.body()).decode(), keep_blank_values=True, max_num_fields=MAX_FIELDS)
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "invalid_request", "the form could not be read") from None
        for name, value in pairs:
            if name in fields:
                raise ApiError(400, "invalid_request", f"the form field {name!r} was sent twice")
            fields[name] = value
    if not csrf_valid(session_cookie(request), fields.pop("csrf_token", None)):
        raise ApiError(403, "csrf_failed", "the form's CSRF token is missing or wrong; reload the page and try again")
    return Form(fields, op)


def same_origin(origin: str, request: Request) -> bool:
    """True when an Origin header names the host the request was sent to."""
    try:
        return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()
    except ValueError:
        return False


def page(request: Request, template: str, op: Operator | None, status: int = 200, **ctx: Any) -> HTMLResponse:
    """`template` rendered with the layout's values (the operator, the navigation, the CSRF token) and `ctx`."""
    html = env.get_template(template).render(op=op, nav=NAV, path=request.url.path, csrf=op.csrf if op else "", **ctx)
    return HTMLResponse(html, status_code=status)


def run_path(agent_run_id: str) -> str:
    """The timeline's path of a run, the id percent-encoded whole (`/` included), so no run id
    (`../keys/…`) makes a link open another page. Templates use it as the `run_href` filter."""
    return "/console/runs/" + quote(agent_run_id, safe="")


env.filters["run_href"] = run_path


def with_query(path: str, **query: str) -> str:
    """`path` with the non-empty `query` values, URL-encoded."""
    qs = "&".join(f"{k}={quote(v)}" for k, v in query.items() if v)
    return path + (f"?{qs}" if qs else "")


def see_other(path: str, noted_by: Operator | None = None, **query: str) -> RedirectResponse:
    """303 to a console path (after a POST: the browser GETs it; reload never posts again). A
    `notice` (what the action did) is signed for `noted_by`'s session (`ns`, `notice_mac`) so the
    page shows it (`notice_of`); a link from elsewhere cannot. Raises ValueError for a notice
    without `noted_by`."""
    if query.get("notice"):
        if noted_by is None:
            raise ValueError("a notice needs the operator it is shown to")
        query["ns"] = notice_mac(noted_by, query["notice"])
    return RedirectResponse(with_query(path, **query), status_code=303)


def notice_mac(op: Operator, notice: str) -> str:
    """The signature of a notice for `op`'s session (32 hex characters): an HMAC keyed by the
    session's CSRF token, so no one without the session can make a page show a notice."""
    signed = b"keybrake console notice v1\0" + notice.encode()
    return hmac.new(op.csrf.encode(), signed, hashlib.sha256).hexdigest()[:32]


def notice_of(request: Request, op: Operator) -> str:
    """The query string's `notice` when its `ns` signature is `op`'s session's (a redirect of
    `see_other` after an action), else "": text a link from elsewhere put there is never shown."""
    notice, mac = request.query_params.get("notice", ""), request.query_params.get("ns", "")
    return notice if notice and hmac.compare_digest(notice_mac(op, notice).encode(), mac.encode()) else ""


def sign_in_url(next_path: str, why: str = "") -> str:
    """The sign-in page, coming back to `next_path` after it."""
    return with_query("/console/sign-in", next=next_path, why=why)


def safe_next(value: str | None) -> str:
    """Where to go after sign-in: a console path of this server, never another site."""
    if value and value.startswith("/console") and "//" not in value and "\\" not in value and value.isprintable():
        return value
    return "/console"


def error_page(request: Request, status: int, message: str, op: Operator | None = None) -> Response:
    """A console error as a page, with the message (never a secret: messages are the API's)."""
    return page(request, "error.html", op, status=status, status_code=status, message=message)
