"""Who may call the admin API: one `Principal`, resolved once per request, required by one dependency.

The ASGI gate (`keybrake.admin.gate.AdminGate`) resolves the caller before any body is read and
puts a `Principal` in the request scope under `SCOPE_PRINCIPAL`; every admin route depends on
`require_admin`, which only asks for that Principal (401 `admin_token_invalid` without one). No
route looks at the `Authorization` header, a token or a store itself.

A Principal comes from one of two sources: `Authorization: Bearer <admin token>` (`via="bearer"`)
on the JSON API, or the web console's session cookie (`via="session"`, `keybrake.admin.sessions`)
on the console's pages under `/console` only. The console checks a CSRF token on every POST
(`keybrake.console.forms`): the bearer header needs none, a cookie does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from keybrake.admin.errors import ApiError
from keybrake.store.base import AdminTokenRecord

SCOPE_PRINCIPAL = "keybrake.admin_principal"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated admin caller.

    `id` is what logs and `issued_by` record (the admin token id, `adm_…`); `via` says how it was
    proved; `token` is the admin token record it stands for; `session_id` is the console
    session's `cs_…` id (None for a bearer token).
    """

    id: str
    via: Literal["bearer", "session"]
    token: AdminTokenRecord
    session_id: str | None = None

    @classmethod
    def from_token(cls, rec: AdminTokenRecord) -> Principal:
        """The Principal of a valid (unrevoked) admin token presented as a bearer token."""
        return cls(rec.id, "bearer", rec)


# Declares the scheme in /openapi.json (the docs page's "Authorize" button, generated clients'
# AuthenticatedClient). It checks nothing: the gate did, before the body was read.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    bearerFormat="kb_admin_…",
    description="An admin token (`keybrake admin-tokens create`), sent as `Authorization: Bearer <token>`.",
)


async def admit(request: Request) -> Principal:
    """The caller's Principal, after the reads-see-writes hook (`app.state.before_read`, the
    settlements this process has answered but not yet written). Raises ApiError 401 without one."""
    principal = request.scope.get(SCOPE_PRINCIPAL)
    if not isinstance(principal, Principal):
        raise ApiError(401, "admin_token_invalid", "send 'Authorization: Bearer <admin token>'")
    before_read = getattr(request.app.state, "before_read", None)
    if before_read is not None:
        await before_read()
    return principal


async def require_admin(
    request: Request, _credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    """The one admin dependency every protected route declares (see `admit`)."""
    return await admit(request)
