"""Audit rows at the API edge: filters from the query string, money and times rendered."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from keybrake.admin.errors import ApiError
from keybrake.core.audit_lines import EXPORT_FIELDS, MONEY_FIELDS, csv_cells, jsonl_line, render_approval
from keybrake.core.money import to_json_number
from keybrake.core.timefmt import parse_rfc3339, rfc3339
from keybrake.logs import event
from keybrake.store.base import AuditQuery, AuditStore

log = logging.getLogger("keybrake.admin")
_MONEY = MONEY_FIELDS
FILTERS = (
    "key_id",
    "label_prefix",
    "agent_run_id",
    "triggering_event_id",
    "vendor",
    "verdict",
    "error_code",
    "customer_scope_id",
    "idempotency_key_prefix",
)


def render_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {"object": "audit_row", **row}
    out["ts"] = rfc3339(row["ts"])
    for f in _MONEY:
        if out[f] is not None:
            out[f] = to_json_number(out[f])
    if out.get("approval") is not None:
        out["approval"] = render_approval(out["approval"])
    return out


_MAX_UNIX_S = 253402300799  # 9999-12-31T23:59:59Z, the last second a timestamp can name


def parse_time(value: str, name: str) -> int:
    """Unix seconds or an RFC 3339 timestamp → Unix ms. Raises ApiError 400 naming `name`."""
    if value.isascii() and value.isdigit():
        ms = int(value) * 1000
    else:
        try:
            ms = parse_rfc3339(value)
        except ValueError as exc:
            raise ApiError(400, "invalid_request", f"{name}: {exc}", name) from None
    if not 0 <= ms <= _MAX_UNIX_S * 1000:
        raise ApiError(400, "invalid_request", f"{name}: must be between 1970 and the end of 9999 (UTC)", name)
    return ms


def encode_cursor(ts: int, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{ts}:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, row_id = raw.split(":", 1)
        if not (ts.isascii() and ts.isdigit()) or int(ts) > _MAX_UNIX_S * 1000:
            raise ValueError(ts)
        return int(ts), row_id
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_request", "cursor is not one this API returned", "cursor") from None


def parse_limit(value: str | None) -> int:
    if value is None:
        return 100
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 1000:
        raise ApiError(400, "invalid_request", "limit must be an integer from 1 to 1000", "limit")
    return int(value)


def query_from(params: dict[str, str]) -> AuditQuery:
    kw: dict[str, Any] = {f: params.get(f) for f in FILTERS}
    if "since" in params:
        kw["since"] = parse_time(params["since"], "since")
    if "until" in params:
        kw["until"] = parse_time(params["until"], "until")
    if "cursor" in params:
        kw["cursor"] = decode_cursor(params["cursor"])
    kw["limit"] = parse_limit(params.get("limit"))
    kw["metadata"] = {k[len("metadata.") :]: v for k, v in params.items() if k.startswith("metadata.")}
    return AuditQuery(**kw)


EXPORT_PAGE = 1000  # rows per page
EXPORT_WINDOW = 10_000  # audit rows (any) one page's statements scan at most
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


async def export(store: AuditStore, q: AuditQuery, fmt: str) -> AsyncIterator[bytes]:
    """Every matching row, oldest first, one page at a time: memory stays bounded at any size.

    Each page scans at most EXPORT_WINDOW rows in id order (`Store.audit_window_end`, then the
    filtered read within that id range), so no statement scans without bound however rarely
    the filters match. The first chunk (CSV: header row and first page) is produced only after
    the first page was read, so a caller that awaits it first can still answer an error (503).
    An error on a later page (a report statement past KEYBRAKE_REPORT_TIMEOUT_MS, a lost
    database) is logged ("audit export cut") and propagates: the server closes the connection
    without HTTP's final chunk, so every client reports the body as incomplete (docs/api.md).
    """
    head = b""
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n").writerow(EXPORT_FIELDS)
        head = buf.getvalue().encode()
    base = dataclasses.replace(q, cursor=None, limit=EXPORT_PAGE, ascending=True, after_id=None, through_id=None)
    after: str | None = None
    sent, yielded, end, new_window = 0, False, None, True
    while True:
        try:
            if new_window:  # each audit row is walked by one window statement, at most
                end = await store.audit_window_end(dataclasses.replace(base, after_id=after), EXPORT_WINDOW)
            rows = await store.query_audit(dataclasses.replace(base, after_id=after, through_id=end))
        except Exception as exc:
            if yielded:
                event(log, "audit export cut", logging.ERROR, rows_sent=sent, after_id=after, error=str(exc))
            raise
        chunk = head
        head = b""
        if fmt == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\r\n")
            for row in rows:
                writer.writerow(csv_cells(row))
            chunk += buf.getvalue().encode()
        else:
            chunk += b"".join(jsonl_line(r) for r in rows)
        sent += len(rows)
        if chunk:
            yielded = True
            yield chunk
        if len(rows) == EXPORT_PAGE:  # the rest of the same window next
            after, new_window = rows[-1]["id"], False
        elif end is None:
            return
        else:
            after, new_window = end, True


async def export_answer(store: AuditStore, q: AuditQuery, fmt: str, filename: str) -> StreamingResponse:
    """`export` as a download named `filename` (CSV or JSON Lines by `fmt`, one of FORMATS).

    The first page is read before the 200 is sent: an error there is an ordinary error answer
    (503 past the report timeout). A later page's error cuts the body (no final chunk), so a
    download that failed midway is never silently short."""
    rows = export(store, q, fmt)
    first = await anext(rows, b"")

    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in rows:
            yield chunk

    return StreamingResponse(
        body(), media_type=FORMATS[fmt], headers={"content-disposition": f'attachment; filename="{filename}"'}
    )
