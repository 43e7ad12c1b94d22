"""Turning a denial into the calling vendor's error shape plus Keybrake's headers."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass

from keybrake.core.errors import APPROVAL_CODES, ASK_AGAIN, Denial
from keybrake.core.jsonfmt import dumps
from keybrake.core.timefmt import rfc3339
from keybrake.crypto import Sealer
from keybrake.vendors.base import Vendor, generic_denial

JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class ProxyResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    denial: Denial | None = None  # Keybrake's refusal this answer renders (None: the vendor's answer)


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
    if denial.code in APPROVAL_CODES:  # a held call: whether asking again can help (docs/approvals.md)
        keybrake["ask_again"] = denial.code in ASK_AGAIN
    rendered = vendor.render_denial(denial, keybrake) if vendor else generic_denial(denial, keybrake)
    own = [(k.lower(), v) for k, v in rendered.headers.items()]
    # JSON, as the vendor labels its errors (a vendor defined by a file may say application/problem+json).
    headers = [("content-type", JSON_TYPE)] if all(k != "content-type" for k, _ in own) else []
    headers += own
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
    return ProxyResponse(denial.status, headers, dumps(rendered.body), denial)


def _replay_aad(key_id: str, fingerprint: str) -> str:
    return f"dedup:{key_id}:{fingerprint}"


def seal_replay(
    sealer: Sealer, key_id: str, fingerprint: str, status: int, headers: list[tuple[str, str]], body: bytes
) -> bytes:
    """The answer a duplicate inside the dedup window gets, sealed with the master key (docs/sdk-stripe.md, retries)."""
    blob = _pack(status, headers, body)
    return sealer.seal(blob, _replay_aad(key_id, fingerprint))


def open_replay(
    sealer: Sealer, key_id: str, fingerprint: str, sealed: bytes
) -> tuple[int, list[tuple[str, str]], bytes]:
    doc = json.loads(sealer.open(sealed, _replay_aad(key_id, fingerprint)))
    return int(doc["s"]), [(str(k), str(v)) for k, v in doc["h"]], base64.b64decode(doc["b"])


def _pack(status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
    return json.dumps({"s": status, "h": headers, "b": base64.b64encode(body).decode()}).encode()
