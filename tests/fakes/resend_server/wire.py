"""The fake Resend's vocabulary: its error reference, the Email object's fields, and how a
send request is read and checked (addresses, tags, attachments)."""

from __future__ import annotations

import re
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import RecordedRequest

DEFAULT_API_KEY = "re_" + "FakeResendKey0123456789abcdefghi"  # "re_" + 32 letters and digits
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
MAX_BATCH = 100
MAX_TO = 50

Answer = tuple[int, dict[str, Any]]

# Resend's error reference: name → (status, message).
ERRORS: dict[str, tuple[int, str]] = {
    "invalid_idempotency_key": (400, "The key must be between 1-256 chars."),
    "validation_error": (400, "We found an error with one or more fields in the request."),
    "missing_api_key": (401, "Missing API key in the authorization header."),
    "restricted_api_key": (401, "This API key is restricted to only send emails."),
    "invalid_api_key": (403, "API key is invalid."),
    "not_found": (404, "The requested endpoint does not exist."),
    "method_not_allowed": (405, "Method is not allowed for the requested path."),
    "invalid_idempotent_request": (409, "Same idempotency key used with a different request payload."),
    "concurrent_idempotent_requests": (
        409,
        "Same idempotency key used while original request is still in progress.",
    ),
    "invalid_attachment": (422, "Attachment must have either a `content` or `path`."),
    "invalid_access": (422, 'Access must be "full_access" | "sending_access".'),
    "invalid_parameter": (422, "The parameter must be a valid UUID."),
    "missing_required_field": (422, "The request body is missing one or more required fields."),
    "daily_quota_exceeded": (429, "You have reached your daily email sending quota."),
    "monthly_quota_exceeded": (429, "You have reached your monthly email sending quota."),
    "rate_limit_exceeded": (
        429,
        "Too many requests. Please limit the number of requests per second. Or contact support to increase rate limit.",
    ),
    "security_error": (451, "We may have found a security issue with the request."),
    "application_error": (500, "An unexpected error occurred."),
    "internal_server_error": (500, "An unexpected error occurred."),
}
# The name ``fail_next(status)`` uses when none is given.
_NAME_FOR_STATUS = {
    400: "validation_error",
    401: "missing_api_key",
    403: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    409: "concurrent_idempotent_requests",
    422: "validation_error",
    429: "rate_limit_exceeded",
    451: "security_error",
}

# The Email object's fields (spec: components/schemas/Email), plus scheduled_at.
EMAIL_FIELDS = (
    "object",
    "id",
    "message_id",
    "to",
    "from",
    "created_at",
    "subject",
    "html",
    "text",
    "bcc",
    "cc",
    "reply_to",
    "last_event",
    "scheduled_at",
)
_ALNUM = string.ascii_letters + string.digits
_ADDRESS = re.compile(r"[^\s@<>,;\"]+@[^\s@<>,;\"]+\.[^\s@<>,;\"]+")
_NAMED = re.compile(r"\s*(?:\"[^\"]*\"|[^<>\"]*?)\s*<(?P<address>[^<>]*)>\s*")
_TAG = re.compile(r"[A-Za-z0-9_-]{1,256}")
_BAD_ADDRESS = (
    "Invalid `{}` field. The email address needs to follow the `email@example.com` or "
    "`Name <email@example.com>` format."
)


def error_body(name: str, message: str | None = None, status: int | None = None) -> Answer:
    """``(status, body)`` for one of Resend's errors; status and message default to the reference's."""
    default_status, default_message = ERRORS.get(name, (500, "An unexpected error occurred."))
    status = status or default_status
    return status, {"statusCode": status, "name": name, "message": message or default_message}


class ResendFailure(Exception):
    """Raised by handlers; answered with Resend's error body."""

    def __init__(self, name: str, message: str | None = None, status: int | None = None) -> None:
        self.answer = error_body(name, message, status)
        super().__init__(self.answer[1]["message"])


def _invalid(message: str) -> ResendFailure:
    return ResendFailure("validation_error", message, 422)


@dataclass
class IdempotencyRecord:
    fingerprint: str  # path + canonical JSON body
    status: int
    answer: dict[str, Any]
    stored_at: float  # time.time()


@dataclass
class IssuedKey:
    id: str
    permission: str  # full_access | sending_access


def _json_body(request: web.Request, rec: RecordedRequest) -> Any:
    if request.content_type != "application/json":
        raise ResendFailure("validation_error", "Invalid `Content-Type` header. Expected `application/json`.")
    if rec.json is None:
        raise ResendFailure("validation_error", "The request body is not valid JSON.")
    return rec.json


