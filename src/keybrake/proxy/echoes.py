"""Secrets that must not cross Keybrake in the wrong direction (docs/vendors.md, secrets).

`credential_echoes`: the operator's credential values as the vendor received them (from the
vendor's own `upstream_headers` and `upstream_query`), so an answer that repeats them — a body
field, an error message, a `Link` header echoing the request URL — reaches the agent with every
occurrence replaced by `[redacted by keybrake]` (`scrub_answer`), in any spelling: raw, `%XX` in
either case, `+` for a space, JSON `\\/`, `\\"` and `\\uXXXX` escapes (mixed freely), and base64.
`check_vault_key_placement`: the agent's vault key anywhere that is forwarded — path, query
string, forwarded body, a forwarded header's value — is refused (400 key_ambiguous) before
anything is sent. All pure.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from urllib.parse import unquote_to_bytes

from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.core.upstream import UpstreamResponse
from keybrake.tokens import VAULT_PREFIX
from keybrake.vendors.base import COMMON_FORWARDED_HEADERS, REDACTED, Vendor

MIN_ECHO_CHARS = 6  # shorter credential values are not scrubbed (they would match ordinary text)
_JSON_SHORT = {"/": b"\\/", '"': b'\\"', "\\": b"\\\\"}  # JSON short escapes (control characters: \\uXXXX)
_JSON_SHORT |= {"\b": b"\\b", "\f": b"\\f", "\n": b"\\n", "\r": b"\\r", "\t": b"\\t"}


def credential_echoes(vendor: Vendor, secret: bytes) -> tuple[str, ...]:
    """The credential values `vendor` injects for `secret` (query values; header values, the
    bearer token, for Basic auth the base64 pair, the pair and its password — the user when the
    password is empty: Segment's write key), each also as base64 (standard and URL-safe, with and
    without `=` padding). Values shorter than MIN_ECHO_CHARS are left out. Longest first, so a
    longer value is replaced before a part of it. `scrub_answer` matches every spelling of each."""
    values: list[str] = [v for _, v in vendor.upstream_query(secret)]
    for _, value in vendor.upstream_headers(secret):
        scheme, _, rest = value.partition(" ")
        if scheme.lower() in ("bearer", "basic") and rest:
            values.append(rest)
            if scheme.lower() == "basic":
                values += _basic_parts(rest)
        else:
            values.append(value)
    out: set[str] = set()
    for v in values:
        if len(v) >= MIN_ECHO_CHARS:
            raw = v.encode()
            b64 = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
            out |= {v} | b64 | {b.rstrip("=") for b in b64}
    return tuple(sorted(out, key=len, reverse=True))


def _basic_parts(token: str) -> list[str]:
    try:
        pair = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return []
    user, _, password = pair.partition(":")
    return [pair, password or user]


def _char_pattern(c: str) -> bytes:
    """Every spelling of one character in a URL or JSON text: ASCII letters and digits as
    themselves; anything else also `%XX` (its UTF-8 bytes, hex in either case), `+` for a space,
    a JSON `\\uXXXX` escape (a surrogate pair beyond U+FFFF) and a JSON short escape (`\\/`)."""
    if c.isascii() and c.isalnum():
        return re.escape(c.encode())
    raw = c.encode("utf-8")
    pct = b"".join(b"%%%02X" % b for b in raw)
    units = "".join(f"\\u{u:04x}" for u in _utf16(c))
    forms = [re.escape(raw), b"(?i:" + re.escape(pct) + b")", b"(?i:" + re.escape(units.encode()) + b")"]
    if c == " ":
        forms.append(rb"\+")
    if c in _JSON_SHORT:
        forms.append(re.escape(_JSON_SHORT[c]))
    return b"(?:" + b"|".join(forms) + b")"


def _utf16(c: str) -> list[int]:
    data = c.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


@functools.lru_cache(maxsize=256)
def _echo_pattern(echoes: tuple[str, ...]) -> re.Pattern[bytes]:
    return re.compile(b"|".join(b"".join(_char_pattern(c) for c in e) for e in echoes))


def scrub_answer(resp: UpstreamResponse, echoes: tuple[str, ...]) -> UpstreamResponse:
    """`resp` with every spelling of every echo (see `_char_pattern`) replaced by REDACTED in its
    body and in every header value (matched as UTF-8 and as Latin-1 text)."""
    if not echoes:
        return resp
    pattern, mark = _echo_pattern(echoes), REDACTED.encode()
    headers = []
    for name, value in resp.headers:
        value = pattern.sub(mark, value.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
        try:
            value = pattern.sub(mark, value.encode("latin-1")).decode("latin-1")
        except UnicodeEncodeError:
            pass  # not Latin-1 text: the UTF-8 pass covered it
        headers.append((name, value))
    return UpstreamResponse(resp.status, headers, pattern.sub(mark, resp.body), resp.elapsed_ms)


def check_vault_key_placement(token: str, req: ProxyRequest, vendor: Vendor, forwarded_body: bytes) -> None:
    """Refuse (400 key_ambiguous, naming where) a request that carries the vault key `token` in
    anything forwarded to `vendor`: the path, the query string, `forwarded_body` (the body as the
    vendor would get it, after a definition's `vault_key.body_field` removed the key it takes
    there) or the value of any header forwarded (COMMON_FORWARDED_HEADERS and the vendor's
    `forwarded_headers`) — raw, percent- or `+`-encoded, or JSON `\\u`-escaped."""
    needle = token.encode()
    forwarded = COMMON_FORWARDED_HEADERS | vendor.forwarded_headers
    places = [("path", req.raw_path), ("query string", req.query), ("body", forwarded_body)]
    places += [(f"{name} header", v.encode("latin-1", "replace")) for name, v in req.headers if name in forwarded]
    for where, data in places:
        if needle in data or needle in _decoded(data):
            raise _ambiguous(where, "never forwards it to the vendor")


# Headers Keybrake records on the audit row (proxy/auth.py agent_headers), besides X-Keybrake-*.
RECORDED_HEADERS = frozenset({"x-agent-run-id", "x-triggering-event-id"})
# The shortest piece of a vault key's random part a recorded header may not hold: 12 of its 49
# characters are ~71 bits, never there by chance, and a key split finer needs 5 headers or more.
PIECE_CHARS = 12


def check_recorded_headers(token: str, req: ProxyRequest) -> None:
    """Refuse (400 key_ambiguous, naming the header) a request whose header Keybrake records on its
    audit row — X-Agent-Run-Id, X-Triggering-Event-Id, any X-Keybrake-* but the key's own — holds
    the vault key `token` or a piece of it: any PIECE_CHARS characters of its random part (so the
    key without its fixed `vault_key_` prefix, or split across headers), as written, percent-encoded
    (once or twice) or JSON `\\u`-escaped. Checked before those headers are recorded. An agent can
    still spell what it knows in a way no check reads (pieces shorter than that, base64, its own
    cipher): docs/security.md says so."""
    secret = token.removeprefix(VAULT_PREFIX).encode()
    for name, value in req.headers:
        if name not in RECORDED_HEADERS and (not name.startswith("x-keybrake-") or name == "x-keybrake-key"):
            continue
        data = value.encode("latin-1", "replace")
        once = _decoded(data)
        for form in (data, once, _decoded(once)) if once else (data,):
            if any(form[i : i + PIECE_CHARS] in secret for i in range(len(form) - PIECE_CHARS + 1)):
                raise _ambiguous(f"{name} header", "never records it")


def _ambiguous(where: str, never: str) -> Denial:
    return Denial(
        "key_ambiguous",
        f"The vault key is also in the request's {where}: Keybrake takes it only in its own header and "
        f"{never}. Remove it there. Nothing was sent.",
    )


def _decoded(data: bytes) -> bytes:
    """`data` percent-decoded (with and without `+` as a space) and JSON-unescaped, joined; empty
    when it has nothing to decode (the common case: cheap)."""
    out = b""
    if b"%" in data or b"+" in data:
        out += unquote_to_bytes(data) + b"\n" + unquote_to_bytes(data.replace(b"+", b" "))
    if b"\\u" in data:
        out += b"\n" + data.decode("unicode_escape", "replace").encode("utf-8", "replace")
    return out
