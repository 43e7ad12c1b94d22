"""The fake SendGrid server: bearer API keys, Mail Send, API keys and event webhook settings."""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeThread, JsonFakeServer, RecordedRequest
from tests.fakes.sendgrid_server.wire import DEFAULT_API_KEY, Answer, SendGridFailure, error_body, mail

Handler = Callable[[RecordedRequest], Answer]
_ALNUM = string.ascii_letters + string.digits


class FakeSendGrid(JsonFakeServer):
    """A fake SendGrid v3 API server. ``await start()`` binds 127.0.0.1 on a free port.

    Test controls (see FakeServer): ``delay_seconds``, ``hang``, ``next_status`` and
    ``fail_next(status, message)``. ``mails`` holds every accepted Mail Send by its
    ``X-Message-Id`` (``{"recipients", "from", "doc"}``); ``api_keys`` the keys created.
    """

    name = "fake-sendgrid"

    def __init__(self, *, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.mails: dict[str, dict[str, Any]] = {}
        self.api_keys: dict[str, dict[str, Any]] = {}  # api_key_id → {"api_key_id", "name", "scopes", "api_key"}
        self.event_webhook: dict[str, Any] = {"enabled": False, "url": ""}
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v3/mail/send"): self._send,
            ("GET", "/v3/api_keys"): self._list_keys,
            ("POST", "/v3/api_keys"): self._create_key,
            ("GET", "/v3/user/webhooks/event/settings"): self._get_webhook,
            ("PATCH", "/v3/user/webhooks/event/settings"): self._patch_webhook,
            ("GET", "/v3/scopes"): self._scopes,
        }

    async def __aenter__(self) -> FakeSendGrid:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def fail_next(self, status: int, message: str = "internal server error", field: str | None = None) -> None:
        """Answer the next request with `status` and SendGrid's error body."""
        self.next_status.append(error_body(status, message, field))

    # --- plumbing ----------------------------------------------------------------------------

    def reply(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> web.Response:
        if status == 202 and doc is None:  # Mail Send: "202 Accepted", no body
            return web.Response(status=202, headers=headers)
        return web.json_response(doc, status=status, headers=headers)

    async def handle(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        headers: dict[str, str] = {}
        try:
            self._authenticate(request)
            handler = self._routes.get((request.method, request.path))
            if handler is None:
                known = any(path == request.path for _, path in self._routes)
                raise SendGridFailure(405 if known else 404, "method not allowed" if known else "not found")
            if request.method in ("POST", "PATCH"):
                if request.content_type != "application/json":
                    raise SendGridFailure(415, "Content-Type should be application/json.")
                if rec.json is None:
                    raise SendGridFailure(400, "Bad Request", None, "http://sendgrid.com/docs/API_Reference/")
            status, doc = handler(rec)
            if request.path == "/v3/mail/send":
                headers["X-Message-Id"] = doc.pop("message_id")
                doc = None
        except SendGridFailure as failure:
            status, doc = failure.status, failure.body
        return self.reply(status, doc, headers)

    def _authenticate(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SendGridFailure(401, "authorization required")
        token = token.strip()
        known = [self.api_key, *(k["api_key"] for k in self.api_keys.values())]
        if not any(secrets.compare_digest(token.encode(), k.encode()) for k in known):
            raise SendGridFailure(401, "The provided authorization grant is invalid, expired, or revoked")

    # --- endpoints -----------------------------------------------------------------------------

    def _send(self, rec: RecordedRequest) -> Answer:
        checked = mail(rec.json)
        message_id = "".join(secrets.choice(_ALNUM) for _ in range(22))
        self.mails[message_id] = checked
        return 202, {"message_id": message_id}

    def _list_keys(self, rec: RecordedRequest) -> Answer:
        return 200, {"result": [{"api_key_id": k["api_key_id"], "name": k["name"]} for k in self.api_keys.values()]}

    def _create_key(self, rec: RecordedRequest) -> Answer:
        doc = rec.json if isinstance(rec.json, dict) else {}
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            raise SendGridFailure(400, "missing required argument", "name")
        key_id = uuid.uuid4().hex[:22]
        secret = f"SG.{key_id}.{''.join(secrets.choice(_ALNUM) for _ in range(43))}"
        scopes = doc.get("scopes") or ["mail.send"]
        self.api_keys[key_id] = {"api_key_id": key_id, "name": name, "scopes": scopes, "api_key": secret}
        return 201, dict(self.api_keys[key_id])

    def _get_webhook(self, rec: RecordedRequest) -> Answer:
        return 200, dict(self.event_webhook)

    def _patch_webhook(self, rec: RecordedRequest) -> Answer:
        doc = rec.json if isinstance(rec.json, dict) else {}
        self.event_webhook.update({k: v for k, v in doc.items() if k in ("enabled", "url")})
        return 200, dict(self.event_webhook)

    def _scopes(self, rec: RecordedRequest) -> Answer:
        return 200, {"scopes": ["mail.send", "api_keys.read"]}


class FakeSendGridThread(FakeThread[FakeSendGrid]):
    """``with FakeSendGridThread() as t: ...`` — a FakeSendGrid on its own event loop."""

    def __init__(self, fake: FakeSendGrid | None = None) -> None:
        super().__init__(fake or FakeSendGrid())
