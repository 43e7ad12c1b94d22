"""`/v1/credentials`: add, list, read, rotate, delete vendor secrets (docs/api.md, credentials)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from keybrake.admin import credentials
from keybrake.admin.errors import ApiError
from keybrake.admin.models import CredentialIn, RotateIn
from keybrake.admin.routes.common import Admin, Principal, Rt, errors
from keybrake.admin.schemas import Credential, DeletedCredential, Page
from keybrake.admin.wire import KJSON, page, query_params
from keybrake.logs import event
from keybrake.runtime import Runtime

log = logging.getLogger("keybrake.admin")
router = APIRouter(prefix="/v1/credentials", tags=["credentials"])


@router.post("", status_code=201, response_model=Credential, responses=errors(409, 413, 422))
async def add_credential(body: CredentialIn, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Add a vendor secret (validated by shape, sealed; never returned)."""
    out = await credentials.add(rt, body)
    event(log, "credential added", credential=body.name, vendor=body.vendor, by=who.id)
    return KJSON(out, status_code=201)


@router.get("", response_model=Page[Credential], responses=errors())
async def list_credentials(request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Every credential, in one page."""
    query_params(request, ())
    return page([await credentials.render(rt, c) for c in await rt.credential_store.list_credentials()])


@router.get("/{name}", response_model=Credential, responses=errors(404))
async def get_credential(name: str, request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """One credential."""
    query_params(request, ())  # takes none: an unknown one is a 400, never ignored
    return KJSON(await credentials.render(rt, await credentials.get_record(rt, name)))


@router.post("/{name}/rotate", response_model=Credential, responses=errors(404, 413, 422))
async def rotate_credential(name: str, body: RotateIn, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Replace the secret (and optionally the base URL); keys stay bound."""
    out = await credentials.rotate(rt, name, body)
    event(log, "credential rotated", credential=name, by=who.id)
    return KJSON(out)


@router.delete("/{name}", response_model=DeletedCredential, responses=errors(404, 409))
async def delete_credential(
    name: str,
    request: Request,
    rt: Runtime = Rt,
    who: Principal = Admin,
    revoke_keys: str | None = Query(None, description="true or false (default): revoke the keys using it"),
) -> Response:
    """Delete a credential; 409 while active keys use it unless `revoke_keys=true`. Takes no body."""
    q = query_params(request, ("revoke_keys",))
    if await request.body():
        msg = "DELETE takes no body: send revoke_keys as ?revoke_keys=true"
        raise ApiError(400, "invalid_request", msg, "body")
    flag = q.get("revoke_keys", "false")
    if flag not in ("true", "false"):
        raise ApiError(400, "invalid_request", "revoke_keys must be true or false", "revoke_keys")
    out = await credentials.delete(rt, name, revoke_keys=flag == "true")
    event(log, "credential deleted", credential=name, by=who.id)
    return KJSON(out)