def _email(item: dict[str, Any], *, batch: bool) -> dict[str, Any]:
    """Check one SendEmailRequest and build the stored email, or raise Resend's error."""
    for field in ("from", "to", "subject"):
        if item.get(field) in (None, "", []):
            raise ResendFailure("missing_required_field", f"Missing `{field}` field.")
    sender = item["from"]
    if not isinstance(sender, str) or not _valid_address(sender):
        raise _invalid(_BAD_ADDRESS.format("from"))
    if not isinstance(item["subject"], str):
        raise _invalid("The `subject` field must be a `string`.")
    to = _addresses(item, "to")
    assert to is not None
    if len(to) > MAX_TO:
        raise _invalid(f"The `to` field holds at most {MAX_TO} addresses; this one has {len(to)}.")
    cc, bcc, reply_to = (_addresses(item, f) for f in ("cc", "bcc", "reply_to"))
    for field in ("html", "text"):
        if item.get(field) is not None and not isinstance(item[field], str):
            raise _invalid(f"The `{field}` field must be a `string`.")
    template = item.get("template")
    if template is not None:
        if not isinstance(template, dict) or not isinstance(template.get("id"), str):
            raise _invalid("The `template` field must be an object with an `id`.")
        if any(item.get(f) is not None for f in ("html", "text", "react")):
            raise _invalid("Cannot use `template` together with `html`, `text` or `react`.")
    if item.get("headers") is not None and not isinstance(item["headers"], dict):
        raise _invalid("The `headers` field must be an object.")
    _check_tags(item.get("tags"))
    if batch:
        for field in ("attachments", "scheduled_at"):
            if item.get(field) is not None:
                raise _invalid(f"The `{field}` field is not supported in batch emails.")
    _check_attachments(item.get("attachments"))
    scheduled_at = item.get("scheduled_at")
    if scheduled_at is not None and not isinstance(scheduled_at, str):
        raise _invalid("The `scheduled_at` field must be a `string`.")

    email_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    domain = _bare(sender).rpartition("@")[2]
    email: dict[str, Any] = {
        "object": "email",
        "id": email_id,
        "message_id": f"<{now:%Y%m%d%H%M%S}.{email_id[:8]}@{domain}>",
        "to": to,
        "from": sender,
        "created_at": _timestamp(now),
        "subject": item["subject"],
        "html": item.get("html"),
        "text": item.get("text"),
        "bcc": bcc,
        "cc": cc,
        "reply_to": reply_to,
        "last_event": "scheduled" if scheduled_at else "sent",
        "scheduled_at": scheduled_at,
    }
    for field, value in item.items():  # everything else sent (attachments, tags, headers, …)
        email.setdefault(field, value)
    email["_sent"] = item  # the email exactly as sent
    return email


def _addresses(item: dict[str, Any], field: str) -> list[str] | None:
    value = item.get(field)
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not isinstance(value, str | list) or not all(isinstance(v, str) for v in values):
        raise _invalid(f"The `{field}` field must be a `string` or an array of strings.")
    for address in values:
        if not _valid_address(address):
            raise _invalid(_BAD_ADDRESS.format(field))
    return list(values)


def _bare(address: str) -> str:
    m = _NAMED.fullmatch(address)
    return (m.group("address") if m else address).strip()


def _valid_address(address: str) -> bool:
    return _ADDRESS.fullmatch(_bare(address)) is not None


def _check_tags(tags: Any) -> None:
    if tags is None:
        return
    if not isinstance(tags, list):
        raise _invalid("The `tags` field must be an array.")
    for tag in tags:
        name = tag.get("name") if isinstance(tag, dict) else None
        value = tag.get("value") if isinstance(tag, dict) else None
        if not isinstance(name, str) or not _TAG.fullmatch(name):
            raise _invalid("Tag names can only contain ASCII letters, numbers, underscores or dashes (max 256).")
        if value is not None and (not isinstance(value, str) or not _TAG.fullmatch(value)):
            raise _invalid("Tag values can only contain ASCII letters, numbers, underscores or dashes (max 256).")


def _check_attachments(attachments: Any) -> None:
    if attachments is None:
        return
    if not isinstance(attachments, list):
        raise _invalid("The `attachments` field must be an array.")
    for attachment in attachments:
        if not isinstance(attachment, dict) or not (attachment.get("content") or attachment.get("path")):
            raise ResendFailure("invalid_attachment")


def _uuid(value: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ResendFailure("invalid_parameter", "The `id` must be a valid UUID.") from None


def _rand(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def _timestamp(when: datetime | None = None) -> str:
    """Resend's format, as in the spec's examples: ``2023-04-03 22:13:42.674981+00``."""
    return f"{when or datetime.now(UTC):%Y-%m-%d %H:%M:%S.%f}+00"
