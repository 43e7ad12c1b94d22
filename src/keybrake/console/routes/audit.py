"""Audit search (`/console/audit`) and its export (`/console/audit/export`).

The filters are the admin API's (`GET /v1/audit`), read by the same `query_from`; a page shows
PAGE rows, newest first, with cursors to older and newer rows. Without a key or run filter (the
two with an index of their own) one page's statements walk at most SCAN_WINDOW rows of the id
index, so a filter that rarely matches never reads the whole table: the page then says how far
back it looked and its Next link searches on from there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from keybrake.admin.audit import decode_cursor, encode_cursor, query_from
from keybrake.admin.errors import ApiError
from keybrake.console.audit_view import SEARCH_FIELDS, VERDICTS, export_query, export_response, filters_of, typed
from keybrake.console.web import Operator, operator, page, runtime
from keybrake.store.admin_roles import AuditStore
from keybrake.store.base import AuditQuery

router = APIRouter(include_in_schema=False)
PAGE = 50  # rows per page
SCAN_WINDOW = 20_000  # audit rows (any) one page's statements walk at most without an indexed filter
INDEXED = ("key_id", "agent_run_id")


@dataclass
class Found:
    """One page of the search: rows newest first, cursors for the older and newer pages (None at an
    end), and `reach`, the time (Unix ms) a window-bounded page looked back to (None: not bounded)."""

    rows: list[dict[str, Any]]
    older: str | None
    newer: str | None
    reach: int | None = None


def _bounded(q: AuditQuery) -> bool:
    return all(getattr(q, f) is None for f in INDEXED)


async def search(store: AuditStore, q: AuditQuery, newer_than: tuple[int, str] | None) -> Found:
    """The page of `q` below `q.cursor` (or the newest), or, with `newer_than`, the page just above it."""
    if newer_than is not None:
        return await _newer(store, q, newer_than)
    floor = await store.audit_window_start(q, SCAN_WINDOW) if _bounded(q) else None
    after = floor[2] if floor else None
    rows = await store.query_audit(dataclasses.replace(q, limit=PAGE + 1, after_id=after))
    newer: str | None = None  # the first page has nothing newer (a reload shows what came since)
    if q.cursor is not None:
        newer = encode_cursor(rows[0]["ts"], rows[0]["id"]) if rows else encode_cursor(*q.cursor)
    if len(rows) > PAGE:
        rows = rows[:PAGE]
        return Found(rows, encode_cursor(rows[-1]["ts"], rows[-1]["id"]), newer)
    if floor is not None and floor[2] is not None:  # the window ended before the page filled
        return Found(rows, encode_cursor(floor[1], floor[0]), newer, reach=floor[1])
    return Found(rows, None, newer)


async def _newer(store: AuditStore, q: AuditQuery, newer_than: tuple[int, str]) -> Found:
    base = dataclasses.replace(q, cursor=None, after_id=newer_than[1], ascending=True)
    end = await store.audit_window_end(base, SCAN_WINDOW) if _bounded(q) else None
    rows = await store.query_audit(dataclasses.replace(base, limit=PAGE + 1, through_id=end))
    newer: str | None = None
    if len(rows) > PAGE:
        rows = rows[:PAGE]
        newer = encode_cursor(rows[-1]["ts"], rows[-1]["id"])
    elif end is not None:  # every row up to the window's end was looked at
        newer = encode_cursor(0, end)
    older = encode_cursor(rows[0]["ts"], rows[0]["id"]) if rows else None
    return Found(list(reversed(rows)), older, newer)


def link(path: str, params: dict[str, str], **extra: str) -> str:
    """`path` with the search's filters and `extra` (paging, format) as its query string."""
    qs = urlencode({**filters_of(params), **extra})
    return path + ("?" + qs if qs else "")


@router.get("/console/audit")
async def audit_page(request: Request, op: Annotated[Operator, Depends(operator)]) -> Response:
    """Audit rows matching the form's filters, newest first, PAGE at a time. A bad filter value is
    shown with the API's message (status 400), the form keeping what was typed."""
    form = dict(request.query_params)  # what was typed, as typed: the form is re-filled with it
    ctx: dict[str, Any] = {"found": Found([], None, None), "params": {}}
    status, problem = 200, ""
    try:
        params = typed(request, (*SEARCH_FIELDS, "cursor", "newer"))
        ctx["params"] = params
        newer_than = decode_cursor(params["newer"]) if "newer" in params else None
        q = query_from({k: v for k, v in params.items() if k != "newer"})
        ctx["found"] = await search(runtime(request).audit_store, q, newer_than)
    except ApiError as exc:
        if exc.status >= 500:
            raise
        status, problem = exc.status, exc.message
    p = ctx["params"]
    found: Found = ctx["found"]
    return page(
        request, "audit.html", op, status=status, title="Audit", problem=problem, form=form, verdicts=VERDICTS,
        found=found, filtered=bool(filters_of(p)), scan_window=SCAN_WINDOW,
        older_link=link("/console/audit", p, cursor=found.older) if found.older else "",
        newer_link=link("/console/audit", p, newer=found.newer) if found.newer else "",
        first_link=link("/console/audit", p) if ("cursor" in p or "newer" in p) else "",
        csv_link=link("/console/audit/export", p, format="csv"),
        jsonl_link=link("/console/audit/export", p, format="jsonl"),
    )  # fmt: skip


@router.get("/console/audit/export")
async def audit_export(request: Request, op: Annotated[Operator, Depends(operator)]) -> Response:
    """Every row matching the filters, oldest first, as CSV or JSON Lines (`format`, default csv):
    the API's export (same columns), downloaded as keybrake-audit.<format>."""
    params = typed(request, (*SEARCH_FIELDS, "format"))
    return await export_response(request, op, export_query(params), params.get("format", "csv"), "keybrake-audit")
