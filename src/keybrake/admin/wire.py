"""The admin API's wire helpers: exact-money JSON answers, the error shape, strict query strings.

Every admin answer is rendered by `KJSON` (money as exact decimal numbers, docs/api.md); the
routes return it directly, so FastAPI neither re-validates nor re-serialises an answer (the
response models in `keybrake.admin.schemas` describe the wire for OpenAPI only, and
tests/admin/test_openapi.py checks real answers against them).
"""

from __future__ import annotations

import json
from typing import Any

import simplejson
from fastapi import Request
from fastapi.responses import JSONResponse

from keybrake.admin.errors import ApiError


class KJSON(JSONResponse):
    """JSON with money rendered exactly (Decimal → plain decimal number)."""

    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return str(simplejson.dumps(content, use_decimal=True, separators=(",", ":"))).encode()


def page(data: list[Any], next_cursor: str | None = None) -> KJSON:
    """A list answer, the page envelope of docs/api.md: `{"object": "list", "data": […], "next_cursor": …}`."""
    return KJSON({"object": "list", "data": data, "next_cursor": next_cursor})


def error_response(status: int, code: str, message: str, field: str | None = None) -> KJSON:
    """The admin error shape (docs/api.md, errors) with `status`."""
    return KJSON(
        {"error": {"type": "keybrake_error", "code": code, "message": message, "field": field}}, status_code=status
    )


def query_params(request: Request, allowed: tuple[str, ...], *, prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """The query string as a dict; an unknown or repeated parameter is ApiError 400 naming it.

    `prefixes` admits families such as `metadata.<k>`.
    """
    out: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed and not name.startswith(prefixes or ("\0",)):
            hint = " (Keybrake calls it label_prefix)" if name == "label_contains" else ""
            raise ApiError(400, "invalid_request", f"unknown query parameter {name!r}{hint}", name)
        if name in out:
            raise ApiError(400, "invalid_request", f"query parameter {name!r} given twice", name)
        out[name] = value
    return out


async def json_body(request: Request) -> Any:
    """The body parsed as JSON (None when empty); ApiError 400 when it is not JSON."""
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "invalid_request", "the body is not valid JSON") from None
