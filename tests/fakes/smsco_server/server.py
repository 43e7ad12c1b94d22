"""The fake SMSCo server (see the package doc for the API it answers)."""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from tests.fakes.base import FakeServer, RecordedRequest

ACCOUNT = "AC" + "5" * 16
TOKEN = "tok_" + "9f" * 12
RATE_USD = Decimal("0.0075")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class FakeSmsco(FakeServer):
    """SMSCo in memory: `messages` by id, `idempotent` answers by key."""

    name = "fake-smsco"

    def __init__(self) -> None:
        super().__init__()
        self.messages: dict[str, dict[str, Any]] = {}
        self.idempotent: dict[str, tuple[int, dict[str, Any]]] = {}

    def reply(self, status: int, doc: Any) -> web.Response:
        return web.json_response(doc, status=status, headers={"X-Request-Id": f"req_{len(self.requests)}"})

    def error(self, status: int, code: str, message: str) -> web.Response:
        return self.reply(status, {"error": {"code": code, "message": message, "status": status}})

    def record(self, request: web.Request, body: bytes) -> RecordedRequest:
        recorded = super().record(request, body)
        auth = recorded.headers.get("authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            recorded.username, recorded.password = user, password
        return recorded

    async def handle(self, request: web.Request, recorded: RecordedRequest) -> web.Response:
        if (recorded.username, recorded.password) != (ACCOUNT, TOKEN):
            return self.error(401, "unauthorized", "HTTP Basic with the account id and API token is required.")
        route = (recorded.method, recorded.path)
        if route == ("POST", "/v1/messages"):
            key = recorded.headers.get("idempotency-key")
            if key is not None and key in self.idempotent:
                return self.reply(*self.idempotent[key])
            status, doc = self.send(recorded)
            if key is not None and status < 300:
                self.idempotent[key] = (status, doc)
            return self.reply(status, doc)
        if recorded.method == "GET" and recorded.path.startswith("/v1/messages/"):
            found = self.messages.get(recorded.path.rsplit("/", 1)[1])
            return self.reply(200, found) if found else self.error(404, "not_found", "No such message.")
        if route == ("POST", "/v1/lookups"):
            number = _body(recorded).get("number")
            return self.reply(200, {"number": number, "carrier": "Example Mobile"})
        if route == ("GET", "/v1/keys"):
            return self.reply(200, {"keys": [{"id": "key_1", "secret": "sk_smsco_v3ry_s3cret"}]})
        if route == ("POST", "/v1/keys"):
            return self.reply(201, {"id": "key_2", "secret": "sk_smsco_n3w_s3cret"})
        return self.error(404, "not_found", f"No route {recorded.method} {recorded.path}.")

    def send(self, recorded: RecordedRequest) -> tuple[int, dict[str, Any]]:
        doc = _body(recorded)
        to, sender, text = doc.get("to"), doc.get("from"), doc.get("text")
        if not isinstance(to, list) or not to or not all(isinstance(n, str) and _E164.match(n) for n in to):
            return 400, {"error": {"code": "invalid_request", "message": "to: E.164 numbers", "status": 400}}
        if not isinstance(sender, str) or not isinstance(text, str):
            return 400, {"error": {"code": "invalid_request", "message": "from and text", "status": 400}}
        message: dict[str, Any] = {
            "id": f"msg_{len(self.messages) + 1}",
            "status": "queued",
            "from": sender,
            "to": to,
            "text": text,
            "price": f"-{RATE_USD * len(to)}",
            "price_unit": "USD",
        }
        self.messages[message["id"]] = message
        return 201, message


def _body(recorded: RecordedRequest) -> dict[str, Any]:
    """A JSON object body, or a form body (`to` repeated) read as one."""
    ctype = recorded.headers.get("content-type", "")
    if ctype.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(recorded.body.decode(), keep_blank_values=True)
        return {"to": form.get("to", []), **{k: v[0] for k, v in form.items() if k != "to"}}
    try:
        doc = json.loads(recorded.body or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
