"""Audit rows as export lines (CSV cells, JSON Lines): the one format the export endpoint and the
retention archive write (docs/api.md, audit rows). Pure."""

from __future__ import annotations

import json
from typing import Any

from keybrake.core.jsonfmt import dumps
from keybrake.core.money import format_usd, to_json_number
from keybrake.core.timefmt import rfc3339

MONEY_FIELDS = ("cost_usd", "reserved_usd", "cap_usage_after_usd")
_MONEY = MONEY_FIELDS


# docs/api.md, audit rows: exactly these fields, in this order.
EXPORT_FIELDS = (
    "id", "ts", "key_id", "label", "agent_run_id", "triggering_event_id", "vendor", "credential", "method",
    "path", "endpoint", "verdict", "error_code", "reason", "status", "upstream_status", "cost_usd",
    "reserved_usd", "cost_source", "cost_kind", "cap_usage_after_usd", "customer_scope_id", "account_context",
    "vendor_request_id", "vendor_object_id", "idempotency_key", "dedup_of", "settled_by", "request_summary",
    "body_hash", "redacted_fields", "preflight_lookup", "latency_ms", "upstream_latency_ms", "overhead_ms",
    "metadata", "approval",
)  # fmt: skip


# A spreadsheet evaluates a cell starting with one of these as a formula (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """A text cell a spreadsheet opens as text: a leading `'` before a formula's first character.

    Text already starting with `'` gets one too, so that a reader recovers every value exactly by
    removing one leading `'` from any text cell that has one.
    """
    return "'" + text if text.startswith((*FORMULA_START, "'")) else text


def _csv_cell(name: str, value: Any) -> str:
    """One CSV cell. Text that came from a request (labels, Idempotency-Keys, customers, reasons…)
    is neutralised; numbers Keybrake writes itself (money such as `-4.5`, statuses, latencies,
    timestamps, JSON objects) are written as they are: they are never formulas."""
    if value is None:
        return ""
    if name in _MONEY:
        return format_usd(value)
    if name == "ts":
        return rfc3339(value)
    if name == "approval" and value is not None:
        value = render_approval(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, bool | int | float):
        return str(value)
    return neutralise(str(value))


def render_approval(stored: dict[str, Any]) -> dict[str, Any]:
    """An audit row's `approval` as stored (µUSD, Unix ms) → as the API and exports show it (USD
    numbers, RFC 3339 times; docs/api.md, audit rows)."""
    out = dict(stored)
    for f in ("expires_at", "decided_at"):
        if out.get(f) is not None:
            out[f] = rfc3339(out[f])
    if out.get("grant_usd") is not None:
        out["grant_usd"] = to_json_number(out["grant_usd"])
    return out


def _jsonl_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {f: row[f] for f in EXPORT_FIELDS}
    out["ts"] = rfc3339(row["ts"])
    for f in _MONEY:
        if out[f] is not None:
            out[f] = to_json_number(out[f])
    if out["approval"] is not None:
        out["approval"] = render_approval(out["approval"])
    return out


def jsonl_line(row: dict[str, Any]) -> bytes:
    return dumps(_jsonl_row(row)) + b"\n"


def csv_cells(row: dict[str, Any]) -> list[str]:
    """One audit row as its CSV cells, in EXPORT_FIELDS order."""
    return [_csv_cell(f, row[f]) for f in EXPORT_FIELDS]
