"""`/v1/audit`: the audit log, a page at a time, one row, or a streamed export (docs/api.md, audit)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from keybrake.admin.audit import FILTERS, FORMATS, encode_cursor, export_answer, query_from, render_row
from keybrake.admin.errors import ApiError, not_found
from keybrake.admin.routes.common import Admin, Principal, Rt, errors
from keybrake.admin.schemas import AuditRow, Page
from keybrake.admin.wire import KJSON, page, query_params
from keybrake.logs import event
from keybrake.runtime import Runtime

log = logging.getLogger("keybrake.admin")
router = APIRouter(prefix="/v1/audit", tags=["audit"])

_MEANING = {
    "since": "RFC 3339 with an offset, or Unix seconds; inclusive",
    "until": "RFC 3339 with an offset, or Unix seconds; exclusive",
    "limit": "1 to 1000, default 100",
    "cursor": "a previous page's next_cursor",
    "format": "csv (default) or jsonl",
    "verdict": "exact, or `denied` for every denied_*",
    "label_prefix": "labels starting with it (case-sensitive)",
    "idempotency_key_prefix": "Idempotency-Keys starting with it (case-sensitive)",
}


def _documented(*names: str) -> dict[str, Any]:
    """`openapi_extra` declaring the query parameters a route reads through `query_from` (all
    optional strings; `metadata.<k>=<v>` filters are described in the operation's text)."""
    params = [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in names]
    for p in params:
        p["description"] = _MEANING.get(str(p["name"]), "exact")
    return {"parameters": params}


_PAGE_PARAMS = (*FILTERS, "since", "until", "cursor", "limit")


@router.get("", response_model=Page[AuditRow], responses=errors(), openapi_extra=_documented(*_PAGE_PARAMS))
async def query_audit(request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Audit rows, newest first, one page; also `metadata.<k>=<v>` filters (exact). Reads include
    every request this process has already answered."""
    params = query_params(request, _PAGE_PARAMS, prefixes=("metadata.",))
    q = query_from(params)
    rows = await rt.audit_store.query_audit(q.__class__(**{**q.__dict__, "limit": q.limit + 1}))
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    next_cursor = encode_cursor(rows[-1]["ts"], rows[-1]["id"]) if more and rows else None
    return page([render_row(r) for r in rows], next_cursor)


_EXPORT_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "every matching row, oldest first, streamed; a cut stream ends without HTTP's final chunk",
        "content": {media.split(";")[0]: {"schema": {"type": "string"}} for media in FORMATS.values()},
    }
}


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={**_EXPORT_ANSWER, **errors()},
    openapi_extra=_documented(*FILTERS, "since", "until", "format"),
)
async def audit_export(request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """Every matching row as CSV or JSON Lines (`format`), streamed page by page; the same filters,
    `metadata.<k>=<v>` (exact) included."""
    params = query_params(request, (*FILTERS, "since", "until", "format"), prefixes=("metadata.",))
    fmt = params.pop("format", "csv")
    if fmt not in FORMATS:
        raise ApiError(400, "invalid_request", "format must be csv or jsonl", "format")
    q = query_from(params)
    event(log, "audit export", format=fmt, by=who.id)
    return await export_answer(rt.store, q, fmt, f"keybrake-audit.{fmt}")


@router.get("/{row_id}", response_model=AuditRow, responses=errors(404))
async def get_audit(row_id: str, request: Request, rt: Runtime = Rt, who: Principal = Admin) -> Response:
    """One row by its `kbr_…` id (an answer's `X-Keybrake-Request-Id`)."""
    query_params(request, ())  # takes none: an unknown one is a 400, never ignored
    row = await rt.audit_store.get_audit(row_id)
    if row is None:
        raise not_found(f"audit row {row_id!r}")
    return KJSON(render_row(row))
