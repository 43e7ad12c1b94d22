"""Secrets that must not cross Keybrake in the wrong direction (docs/vendors.md, secrets).

`credential_echoes`: the operator's credential values as the vendor received them (from the
vendor's own `upstream_headers` and `upstream_query`), so an answer that repeats them — a body
field, an error message, a `Link` header echoing the request URL — reaches the agent with every
occurrence replaced by `[redacted by keybrake]` (`scrub_answer`). `check_vault_key_placement`:
the agent's vault key in the query string or in the body about to be forwarded is refused (400
key_ambiguous) before anything is sent. All pure.
"""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import quote, quote_plus, unquote_to_bytes

from keybrake.core.errors import Denial
from keybrake.core.upstream import UpstreamResponse
from keybrake.vendors.base import REDACTED, Vendor

MIN_ECHO_CHARS = 6  # shorter credential values are not scrubbed (they would match ordinary text)


def credential_echoes(vendor: Vendor, secret: bytes) -> tuple[str, ...]:
    """Every spelling of the credential values `vendor` injects for `secret` that an answer could
    repeat: raw, URL-encoded (`%XX` and `+` forms), JSON-escaped, and for Basic auth the base64
    pair and its password (the user when the password is empty: Segment's write key). Longest
    first, so a longer spelling is replaced before a part of it."""
    values: list[str] = [v for _, v in vendor.upstream_query(secret)]
    for _, value in vendor.upstream_headers(secret):
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer" and rest:
            values.append(rest)
        elif scheme.lower() == "basic" and rest:
            values.append(rest)
            values += _basic_parts(rest)
        else:
            values.append(value)
    out: set[str] = set()
    for v in values:
        if len(v) >= MIN_ECHO_CHARS:
            out |= {v, quote(v, safe=""), quote_plus(v), json.dumps(v)[1:-1]}
    return tuple(sorted(out, key=len, reverse=True))


def _basic_parts(token: str) -> list[str]:
    try:
        pair = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return []
    user, _, password = pair.partition(":")
    return [pair, password or user]


def scrub_answer(resp: UpstreamResponse, echoes: tuple[str, ...]) -> UpstreamResponse:
    """`resp` with every echo replaced by REDACTED in its body and in every header value."""
    if not echoes:
        return resp
    body, headers = resp.body, []
    for e in echoes:
        body = body.replace(e.encode(), REDACTED.encode())
    for name, value in resp.headers:
        for e in echoes:
            value = value.replace(e, REDACTED)
        headers.append((name, value))
    return UpstreamResponse(resp.status, headers, body, resp.elapsed_ms)


def check_vault_key_placement(token: str, query: bytes, forwarded_body: bytes) -> None:
    """Refuse (400 key_ambiguous) a request whose query string or forwarded body carries the vault
    key `token` (raw, percent- or `+`-encoded, or JSON `\\u`-escaped): it would leave Keybrake
    for the vendor. `forwarded_body` is the body as the vendor would get it (after a definition's
    `vault_key.body_field` removed the key it takes there)."""
    needle = token.encode()
    for where, data in (("query string", query), ("body", forwarded_body)):
        if needle in data or needle in unquote_to_bytes(data.replace(b"+", b" ")) or needle in _unescaped(data):
            raise Denial(
                "key_ambiguous",
                f"The vault key is also in the request's {where}: Keybrake takes it only in the headers and never "
                "forwards it to the vendor. Remove it there. Nothing was sent.",
            )


def _unescaped(data: bytes) -> bytes:
    if b"\\u" not in data:
        return b""
    return data.decode("unicode_escape", "replace").encode("utf-8", "replace")
