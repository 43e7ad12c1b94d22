"""The fake Resend server: auth, idempotency keys, forced answers, emails and API keys."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeThread, JsonFakeServer, RecordedRequest
from tests.fakes.resend_server.wire import (
    _NAME_FOR_STATUS,
    DEFAULT_API_KEY,
    EMAIL_FIELDS,
    IDEMPOTENCY_TTL_SECONDS,
    MAX_BATCH,
    Answer,
    IdempotencyRecord,
    IssuedKey,
    ResendFailure,
    _email,
    _invalid,
    _json_body,
    _rand,
    _timestamp,
    _uuid,
    error_body,
)

Handler = Callable[[web.Request, RecordedRequest, str], Answer]


class FakeResend(JsonFakeServer):
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


class FakeResendThread(FakeThread[FakeResend]):
    """Runs a :class:`FakeResend` in its own event loop on a background thread.

    ``with FakeResendThread() as t: ...`` — ``t.fake`` is the server, ``t.base_url`` its URL.
    ``fake.hang`` may be a ``threading.Event`` set from the test thread; ``hold()`` /
    ``release()`` do that for you.
    """

    def __init__(self, *, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__(FakeResend(api_key=api_key))
