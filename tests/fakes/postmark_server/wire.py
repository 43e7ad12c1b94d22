"""The fake Postmark's vocabulary: its API error codes, how its .NET JSON reader sees a body
(keys in any letter case), and how one email of a send is read and checked."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from email.utils import getaddresses
from typing import Any

DEFAULT_SERVER_TOKEN = "3f1c2b9e-7d4a-4c1e-9b8a-0f2d5e6a7b8c"  # Postmark server tokens are UUIDs
DEFAULT_ACCOUNT_TOKEN = "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"
TEST_TOKEN = "POSTMARK_API_TEST"  # Postmark: validates, delivers nothing
MAX_RECIPIENTS = 50  # To + Cc + Bcc of one message
MAX_BATCH = 500

Answer = tuple[int, Any]

# Postmark's API error codes (https://postmarkapp.com/developer/api/overview#error-codes) that
# this fake answers with; the messages are Postmark's where its docs give them, ours otherwise.
ERRORS: dict[int, str] = {
    10: "The Server API token you provided is missing or not valid.",
    300: "Invalid email request.",
    402: "Invalid JSON.",
    409: "JSON required: set the Accept and Content-Type headers to application/json.",
    410: "Too many batch messages. A batch holds at most 500 messages.",
    429: "Rate limit exceeded.",
    1101: "Template not found.",
}


class PostmarkFailure(Exception):
    """Raised by handlers; answered with Postmark's error body ``{"ErrorCode", "Message"}``.

    Postmark answers API errors with HTTP 422 and bad tokens with 401 (docs: HTTP response codes).
    """

    def __init__(self, code: int, message: str | None = None, status: int | None = None) -> None:
        self.status = status or (401 if code == 10 else 429 if code == 429 else 422)
        self.body = {"ErrorCode": code, "Message": message or ERRORS.get(code, "Unknown error.")}
        super().__init__(self.body["Message"])


def error_body(code: int, message: str | None = None) -> Answer:
    failure = PostmarkFailure(code, message)
    return failure.status, failure.body


def ci(doc: dict[str, Any]) -> dict[str, Any]:
    """A JSON object's members by lower-cased key, as Postmark's .NET reader matches them
    (`to` is `To`); of two keys differing only by case, the last one wins."""
    return {k.lower(): v for k, v in doc.items()}


def loads(body: bytes) -> Any:
    """The body as JSON (duplicate keys: the last wins), or PostmarkFailure 402."""
    try:
        return json.loads(body)
    except ValueError:
        raise PostmarkFailure(402, "Invalid JSON: the request body could not be parsed.") from None


def recipients(value: Any, field: str) -> list[str]:
    """The addresses of a To/Cc/Bcc value: a comma-separated string, display names allowed
    (``"Ana <ana@example.com>, bo@example.com"``). Anything else → ErrorCode 300."""
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        raise PostmarkFailure(300, f"Invalid '{field}' value: expected a string of comma-separated addresses.")
    out: list[str] = []
    for name, address in getaddresses([value]):
        if not _valid(address):
            raise PostmarkFailure(300, f"Error parsing '{field}': Illegal email address '{address or name}'.")
        out.append(address)
    return out


def _valid(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and "." in domain and " " not in address and not domain.endswith("."))


def message(doc: Any, *, template: bool) -> dict[str, Any]:
    """Check one message of a send (`template`: a withTemplate one) and return what is stored:
    its fields by lower-cased key plus ``to_list``/``cc_list``/``bcc_list`` and ``MessageID``.
    Raises PostmarkFailure 300 (or 1101 for a missing template) as Postmark does."""
    if not isinstance(doc, dict):
        raise PostmarkFailure(300, "Each message must be a JSON object.")
    m = ci(doc)
    sender = m.get("from")
    if not isinstance(sender, str) or not sender:
        raise PostmarkFailure(300, "Invalid 'From' address: ''.")
    (from_address,) = recipients(sender, "From") or [""]
    lists = {f: recipients(m.get(f.lower()), f) for f in ("To", "Cc", "Bcc")}
    total = sum(len(v) for v in lists.values())
    if total == 0:
        raise PostmarkFailure(300, "Zero recipients specified")
    if total > MAX_RECIPIENTS:
        raise PostmarkFailure(300, f"Maximum of {MAX_RECIPIENTS} recipients allowed per email message ({total} given).")
    if template:
        if m.get("templateid") is None and m.get("templatealias") is None:
            raise PostmarkFailure(1101, "Either TemplateId or TemplateAlias is required.")
        if not isinstance(m.get("templatemodel"), dict):
            raise PostmarkFailure(300, "TemplateModel is required and must be an object.")
    elif not (m.get("htmlbody") or m.get("textbody")):
        raise PostmarkFailure(300, "Provide either email TextBody or HtmlBody or both.")
    headers = m.get("headers")
    if headers is not None and not (
        isinstance(headers, list) and all(isinstance(h, dict) and isinstance(ci(h).get("name"), str) for h in headers)
    ):
        raise PostmarkFailure(300, "Headers must be an array of {Name, Value} objects.")
    return {
        **m,
        "from_address": from_address,
        "to_list": lists["To"],
        "cc_list": lists["Cc"],
        "bcc_list": lists["Bcc"],
        "MessageID": str(uuid.uuid4()),
        "SubmittedAt": submitted_at(),
    }


def sent(stored: dict[str, Any]) -> dict[str, Any]:
    """Postmark's answer for one accepted message."""
    return {
        "To": stored.get("to") or "",
        "SubmittedAt": stored["SubmittedAt"],
        "MessageID": stored["MessageID"],
        "ErrorCode": 0,
        "Message": "OK",
    }


def submitted_at(when: datetime | None = None) -> str:
    """Postmark's timestamp format, as in its examples: ``2014-02-17T07:25:01.4178645-05:00``."""
    now = when or datetime.now(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond:06d}0+00:00"
