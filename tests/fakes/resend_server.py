"""A small in-memory fake of the Resend API on loopback, for tests.

Paths, fields and status codes follow Resend's OpenAPI spec (resend/resend-openapi `resend.json`,
resend-openapi fd6f395f). The spec documents no error responses; error bodies and names follow
Resend's error reference (https://resend.com/docs/api-reference/errors):
``{"statusCode": <http status>, "name": "<error name>", "message": "…"}``.

Covered:

- ``POST /emails`` → 200 ``{"id"}``; ``from``, ``to`` (a string or 1–50 strings) and ``subject``
  are required (422 missing_required_field, "Missing `to` field."); malformed addresses, wrong
  types, ``template`` together with ``html``/``text``/``react`` and bad tags are 422
  validation_error; an attachment without ``content`` or ``path`` is 422 invalid_attachment.
- ``POST /emails/batch`` → 200 ``{"data": [{"id"}, …]}``: 1–100 emails, each checked as above,
  without ``attachments`` or ``scheduled_at`` (unsupported in batches). Strict by default (one
  bad email refuses the whole batch); ``x-batch-validation: permissive`` sends the valid ones
  and lists the others as ``"errors": [{"index", "message"}]``.
- ``GET /emails/{id}`` → the Email object (422 invalid_parameter if not a UUID, 404 not_found).
- ``POST /api-keys`` → 201 ``{"id", "token"}`` (422 missing_required_field / invalid_access);
  ``GET /api-keys`` → ``{"object": "list", "has_more", "data"}`` without tokens;
  ``DELETE /api-keys/{id}``. Created tokens authenticate too; a ``sending_access`` token may
  only send (401 restricted_api_key elsewhere).
- Auth: ``Authorization: Bearer <key>``; none → 401 missing_api_key, a wrong one → 403
  invalid_api_key. Checked before routing.
- ``Idempotency-Key`` (1–256 chars, else 400 invalid_idempotency_key) on the two send paths:
  the same key and JSON body within 24 h replays the first 200 answer and sends nothing; the
  same key with another body (or on the other path) is 409 invalid_idempotent_request; while
  the first request is still in flight (see ``hold()``) it is 409
  concurrent_idempotent_requests. Refused requests are not kept under the key.
- Unknown paths are 404 not_found; a method the spec does not list for a known path is 405
  method_not_allowed; one it lists but this fake does not implement is 404 with a message
  saying so.

Our choices where Resend documents nothing: a body that is not JSON, or a Content-Type other
than JSON, is 400 validation_error; messages the error reference does not give are ours.
Deliberately looser than Resend: sender domains are not checked, unknown fields are accepted
and stored, templates are not looked up.

Usage, async::

    async with FakeResend() as fake:
        ...fake.base_url...

or from synchronous tests::

    with FakeResendThread() as t:
        ...t.base_url, t.fake.requests, t.fake.emails...
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer, FakeThread, RecordedRequest

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


Handler = Callable[[web.Request, RecordedRequest, str], Answer]


class FakeResend(FakeServer):
    """A fake Resend API server. ``await start()`` binds 127.0.0.1 on a free port.

    Test controls (``reset()`` puts them back, keeping emails, keys and idempotency records):

    - ``delay_seconds``: sleep this long before answering any request.
    - ``hang``: an ``asyncio.Event`` or ``threading.Event``; while it is set here and not yet
      set, every request waits for it (a call in flight). Idempotency keys are claimed before
      the wait, so a second request with the same key meets concurrent_idempotent_requests.
    - ``next_status``: queue of ``(status, json_body)``; each request pops the first one and is
      answered with it instead (after recording it, before auth); ``fail_next`` queues one in
      Resend's shape. Forced answers create nothing and are not kept under idempotency keys.
    - ``idempotency_ttl_seconds``: how long a key is remembered (24 h, as Resend documents).
    """

    name = "fake-resend"

    def __init__(self, *, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.emails: dict[str, dict[str, Any]] = {}  # id → Email object + every other field sent
        self.api_keys: dict[str, dict[str, Any]] = {}  # id → ApiKey object
        self.tokens: dict[str, IssuedKey] = {}  # token from POST /api-keys → its key
        self.idempotency: dict[str, IdempotencyRecord] = {}
        self.idempotency_ttl_seconds: float = IDEMPOTENCY_TTL_SECONDS
        self._in_flight: set[str] = set()
        # path pattern → {method: handler, or None where the spec has it and this fake does not}
        routes: list[tuple[str, dict[str, Handler | None]]] = [
            (r"/emails", {"POST": self._send_email, "GET": None}),
            (r"/emails/batch", {"POST": self._send_batch}),
            (r"/emails/(?P<id>[^/]+)", {"GET": self._get_email, "PATCH": None}),
            (r"/emails/(?P<id>[^/]+)/cancel", {"POST": None}),
            (r"/api-keys", {"POST": self._create_api_key, "GET": self._list_api_keys}),
            (r"/api-keys/(?P<id>[^/]+)", {"DELETE": self._delete_api_key, "PATCH": None}),
        ]
        self._paths = [(re.compile(p), methods) for p, methods in routes]

    async def __aenter__(self) -> FakeResend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def fail_next(self, status: int, name: str | None = None, message: str | None = None) -> None:
        """Answer the next request with ``status`` and a Resend error body (name from the status)."""
        if name is None:
            name = _NAME_FOR_STATUS.get(status, "internal_server_error" if status >= 500 else "validation_error")
        self.next_status.append(error_body(name, message, status))

    # --- plumbing ----------------------------------------------------------------------------

    def record(self, request: web.Request, body: bytes) -> RecordedRequest:
        rec = super().record(request, body)
        try:
            rec.json = json.loads(body) if body else None
        except ValueError:
            rec.json = None
        return rec

    def reply(self, status: int, doc: Any) -> web.Response:
        headers: dict[str, str] = {}
        if status == 429:
            headers = {"retry-after": "1", "ratelimit-limit": "2", "ratelimit-remaining": "0", "ratelimit-reset": "1"}
        return web.json_response(doc, status=status, headers=headers)

    async def _wait(self) -> None:
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds)
        hang = self.hang
        if hang is not None:
            while not hang.is_set():  # polling works for both kinds of event
                await asyncio.sleep(0.005)

    async def _serve(self, request: web.Request) -> web.Response:
        body = await request.read()
        rec = self.record(request, body)
        self.requests.append(rec)
        if self.next_status:
            status, forced = self.next_status.pop(0)[:2]
            await self._wait()
            return self.reply(status, forced)
        return await self.handle(request, rec)

    async def handle(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        claimed, concurrent = self._claim(request)
        try:
            await self._wait()
            try:
                status, doc = self._answer(request, rec, concurrent)
            except ResendFailure as failure:
                status, doc = failure.answer
        finally:
            if claimed is not None:
                self._in_flight.discard(claimed)
        return self.reply(status, doc)

    def _claim(self, request: web.Request) -> tuple[str | None, bool]:
        """On arrival, before any wait: mark an authenticated send's idempotency key in flight.

        Returns the key if this request claimed it, and whether another request held it then.
        """
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or request.path not in ("/emails", "/emails/batch") or not key:
            return None, False
        try:
            self._authenticate(request)
        except ResendFailure:
            return None, False
        self._expire_idempotency()
        if key in self._in_flight:
            return None, True
        if key in self.idempotency or len(key) > 256:
            return None, False
        self._in_flight.add(key)
        return key, False

    def _authenticate(self, request: web.Request) -> str:
        """The permission of the bearer token, or a failure."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ResendFailure("missing_api_key")
        if secrets.compare_digest(token.encode(), self.api_key.encode()):
            return "full_access"
        issued = self.tokens.get(token)
        if issued is None or issued.id not in self.api_keys:
            raise ResendFailure("invalid_api_key")
        self.api_keys[issued.id]["last_used_at"] = _timestamp()
        return issued.permission

    def _answer(self, request: web.Request, rec: RecordedRequest, concurrent: bool) -> Answer:
        permission = self._authenticate(request)
        for pattern, methods in self._paths:
            m = pattern.fullmatch(request.path)
            if m is None:
                continue
            if request.method not in methods:
                raise ResendFailure("method_not_allowed")
            handler = methods[request.method]
            if handler is None:
                raise ResendFailure("not_found", f"{request.method} {pattern.pattern} is not implemented by this fake.")
            sending = handler in (self._send_email, self._send_batch)
            if permission == "sending_access" and not sending:
                raise ResendFailure("restricted_api_key")
            if sending:
                return self._send(request, rec, handler, concurrent=concurrent)
            return handler(request, rec, m.groupdict().get("id") or "")
        raise ResendFailure("not_found")

    # --- sending -----------------------------------------------------------------------------

    def _send(self, request: web.Request, rec: RecordedRequest, handler: Handler, *, concurrent: bool) -> Answer:
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 256:
            raise ResendFailure("invalid_idempotency_key")
        _json_body(request, rec)
        if key is None:
            return handler(request, rec, "")
        if concurrent:  # decided on arrival: the first request with this key was still running
            raise ResendFailure("concurrent_idempotent_requests")
        fingerprint = request.path + "\n" + json.dumps(rec.json, sort_keys=True, separators=(",", ":"))
        self._expire_idempotency()
        stored = self.idempotency.get(key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise ResendFailure("invalid_idempotent_request")
            return stored.status, json.loads(json.dumps(stored.answer))
        status, answer = handler(request, rec, "")
        self.idempotency[key] = IdempotencyRecord(fingerprint, status, answer, time.time())
        return status, answer

    def _expire_idempotency(self) -> None:
        cutoff = time.time() - self.idempotency_ttl_seconds
        for key in [k for k, r in self.idempotency.items() if r.stored_at < cutoff]:
            del self.idempotency[key]

    def _send_email(self, request: web.Request, rec: RecordedRequest, _: str) -> Answer:
        if not isinstance(rec.json, dict):
            raise _invalid("The request body must be a JSON object.")
        email = _email(rec.json, batch=False)
        self.emails[email["id"]] = email
        return 200, {"id": email["id"]}

    def _send_batch(self, request: web.Request, rec: RecordedRequest, _: str) -> Answer:
        items = rec.json
        if not isinstance(items, list):
            raise _invalid("The request body must be an array of emails.")
        if not 1 <= len(items) <= MAX_BATCH:
            raise _invalid(f"A batch holds 1 to {MAX_BATCH} emails; this one has {len(items)}.")
        permissive = request.headers.get("x-batch-validation", "strict").lower() == "permissive"
        emails: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise _invalid("Each email in the batch must be a JSON object.")
                emails.append(_email(item, batch=True))
            except ResendFailure as failure:
                if not permissive:
                    raise  # strict: one bad email refuses the whole batch
                errors.append({"index": index, "message": failure.answer[1]["message"]})
        for email in emails:
            self.emails[email["id"]] = email
        answer: dict[str, Any] = {"data": [{"id": e["id"]} for e in emails]}
        if permissive:
            answer["errors"] = errors
        return 200, answer

    def _get_email(self, request: web.Request, rec: RecordedRequest, email_id: str) -> Answer:
        _uuid(email_id)
        email = self.emails.get(email_id)
        if email is None:
            raise ResendFailure("not_found", "Email not found")
        return 200, {k: email.get(k) for k in EMAIL_FIELDS}

    # --- API keys ----------------------------------------------------------------------------

    def _create_api_key(self, request: web.Request, rec: RecordedRequest, _: str) -> Answer:
        doc = _json_body(request, rec)
        if not isinstance(doc, dict):
            raise _invalid("The request body must be a JSON object.")
        name = doc.get("name")
        if name is None or name == "":
            raise ResendFailure("missing_required_field", "Missing `name` field.")
        if not isinstance(name, str):
            raise _invalid("The `name` field must be a `string`.")
        permission = doc.get("permission", "full_access")
        if permission not in ("full_access", "sending_access"):
            raise ResendFailure("invalid_access")
        key_id = str(uuid.uuid4())
        token = "re_" + _rand(8) + "_" + _rand(24)
        self.api_keys[key_id] = {"id": key_id, "name": name, "created_at": _timestamp(), "last_used_at": None}
        self.tokens[token] = IssuedKey(key_id, permission)
        return 201, {"id": key_id, "token": token}

    def _list_api_keys(self, request: web.Request, rec: RecordedRequest, _: str) -> Answer:
        keys = list(reversed(self.api_keys.values()))  # newest first
        limit = request.query.get("limit")
        if limit is not None:
            if not limit.isdigit() or not 1 <= int(limit) <= 100:
                raise _invalid("The `limit` parameter must be an integer between 1 and 100.")
            page = keys[: int(limit)]
        else:
            page = keys
        return 200, {"object": "list", "has_more": len(page) < len(keys), "data": [dict(k) for k in page]}

    def _delete_api_key(self, request: web.Request, rec: RecordedRequest, key_id: str) -> Answer:
        _uuid(key_id)
        if self.api_keys.pop(key_id, None) is None:
            raise ResendFailure("not_found", "API key not found")
        return 200, {"object": "api_key", "id": key_id, "deleted": True}


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


class FakeResendThread(FakeThread[FakeResend]):
    """Runs a :class:`FakeResend` in its own event loop on a background thread.

    ``with FakeResendThread() as t: ...`` — ``t.fake`` is the server, ``t.base_url`` its URL.
    ``fake.hang`` may be a ``threading.Event`` set from the test thread; ``hold()`` /
    ``release()`` do that for you.
    """

    def __init__(self, *, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__(FakeResend(api_key=api_key))
