"""A small in-memory fake of the Resend API on loopback, for tests.

Paths and answer shapes follow Resend's OpenAPI spec (/work/shared/vendor-specs/resend.json):
`POST /emails` → 200 `{"id"}`, `POST /emails/batch` (≤ 100, all or nothing) → 200
`{"data": [{"id"}, …]}`, `GET /emails/{id}` → the Email object, `POST /api-keys` → 201
`{"id", "token"}`, `GET /api-keys`. Errors use Resend's documented shape and names:
`{"statusCode", "name", "message"}` — 401 missing_api_key, 403 invalid_api_key, 422
validation_error / missing_required_field, 404 not_found, 409 invalid_idempotent_request.
`Idempotency-Key` on sends: the same key and body within 24 h replays the first answer and
sends nothing new; the same key with another body is 409.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer, FakeThread, RecordedRequest

DEFAULT_API_KEY = "re_" + "FakeResendKey0123456789abcdefghi"


def _error(status: int, name: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"statusCode": status, "name": name, "message": message}


class FakeResend(FakeServer):
    name = "fake-resend"

    def __init__(self, *, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.emails: dict[str, dict[str, Any]] = {}
        self.api_keys: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[str, tuple[str, int, Any]] = {}  # key → (body hash, status, answer)

    def fail_next(self, status: int, name: str = "internal_server_error", message: str = "Internal error") -> None:
        self.next_status.append(_error(status, name, message))

    def record(self, request: web.Request, body: bytes) -> RecordedRequest:
        rec = super().record(request, body)
        try:
            rec.json = json.loads(body) if body else None
        except ValueError:
            rec.json = None
        return rec

    def reply(self, status: int, doc: Any) -> web.Response:
        return web.json_response(doc, status=status)

    async def handle(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:]:
            return self.reply(*_error(401, "missing_api_key", "Missing API key in the authorization header"))
        if auth[7:] != self.api_key:
            return self.reply(*_error(403, "invalid_api_key", "API key is invalid"))
        route = (request.method, request.path)
        if request.method == "GET" and request.path.startswith("/emails/"):
            found = self.emails.get(request.path.rsplit("/", 1)[1])
            return self.reply(200, found) if found else self.reply(*_error(404, "not_found", "Email not found"))
        if route == ("GET", "/api-keys"):
            return self.reply(200, {"object": "list", "has_more": False, "data": list(self.api_keys.values())})
        if route == ("POST", "/api-keys"):
            key_id = str(uuid.uuid4())
            self.api_keys[key_id] = {"id": key_id, "name": (rec.json or {}).get("name"), "created_at": _now()}
            token = "re_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
            return self.reply(201, {"id": key_id, "token": token})
        if route in (("POST", "/emails"), ("POST", "/emails/batch")):
            if "application/json" not in request.headers.get("Content-Type", "") or rec.json is None:
                return self.reply(*_error(422, "validation_error", "Invalid JSON body"))
            key = request.headers.get("Idempotency-Key")
            digest = hashlib.sha256(rec.body).hexdigest()
            if key is not None and key in self.idempotency:
                first_hash, status, answer = self.idempotency[key]
                if first_hash != digest:
                    return self.reply(
                        *_error(409, "invalid_idempotent_request", "Same idempotency key used with a different payload")
                    )
                return self.reply(status, answer)
            status, answer = self._send(rec.json, batch=request.path.endswith("/batch"))
            if key is not None and status == 200:
                self.idempotency[key] = (digest, status, answer)
            return self.reply(status, answer)
        return self.reply(*_error(404, "not_found", "The requested endpoint does not exist."))

    def _send(self, doc: Any, *, batch: bool) -> tuple[int, dict[str, Any]]:
        items = doc if batch else [doc]
        if batch and (not isinstance(doc, list) or not 1 <= len(doc) <= 100):
            return _error(422, "validation_error", "The batch must be an array of 1 to 100 emails.")
        for item in items:
            problem = _invalid(item)
            if problem is not None:
                return problem
        ids = []
        for item in items:
            email_id = str(uuid.uuid4())
            self.emails[email_id] = {
                "object": "email",
                "id": email_id,
                "to": _list(item["to"]),
                "from": item["from"],
                "created_at": _now(),
                "subject": item["subject"],
                "html": item.get("html"),
                "text": item.get("text"),
                "bcc": _list(item.get("bcc")),
                "cc": _list(item.get("cc")),
                "reply_to": _list(item.get("reply_to")),
                "last_event": "delivered",
            }
            ids.append(email_id)
        return (200, {"data": [{"id": i} for i in ids]}) if batch else (200, {"id": ids[0]})


def _invalid(item: Any) -> tuple[int, dict[str, Any]] | None:
    if not isinstance(item, dict):
        return _error(422, "validation_error", "Each email must be an object.")
    for field in ("from", "to", "subject"):
        if not item.get(field):
            return _error(422, "missing_required_field", f"Missing `{field}` field.")
    if len(_list(item["to"])) > 50:
        return _error(422, "validation_error", "Too many recipients in `to` (max 50).")
    return None


def _list(v: Any) -> list[Any] | None:
    if v is None:
        return None
    return v if isinstance(v, list) else [v]


def _now() -> str:
    return datetime.now(UTC).isoformat()


class FakeResendThread(FakeThread[FakeResend]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(FakeResend(**kwargs))
