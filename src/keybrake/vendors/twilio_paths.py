"""Twilio 2010-04-01 resource spellings: every representation Twilio serves is one operation.

Twilio's 2010 API serves each resource in several representations chosen by the path's
extension (Twilio docs, "Twilio API responses" and "Alternative representations"): XML with no
extension or `.xml` (the default), JSON with `.json`, and for reads CSV (`.csv`) and HTML
(`.html`); a recording's media is `.mp3` or `.wav`. `POST …/Messages.xml` sends the same SMS as
`POST …/Messages.json`. Keybrake's patterns (guarded list, prices, scope, `allowed_endpoints`)
are written with `.json`, so every accepted spelling is mapped to its `.json` form before any
check, and a spelling whose meaning is not documented is refused (400 `path_invalid`):

- `.json`, `.xml` or no extension, any method;
- `.csv` and `.html` on `GET` only; `.mp3` / `.wav` only for `GET …/Recordings/{Sid}`;
- anything else (`.JSON`, `.txt`, two extensions, a `.` in an earlier segment) is refused.

The request is still forwarded with the agent's own spelling; Twilio then answers in that
representation (an XML answer carries no JSON price, so the call costs its estimate).
Pure functions, no I/O.
"""

from __future__ import annotations

from urllib.parse import unquote

from keybrake.core.errors import Denial
from keybrake.core.patterns import EndpointPattern, parse_pattern
from keybrake.vendors.twilio_operations import documented

API = "2010-04-01"
WRITE_FORMATS = frozenset({"json", "xml", ""})
READ_FORMATS = WRITE_FORMATS | {"csv", "html"}
MEDIA_FORMATS = frozenset({"mp3", "wav"})

# Answers that carry secrets (`auth_token`, an API key's `secret`). Keybrake removes those from
# JSON answers only, so these endpoints may be called in their `.json` spelling only.
SECRET_ANSWERS = tuple(
    parse_pattern(t, casefold=True)
    for t in (
        f"* /{API}/Accounts.json",
        f"* /{API}/Accounts/*.json",
        f"* /{API}/Accounts/*/Keys.json",
        f"* /{API}/Accounts/*/Keys/*.json",
        f"* /{API}/Accounts/*/SigningKeys.json",
        f"* /{API}/Accounts/*/SigningKeys/*.json",
    )
)


def _invalid(why: str) -> Denial:
    return Denial(
        "path_invalid",
        f"Request path refused: {why}. Twilio resources are spelled …/Name.json (or .xml, or no extension). "
        "Nothing was sent. Do not retry unchanged.",
    )


def split_format(segment: str) -> tuple[str, str]:
    """(`Messages`, `xml`) for `Messages.xml`; (`Messages`, ``) without an extension.

    Raises path_invalid for a segment with more than one `.` or nothing before it.
    """
    stem, dot, fmt = segment.rpartition(".")
    if not dot:
        return segment, ""
    if not stem or "." in stem:
        raise _invalid(f"{segment[:80]!r} is not a resource name with one extension")
    return stem, fmt


def canonical(method: str, path: tuple[str, ...]) -> tuple[str, ...]:
    """The `.json` spelling of a documented 2010 API operation; raises path_invalid for anything else.

    Another API version (Twilio still serves 2008-08-01 on the same host), a deprecated resource
    (`SMS/Messages`) or a method the spec does not list (PUT) cannot be classified, so it is
    refused rather than passed on unpriced and unscoped.
    """
    if len(path) < 2 or path[0] != API:
        raise _invalid(f"Keybrake proxies Twilio's REST API {API} only (this path starts {'/'.join(path[:1])[:40]!r})")
    for seg in path[1:-1]:
        if "." in seg:
            raise _invalid(f"only the last segment may carry an extension (got {seg[:80]!r})")
    stem, fmt = split_format(path[-1])
    if method == "GET" and fmt in MEDIA_FORMATS and path[-2] == "Recordings":
        return path
    allowed = READ_FORMATS if method == "GET" else WRITE_FORMATS
    if fmt not in allowed:
        shown = ", ".join(f".{f}" for f in sorted(allowed - {""}))
        raise _invalid(f"{method} with the extension {'.' + fmt[:20]!r} is not one Twilio documents ({shown} or none)")
    return (*path[:-1], stem + ".json")


def check_documented(method: str, path: tuple[str, ...]) -> None:
    """Refuse (path_invalid) a canonical path that is no operation of the 2010 API's spec."""
    if method == "GET" and path[-1].rpartition(".")[2] in MEDIA_FORMATS:
        return  # a recording's audio (`…/Recordings/RE….mp3`)
    if not documented(method, path):
        raise _invalid(
            f"{method} /{'/'.join(path)[:120]} is not an operation of Twilio's REST API {API} "
            "(its OpenAPI spec lists none such; deprecated resources and other methods are not proxied)"
        )


def request_format(raw_path: bytes) -> str:
    """The representation the agent asked for: `json`, `xml` (also for no extension), `csv`, …"""
    last = unquote(raw_path.rsplit(b"/", 1)[-1].decode("latin-1"))
    fmt = last.rpartition(".")[2] if "." in last else ""
    return fmt or "xml"


def account_segment(raw_segment: bytes) -> tuple[str, str]:
    """(account id, extension) of a raw `/Accounts/{sid}[.ext]` segment, percent-decoded."""
    stem, _, fmt = unquote(raw_segment.decode("latin-1")).partition(".")
    return stem, fmt


def pattern_problem(pattern: EndpointPattern) -> str | None:
    """Why an `allowed_endpoints` pattern could never match a canonical 2010 API path (None: it can).

    Canonical paths end in `.json` (or a recording's `.mp3` / `.wav`), so a last segment written
    with `.xml`, `.csv`, another extension or none (`…/Messages`) would silently match nothing.
    """
    if len(pattern.segments) < 2 or pattern.segments[0] != API:
        return None
    last = pattern.segments[-1]
    stem, _, fmt = last.rpartition(".")
    if "*" in last or fmt == "json" or (fmt in MEDIA_FORMATS and "Recordings" in pattern.segments):
        return None
    return (
        "Keybrake matches every Twilio spelling (.xml, no extension, …) as its .json form, so this pattern "
        f"could never match: write {(stem or last) + '.json'!r} instead of {last!r}"
    )
