"""Turning a denial into the calling vendor's error shape plus Keybrake's headers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import simplejson

from keybrake.errors import Denial
from keybrake.timefmt import rfc3339
from keybrake.vendors.base import Vendor, generic_denial

JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class ProxyResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def dumps(obj: Any) -> bytes:
    return str(simplejson.dumps(obj, use_decimal=True, separators=(",", ":"))).encode()


def denial_response(
    denial: Denial, vendor: Vendor | None, *, request_id: str | None, key_id: str | None, now_ms: int
) -> ProxyResponse:
    keybrake = {
        "code": denial.code,
        "request_id": request_id,
        "key_id": key_id,
        "retryable": denial.retryable,
        "cap": denial.cap.as_json() if denial.cap else None,
    }
    rendered = vendor.render_denial(denial, keybrake) if vendor else generic_denial(denial, keybrake)
    headers = [("content-type", JSON_TYPE)]
    headers += [(k.lower(), v) for k, v in rendered.headers.items()]
    if denial.cap is not None:
        cap = denial.cap
        headers.append(("x-keybrake-cap-hit", "true"))
        headers.append(
            ("x-keybrake-cap", f"{cap.scope}:{cap.name}" if cap.scope == "key" else f"{cap.scope}:{cap.id}:{cap.name}")
        )
        if cap.resets_at_ms is not None:
            headers.append(("x-keybrake-cap-resets-at", rfc3339(cap.resets_at_ms)))
            seconds = max(1, math.ceil((cap.resets_at_ms - now_ms) / 1000))
            headers = [(k, v) for k, v in headers if k != "retry-after"]
            headers.append(("retry-after", str(seconds)))
    headers += [(k.lower(), v) for k, v in denial.extra_headers.items()]
    return ProxyResponse(denial.status, headers, dumps(rendered.body))
