"""The emails a Resend send carries, read once from its JSON (docs/sdk-resend.md): recipients
over `to`, `cc` and `bcc`, the sender's domain, and custom headers that may not name anyone."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from keybrake.core.destinations import email_address
from keybrake.core.errors import Denial

MAX_RECIPIENTS_PER_FIELD = 50


@dataclass(frozen=True)
class Email:
    """What one email of a request sends, read once."""

    recipients: frozenset[str]  # distinct `local@domain` over to, cc and bcc
    to_domains: frozenset[str]
    from_domain: str
    subject: str
    content_hash: str  # of html, text and template: bodies are never kept


@dataclass(frozen=True)
class ResendParse:
    """What the one parse learnt of a Resend request (`VendorRequest.detail`): the parsed JSON
    body (`doc`, None without one; it is the Idempotency-Key fingerprint) and, for a send, each
    email it carries (`emails`; empty for every other request)."""

    doc: Any
    emails: tuple[Email, ...] = ()


def read_email(doc: dict[str, Any], where: str) -> Email:
    """One email object of a send, read once: its distinct recipients and their domains, the
    sender's domain, the subject and a hash of the content. `where` prefixes field names in
    refusals (a batch item's `[3].`). Raises 400 body_invalid, or 403 scope_violation for a
    custom header naming recipients."""
    recipients: set[str] = set()
    domains: set[str] = set()
    for field in ("to", "cc", "bcc"):
        value = doc.get(field)
        if value is None:
            if field == "to":
                raise Denial("body_invalid", f"Field '{where}to' is required (one address or a list).")
            continue
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or len(values) > MAX_RECIPIENTS_PER_FIELD:
            raise Denial(
                "body_invalid",
                f"Field '{where}{field}' must be an address or a list of 1 to {MAX_RECIPIENTS_PER_FIELD} addresses.",
            )
        for v in values:
            address, domain = email_address(v, field=f"{where}{field}")
            recipients.add(address)
            domains.add(domain)
    _check_custom_headers(doc.get("headers"), where)
    sender = doc.get("from")
    if not isinstance(sender, str) or not sender:
        raise Denial("body_invalid", f"Field '{where}from' is required (one address).")
    _, from_domain = email_address(sender, field=f"{where}from")
    subject = doc.get("subject")
    h = hashlib.sha256()
    for field in ("html", "text", "template", "react"):
        h.update(b"\0" + json.dumps(doc.get(field), sort_keys=True).encode())
    return Email(frozenset(recipients), frozenset(domains), from_domain, str(subject or ""), h.hexdigest())


# Headers that name who receives or sends a message. In `headers` they would add recipients (or a
# sender) that `to`/`cc`/`bcc`/`from` scope and pricing never see.
ADDRESS_HEADERS = frozenset(
    {
        "to",
        "cc",
        "bcc",
        "from",
        "sender",
        "return-path",
        "resent-to",
        "resent-cc",
        "resent-bcc",
        "resent-from",
        "resent-sender",
        "delivered-to",
        "envelope-to",
        "apparently-to",
        "x-original-to",
    }
)


def _check_custom_headers(headers: Any, where: str) -> None:
    """`headers` (Resend: "custom headers to add to the email") may not name recipients or senders.

    Raises 400 body_invalid when it is not an object of strings or a name or value holds a line
    break (which would add headers of its own); 403 scope_violation for an address header.
    """
    if headers is None:
        return
    if not isinstance(headers, dict):
        raise Denial("body_invalid", f"Field '{where}headers' must be an object of header names to values.")
    for name, value in headers.items():
        if not isinstance(value, str) or any(ch in name + value for ch in "\r\n\x00"):
            raise Denial(
                "body_invalid",
                f"Header {name[:40]!r} in '{where}headers' must be a one-line string (no line breaks).",
            )
        if name.strip().lower() in ADDRESS_HEADERS:
            raise Denial(
                "scope_violation",
                f"Header {name.strip()[:40]!r} in '{where}headers' would name recipients or senders that Keybrake "
                "does not check or count; use to, cc, bcc and from. Nothing was sent. Do not retry unchanged.",
            )
