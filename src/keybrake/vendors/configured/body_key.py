"""`[vault_key] body_field`: a JSON body member that may carry the agent's vault key too
(docs/vendors.md, vendors defined by a file; docs/sdk-segment.md).

segment-analytics-python sends its write key — through Keybrake, the vault key — both as the
HTTP Basic user and as the body's `writeKey`. The member is checked against the vault key the
request's headers carry (the pipeline has already authenticated that one) and removed from the
forwarded body: the vendor never receives the vault key, and a different value (another key, the
real vendor secret) is refused before anything is sent. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.vendors.configured.paths import KeyMatch


def header_tokens(req: ProxyRequest, vault_key_header: str | None) -> list[str]:
    """Every vault key candidate in the request's headers, as `proxy/auth.extract_token` reads
    them: a Bearer value, the Basic password (or user when the password is empty),
    `X-Keybrake-Key` and the definition's own vault key header."""
    found: list[str] = []
    for value in req.header_all("authorization"):
        scheme, _, rest = value.strip().partition(" ")
        rest = rest.strip()
        if scheme.lower() == "bearer":
            found.append(rest)
        elif scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(rest, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, ValueError):
                continue
            found.append(password or user)
    for name in ("x-keybrake-key", *((vault_key_header,) if vault_key_header else ())):
        found += [v.strip() for v in req.header_all(name)]
    return [t for t in found if t]


def member_to_drop(
    doc: Any, field: str, match: KeyMatch, req: ProxyRequest, vault_key_header: str | None
) -> str | None:
    """The name (as sent) of the body member `field` when it carries the request's vault key, to
    be removed before forwarding; None when the body has no such member. Raises 400
    key_ambiguous when it holds anything else (a non-string, another key, a real secret)."""
    if not isinstance(doc, dict):
        return None
    names = match(doc, field)  # case variants per json_keys; near-miss spellings are refused
    if not names:
        return None
    value = doc[names[0]]
    tokens = header_tokens(req, vault_key_header)
    if isinstance(value, str) and tokens and all(_same(value, t) for t in tokens):
        return names[0]
    raise Denial(
        "key_ambiguous",
        f"The body's {field!r} must be the vault key the request authenticates with (or be left out): "
        "Keybrake removes it and sends the real credential in its place. Nothing was sent.",
    )


def without(doc: dict[str, Any], name: str) -> bytes:
    """The parsed JSON body `doc` without member `name`, as compact JSON with sorted keys (UTF-8):
    computed once, by the parse, for every use of the forwarded body."""
    rest = {k: v for k, v in doc.items() if k != name}
    return json.dumps(rest, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())
