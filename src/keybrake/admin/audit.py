"""Audit rows at the API edge: filters from the query string, money and times rendered."""

from __future__ import annotations

import base64
from typing import Any

from keybrake.admin.errors import ApiError
from keybrake.money import to_json_number
from keybrake.store.base import AuditQuery
from keybrake.timefmt import parse_rfc3339, rfc3339

_MONEY = ("cost_usd", "reserved_usd", "cap_usage_after_usd")
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
    return out


def parse_time(value: str, name: str) -> int:
    if value.isdigit():
        return int(value) * 1000
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise ApiError(400, "invalid_request", f"{name}: {exc}", name) from None


def encode_cursor(ts: int, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{ts}:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, row_id = raw.split(":", 1)
        return int(ts), row_id
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_request", "cursor is not one this API returned", "cursor") from None


def parse_limit(value: str | None) -> int:
    if value is None:
        return 100
    if not value.isdigit() or not 1 <= int(value) <= 1000:
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
