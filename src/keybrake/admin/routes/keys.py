"""`/v1/keys`: issue, list, read, patch, revoke, bulk revoke (docs/api.md, keys).

The router is built per admin app (`build_router`): its models carry the policy fields of the
app's vendors (`keybrake.admin.key_models`)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response

from keybrake.admin import keys
from keybrake.admin.audit import decode_cursor, encode_cursor, parse_limit
from keybrake.admin.errors import ApiError
from keybrake.admin.key_models import KeyModels
from keybrake.admin.models import BulkRevokeIn, KeyIn
from keybrake.admin.routes.common import Admin, Principal, Rt, alerts, errors, json_request_body
from keybrake.admin.schemas import Page, Revocation
from keybrake.admin.wire import KJSON, json_body, page, query_params
from keybrake.jobs.alerts import Alerts
from keybrake.logs import event
from keybrake.runtime import Runtime
from keybrake.store.base import KeyQuery

log = logging.getLogger("keybrake.admin")
Alerter = Depends(alerts)
_LIST_PARAMS = ("label_prefix", "label", "vendor", "credential", "status", "limit", "cursor")


async def issue_key(
    body: KeyIn,
    rt: Runtime = Rt,
    who: Principal = Admin,
    idempotency_key: str | None = Header(None, description="a repeat within 24 h returns the first answer"),
) -> Response:
    """Issue a vault key; the token is in this answer only."""
    if idempotency_key is None:
        out = await keys.issue(rt, body, who.id)
    else:
        out = await keys.issue_idempotent(rt, body, who.id, idempotency_key)
    replayed = idempotency_key is not None
    event(log, "key issued", key_id=out["id"], by=who.id, vendor=body.vendor, replayed=replayed)
    return KJSON(out, status_code=201)


async def list_keys(
    request: Request,
    rt: Runtime = Rt,
    who: Principal = Admin,
    label_prefix: str | None = Query(None, description="labels starting with it (case-sensitive)"),
    label: str | None = None,
    vendor: str | None = None,
    credential: str | None = None,
    status: str | None = Query(None, description="active, revoked or expired"),
    limit: str | None = Query(None, description="1 to 1000, default 100"),
    cursor: str | None = Query(None, description="a previous page's next_cursor"),
) -> Response:
    """Keys, newest first, one page; also `metadata.<k>=<v>` filters (exact)."""
    q = query_params(request, _LIST_PARAMS, prefixes=("metadata.",))
    if status is not None and status not in ("active", "revoked", "expired"):
        raise ApiError(400, "invalid_request", "status must be active, revoked or expired", "status")
    query = KeyQuery(
        label_prefix=label_prefix,
        label=label,
        vendor=vendor,
        credential=credential,
        status=status,
        metadata={k[9:]: v for k, v in q.items() if k.startswith("metadata.")},
        cursor=decode_cursor(cursor) if cursor is not None else None,
        limit=parse_limit(limit),
    )
    data, raw_cursor = await keys.list_keys(rt, query)
    next_cursor = None
    if raw_cursor:
        created, key_id = raw_cursor.split(":", 1)
        next_cursor = encode_cursor(int(created), key_id)
    return page(data, next_cursor)


async def bulk_revoke(
    body: BulkRevokeIn, rt: Runtime = Rt, who: Principal = Admin, sender: Alerts | None = Alerter
) -> Response:
    """Revoke every active key matching the filters (or all, with `"all": true`)."""
    out = await keys.bulk_revoke(rt, body)
    event(log, "keys revoked in bulk", count=out["revoked"], by=who.id)
    if sender is not None and out["revoked"]:
        sender.soon(sender.scan_revoked())  # one key.revoked per key revoked, now
    return KJSON(out)


async def get_key(key_id: str, request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """One key with its usage."""
    query_params(request, ())  # takes none: an unknown one is a 400, never ignored
    return KJSON(await keys.render(rt, await keys.get_record(rt, key_id)))


async def patch_key(key_id: str, request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Change label, metadata, expiry or policy (JSON merge patch); 409 unless the key is active."""
    out = await keys.patch(rt, key_id, await json_body(request))
    event(log, "key changed", key_id=key_id, by=who.id)
    return KJSON(out)


async def revoke_key(
    key_id: str,
    request: Request,
    rt: Runtime = Rt,
    who: Principal = Admin,
    sender: Alerts | None = Alerter,
    reason: str | None = Query(None, description="why (≤ 500 characters); or send it in the body"),
) -> Response:
    """Revoke one key (idempotent: revoking a revoked key answers it again)."""
    query_params(request, ("reason",))
    body = await json_body(request)
    if isinstance(body, dict):
        extra = set(body) - {"reason"}
        if extra:
            raise ApiError(422, "validation_error", f"unknown field {sorted(extra)[0]!r}", sorted(extra)[0])
        reason = body.get("reason", reason)
        if reason is not None and not isinstance(reason, str):
            raise ApiError(422, "validation_error", "reason must be a string", "reason")
    elif body is not None:
        raise ApiError(400, "invalid_request", 'the body must be a JSON object like {"reason": "…"}')
    out = await keys.revoke(rt, key_id, reason)
    event(log, "key revoked", key_id=key_id, by=who.id)
    if sender is not None:
        sender.key_revoked(await keys.get_record(rt, key_id))
    return KJSON(out)


def build_router(models: KeyModels) -> APIRouter:
    """The `/v1/keys` router of one admin app, typed with `models` (its vendors' policy fields)."""
    key, key_in = models.key, models.key_in
    router = APIRouter(prefix="/v1/keys", tags=["keys"])
    router.add_api_route(
        "",
        _with_body(issue_key, key_in),
        methods=["POST"],
        status_code=201,
        response_model=models.issued_key,
        responses=errors(409, 413, 422),
    )
    router.add_api_route("", list_keys, methods=["GET"], response_model=Page[key], responses=errors())  # type: ignore[valid-type]
    router.add_api_route(
        "/revoke", bulk_revoke, methods=["POST"], response_model=Revocation, responses=errors(413, 422)
    )
    router.add_api_route("/{key_id}", get_key, methods=["GET"], response_model=key, responses=errors(404))
    router.add_api_route(
        "/{key_id}",
        patch_key,
        methods=["PATCH"],
        response_model=models.updated_key,
        responses=errors(404, 409, 413, 422),
        openapi_extra=json_request_body("KeyMergePatch", required=True),
    )
    router.add_api_route(
        "/{key_id}",
        revoke_key,
        methods=["DELETE"],
        response_model=key,
        responses=errors(404, 413, 422),
        openapi_extra=json_request_body("RevokeBody", required=False),
    )
    return router


def _with_body(endpoint: Callable[..., Awaitable[Response]], model: type[KeyIn]) -> Callable[..., Awaitable[Response]]:
    """`endpoint` with its `body` parameter declared as `model` (FastAPI validates and describes it)."""

    @functools.wraps(endpoint)
    async def typed(*args: Any, **kwargs: Any) -> Response:
        return await endpoint(*args, **kwargs)

    signature = inspect.signature(endpoint)
    params = [p.replace(annotation=model) if p.name == "body" else p for p in signature.parameters.values()]
    typed.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return typed
