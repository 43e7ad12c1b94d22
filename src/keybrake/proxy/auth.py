"""Reading the vault key and the agent's own headers from a request (docs/api.md; docs/api.md, audit rows)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.proxy.echoes import check_recorded_headers
from keybrake.store.base import AuditRow, KeyRecord
from keybrake.tokens import VAULT_PREFIX, is_well_formed

# Values that look like a real vendor secret: refused, never forwarded.
_VENDOR_SECRET = re.compile(r"^(sk_|rk_|re_)|^[0-9a-f]{32}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]{0,256}$")
MAX_KEYBRAKE_HEADERS = 20


def extract_token(req: ProxyRequest, vendor_header: str | None = None) -> str:
    """The one vault key a request carries; raises key_missing / key_ambiguous / key_invalid.

    `vendor_header`: a lower-case header the request's vendor takes the key in besides
    Authorization and X-Keybrake-Key (a configured vendor's `vault_key.header`, e.g.
    `x-postmark-server-token`)."""
    found: list[str] = []
    auths = req.header_all("authorization")
    if len(auths) > 1:
        raise Denial("key_ambiguous", "Send one Authorization header.")
    if auths:
        scheme, _, value = auths[0].strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            found.append(value)
        elif scheme.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise Denial(
                    "key_invalid",
                    "The Basic Authorization header is not valid base64 of "
                    "'user:password'. Put the vault key in the password.",
                ) from None
            user, sep, password = decoded.partition(":")
            if not sep:
                raise Denial(
                    "key_invalid",
                    "The Basic Authorization header must be 'user:password' with the vault key as the password.",
                )
            found.append(password or user)
        else:
            raise Denial(
                "key_invalid",
                "The Authorization header must be 'Bearer <vault key>' or Basic with the vault key as the password.",
            )
    found += [v.strip() for v in req.header_all("x-keybrake-key")]
    if vendor_header is not None:
        found += [v.strip() for v in req.header_all(vendor_header)]
    distinct = {t for t in found if t}
    if not distinct:
        raise Denial(
            "key_missing",
            "No vault key: send 'Authorization: Bearer vault_key_…' (or Basic with "
            "the key as password, or X-Keybrake-Key).",
        )
    if len(distinct) > 1:
        raise Denial("key_ambiguous", "The request carries two different tokens; send exactly one vault key.")
    token = distinct.pop()
    if _VENDOR_SECRET.search(token):
        raise Denial(
            "key_invalid",
            "This looks like a real vendor secret, not a vault key. It was not "
            "forwarded. Use the vault_key_… issued for this agent run, and rotate that secret "
            "if an agent had it.",
            exposed_prefix=secret_prefix(token),
        )
    if not is_well_formed(token, VAULT_PREFIX):
        raise Denial("key_invalid", "This is not a valid vault key (wrong format or checksum). Do not retry.")
    return token


SECRET_KINDS = ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "re_", "32-hex token", "other")


def secret_prefix(token: str) -> str:
    """What may be said of an exposed secret: its kind, one of SECRET_KINDS, never its value.

    A fixed set, whatever the sender puts after `sk_`: the kind keys the once-per-5-minutes rule
    of `secret.exposed`, so a client must not be able to mint new kinds (`sk_00001`, `sk_00002`…).
    """
    for kind in SECRET_KINDS[:5]:
        if token.startswith(kind):
            return kind
    if re.fullmatch(r"[0-9a-f]{32}", token):
        return "32-hex token"
    return "other"


def agent_headers(req: ProxyRequest, token: str) -> tuple[str | None, str | None, dict[str, str]]:
    """(X-Agent-Run-Id, X-Triggering-Event-Id, other X-Keybrake-* headers), validated: Denial
    header_invalid for a malformed one, key_ambiguous for one carrying the vault key `token`."""
    check_recorded_headers(token, req)
    run_id = _one_id(req, "x-agent-run-id")
    event_id = _one_id(req, "x-triggering-event-id")
    extra: dict[str, str] = {}
    for name, value in req.headers:
        if name.startswith("x-keybrake-") and name != "x-keybrake-key":
            if name in extra or len(extra) >= MAX_KEYBRAKE_HEADERS:
                raise Denial(
                    "header_invalid", f"At most {MAX_KEYBRAKE_HEADERS} distinct X-Keybrake-* headers, each once."
                )
            if not _PRINTABLE.match(value):
                raise Denial("header_invalid", f"Header {name} must be at most 256 printable ASCII characters.")
            extra[name] = value
    return run_id, event_id, extra


def _one_id(req: ProxyRequest, name: str) -> str | None:
    values = req.header_all(name)
    if not values:
        return None
    if len(values) > 1 or not _RUN_ID.match(values[0]):
        raise Denial(
            "header_invalid", f"Header {name} must appear once, with at most 128 characters of [A-Za-z0-9._:-]."
        )
    return values[0]


def attach_agent_headers(
    row: AuditRow, key: KeyRecord, run_id: str | None, event_id: str | None, extra: dict[str, str]
) -> None:
    """Record the agent headers (`agent_headers`) on the audit row. A run id bound in the key's
    metadata wins; a different one the agent claimed is kept as `claimed_agent_run_id`."""
    meta: dict[str, Any] = {**key.metadata, **(row.metadata or {})}  # what the row knew (metadata.mcp) wins
    bound = key.metadata.get("agent_run_id")
    row.agent_run_id = bound or run_id
    if bound and run_id and run_id != bound:
        meta["claimed_agent_run_id"] = run_id
    row.triggering_event_id = event_id
    if extra:
        meta["headers"] = extra
    row.metadata = meta or None
