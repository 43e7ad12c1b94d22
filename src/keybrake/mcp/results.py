"""A pipeline answer as an MCP tool result (docs/mcp.md, results and errors).

A Keybrake refusal and a vendor's error are tool errors (`is_error`), never protocol failures:
the model reads the text, which says what refused the call and whether calling again can help.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types

from keybrake.core.errors import ASK_AGAIN, OUTCOME_UNKNOWN, Denial
from keybrake.core.timefmt import rfc3339
from keybrake.proxy.render import ProxyResponse

_FACT_HEADERS = {
    "x-keybrake-request-id": "request_id",
    "x-keybrake-spend-remaining-usd": "spend_remaining_usd",
}


# Refusals of the key itself (docs/errors.md): no change to the call can help.
KEY_UNUSABLE = frozenset({"key_missing", "key_invalid", "key_revoked", "key_expired"})


def retry_advice(denial: Denial) -> str:
    """One sentence: whether sending the same tool call again can help, and when."""
    if denial.code in ASK_AGAIN:
        return "Calling the tool again asks a person again."
    if denial.retryable:
        return "Retrying the same call in a moment can succeed; it is not new spend."
    if denial.code in OUTCOME_UNKNOWN:
        return "The vendor may have acted: do not call again before checking what happened."
    if denial.code in KEY_UNUSABLE:
        return "Retrying will not help, whatever the call: this key cannot be used; ask the operator for a new key."
    if denial.cap is not None and denial.cap.resets_at_ms is not None:
        when = rfc3339(denial.cap.resets_at_ms)
        if when in denial.message:  # the refusal already says when (proxy/decisions.py): said once
            return "Retrying will not help before the cap resets."
        return f"Retrying will not help before the cap resets at {when}."
    return "Retrying the same call will not help: change the call or ask the operator."


def denial_result(d: Denial, meta: dict[str, Any] | None = None) -> types.CallToolResult:
    """A Keybrake refusal as a tool error: its code and message (which names the cap, what is used
    and what this call needs: proxy/decisions.py) and whether calling again can help; `meta`:
    `_meta` to carry (the code is added under `keybrake.code`)."""
    meta = meta or {"keybrake": {}}
    meta["keybrake"]["code"] = d.code
    return _result(f"Keybrake refused this call ({d.code}): {d.message}\n{retry_advice(d)}", True, meta)


def tool_result(vendor: str, resp: ProxyResponse) -> types.CallToolResult:
    """The tool result for one pipeline answer: a Keybrake refusal, the vendor's error, or the
    vendor's answer (its JSON as text and, for an object, as structured content) with Keybrake's
    facts about the call (request id, spend left) under `_meta.keybrake`."""
    facts = {name: v for k, v in resp.headers if (name := _FACT_HEADERS.get(k)) is not None}
    meta = {"keybrake": {**facts, "status": resp.status}}
    if resp.denial is not None:
        return denial_result(resp.denial, meta)
    text = resp.body.decode("utf-8", "replace")
    doc: Any = None
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        doc = None
    if resp.status >= 400:
        lines = [f"{vendor} answered HTTP {resp.status}; nothing more was done. Its answer:", text[:4000]]
        return _result("\n".join(lines), True, meta)
    return _result(
        text or f"{vendor} answered HTTP {resp.status}.", False, meta, doc if isinstance(doc, dict) else None
    )


def _result(
    text: str, is_error: bool, meta: dict[str, Any], structured: dict[str, Any] | None = None
) -> types.CallToolResult:
    result = types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=structured, is_error=is_error
    )
    result.meta = meta  # `_meta` on the wire
    return result
