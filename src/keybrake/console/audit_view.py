"""What the audit search and the run timeline share: the filters read from a page's query string
exactly as the admin API reads them (`keybrake.admin.audit.query_from`), and the streamed export
(`keybrake.admin.audit.export`: the API's columns, oldest first, page by page).
"""

from __future__ import annotations

import logging
import re

from fastapi import Request
from fastapi.responses import StreamingResponse

from keybrake.admin.audit import FILTERS, FORMATS, export_answer, query_from
from keybrake.admin.errors import ApiError
from keybrake.console.web import Operator, env, runtime
from keybrake.core.timefmt import rfc3339
from keybrake.logs import event
from keybrake.store.base import AuditQuery

log = logging.getLogger("keybrake.console")
TIME_FIELDS = ("since", "until")
SEARCH_FIELDS = (*FILTERS, *TIME_FIELDS)
# The verdicts an operator picks from (docs/api.md, audit rows); `denied` means every denied_*.
VERDICTS = (
    "allowed", "denied", "cap_exceeded", "awaiting_approval", "outcome_unknown", "upstream_error",
    "deduplicated", "in_flight",
)  # fmt: skip


def verdict_class(verdict: str) -> str:
    """The CSS class of a verdict (its text is always shown too): allowed, denied (`denied_*`,
    `cap_exceeded`), or none."""
    if verdict == "allowed":
        return "verdict-allow"
    if verdict.startswith("denied_") or verdict == "cap_exceeded":
        return "verdict-deny"
    return "verdict-other"


def when_ms(ms: int) -> str:
    """Unix ms as `2026-11-30 02:14:07.123 UTC`: the calls of one run are often within a second."""
    return rfc3339(ms)[:23].replace("T", " ") + " UTC"


env.filters.update(verdict_class=verdict_class, when_ms=when_ms)


def typed(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query string's non-empty values (a GET form sends its empty fields too), stripped, of the
    `allowed` names and `metadata.<k>` filters. Raises ApiError 400 naming an unknown or repeated
    parameter (as the API does: a filter is never silently ignored)."""
    out: dict[str, str] = {}
    for name, raw in request.query_params.multi_items():
        value = raw.strip()
        if name not in allowed and not name.startswith("metadata."):
            raise ApiError(400, "invalid_request", f"unknown query parameter {name!r}", name)
        if name in out:
            raise ApiError(400, "invalid_request", f"query parameter {name!r} given twice", name)
        if value:
            out[name] = value
    return out


def filters_of(params: dict[str, str]) -> dict[str, str]:
    """The search filters of `params` (paging and format left out): what links carry along."""
    return {k: v for k, v in params.items() if k in SEARCH_FIELDS or k.startswith("metadata.")}


def attachment_name(stem: str, fmt: str) -> str:
    """A download's file name: `stem` with anything but letters, digits, `.`, `_` and `-` as `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem)[:100] + "." + fmt


async def export_response(request: Request, op: Operator, q: AuditQuery, fmt: str, stem: str) -> StreamingResponse:
    """Every row matching `q` as CSV or JSON Lines (`fmt`), streamed like `GET /v1/audit/export`,
    as an attachment named `<stem>.<fmt>`. The first page is read before the 200 is sent, so an
    error there is an error page; a later page's error cuts the body (no final chunk). Raises
    ApiError 400 for a format other than csv or jsonl."""
    if fmt not in FORMATS:
        raise ApiError(400, "invalid_request", "format must be csv or jsonl", "format")
    rt = runtime(request)
    event(log, "audit export", format=fmt, by=op.principal.id, via="console")
    return await export_answer(rt.store, q, fmt, attachment_name(stem, fmt))


def export_query(params: dict[str, str]) -> AuditQuery:
    """The export's query: the page's filters (no cursor, no limit), read by the API's `query_from`."""
    return query_from(filters_of(params))
