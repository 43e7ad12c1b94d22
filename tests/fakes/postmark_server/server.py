"""The fake Postmark server: server/account tokens, the four send endpoints, message details,
the server object (with its API tokens) and webhooks."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeThread, JsonFakeServer, RecordedRequest
from tests.fakes.postmark_server.wire import (
    DEFAULT_ACCOUNT_TOKEN,
    DEFAULT_SERVER_TOKEN,
    MAX_BATCH,
    TEST_TOKEN,
    Answer,
    PostmarkFailure,
    ci,
    error_body,
    loads,
    message,
    sent,
)

Handler = Callable[[RecordedRequest, str], Answer]


class FakePostmark(JsonFakeServer):
    """A fake Postmark API server. ``await start()`` binds 127.0.0.1 on a free port.

    Test controls (see FakeServer): ``delay_seconds``, ``hang``, ``next_status`` and
    ``fail_next(status, code)``. ``messages`` holds every accepted message by MessageID (its
    fields by lower-cased key, plus ``to_list``/``cc_list``/``bcc_list``); ``webhooks`` the
    webhooks created.
    """

    name = "fake-postmark"

    def __init__(self, *, server_token: str = DEFAULT_SERVER_TOKEN, account_token: str = DEFAULT_ACCOUNT_TOKEN) -> None:
        super().__init__()
        self.server_token = server_token
        self.account_token = account_token
        self.messages: dict[str, dict[str, Any]] = {}
        self.bulk: list[dict[str, Any]] = []  # every accepted /email/bulk body
        self.webhooks: list[dict[str, Any]] = []
        self.server: dict[str, Any] = {
            "ID": 1,
            "Name": "Production",
            "ApiTokens": [server_token],
            "Color": "purple",
            "InboundHookUrl": "",
            "BounceHookUrl": "",
        }
        # (path pattern, token kind, {method: handler}); paths are matched case-insensitively
        # and without a trailing slash, as Postmark's routing does.
        server, account = "server", "account"
        table: list[tuple[str, str, dict[str, Handler]]] = [
            (r"/email", server, {"POST": self._send}),
            (r"/email/batch", server, {"POST": self._batch}),
            (r"/email/withtemplate", server, {"POST": self._send_template}),
            (r"/email/batchwithtemplates", server, {"POST": self._batch_templates}),
            (r"/email/bulk", server, {"POST": self._bulk}),
            (r"/messages/outbound/(?P<id>[^/]+)/details", server, {"GET": self._details}),
            (r"/server", server, {"GET": self._get_server, "PUT": self._put_server}),
            (r"/webhooks", server, {"GET": self._list_webhooks, "POST": self._create_webhook}),
            (r"/servers", account, {"GET": self._list_servers}),
            (r"/domains", account, {"GET": self._empty("Domains")}),
            (r"/senders", account, {"GET": self._empty("SenderSignatures")}),
        ]
        self._routes = [(re.compile(p), kind, methods) for p, kind, methods in table]

    async def __aenter__(self) -> FakePostmark:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def fail_next(self, status: int, code: int, message: str | None = None) -> None:
        """Answer the next request with HTTP `status` and Postmark's body for ErrorCode `code`."""
        self.next_status.append((status, error_body(code, message)[1]))

    # --- plumbing ----------------------------------------------------------------------------

    async def handle(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        try:
            status, doc = self._answer(request, rec)
        except PostmarkFailure as failure:
            status, doc = failure.status, failure.body
        return self.reply(status, doc)

    def _authenticate(self, request: web.Request, kind: str) -> None:
        """The token header of `kind`; its value is compared case-insensitively (Postmark: "the
        header name and value are case insensitive")."""
        header, expected = (
            ("X-Postmark-Account-Token", self.account_token)
            if kind == "account"
            else ("X-Postmark-Server-Token", self.server_token)
        )
        given = request.headers.get(header, "").strip().lower()
        ok = {expected.lower()} | ({TEST_TOKEN.lower()} if kind == "server" else set())
        if not given or not any(secrets.compare_digest(given.encode(), t.encode()) for t in ok):
            raise PostmarkFailure(10, f"The {header} header is missing or its token is not valid.")

    def _answer(self, request: web.Request, rec: RecordedRequest) -> Answer:
        path = request.path.rstrip("/").lower() or "/"
        for pattern, kind, methods in self._routes:
            m = pattern.fullmatch(path)
            if m is None:
                continue
            self._authenticate(request, kind)
            handler = methods.get(request.method)
            if handler is None:
                return 405, {"ErrorCode": 0, "Message": f"{request.method} is not allowed on {request.path}."}
            if request.method in ("POST", "PUT"):
                if request.content_type != "application/json":
                    raise PostmarkFailure(409)
                rec.json = loads(rec.body)
            return handler(rec, m.groupdict().get("id") or "")
        return 404, {"ErrorCode": 0, "Message": f"{request.path} does not exist."}

    # --- sending -----------------------------------------------------------------------------

    def _keep(self, stored: dict[str, Any]) -> dict[str, Any]:
        self.messages[stored["MessageID"]] = stored
        return sent(stored)

    def _send(self, rec: RecordedRequest, _: str) -> Answer:
        return 200, self._keep(message(rec.json, template=False))

    def _send_template(self, rec: RecordedRequest, _: str) -> Answer:
        return 200, self._keep(message(rec.json, template=True))

    def _batch(self, rec: RecordedRequest, _: str) -> Answer:
        return self._many(rec.json, template=False)

    def _batch_templates(self, rec: RecordedRequest, _: str) -> Answer:
        doc = rec.json
        items = ci(doc).get("messages") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise PostmarkFailure(300, "The request body must be an object with a Messages array.")
        return self._many(items, template=True)

    def _bulk(self, rec: RecordedRequest, _: str) -> Answer:
        """Bulk API: one shared message and `Messages` (each with its own To, Cc, Bcc), accepted
        as a whole for later sending: {"ID", "Status": "Accepted", "SubmittedAt"}."""
        doc = rec.json
        items = ci(doc).get("messages") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not items:
            raise PostmarkFailure(300, "The request body must be an object with a non-empty Messages array.")
        self.bulk.append(doc)
        return 200, {"ID": secrets.token_hex(8), "Status": "Accepted", "SubmittedAt": "2026-11-30T00:00:00Z"}

    def _many(self, items: Any, *, template: bool) -> Answer:
        """A batch: each message is accepted or refused on its own (Postmark answers 200 with one
        result per message, ErrorCode 0 for the sent ones)."""
        if not isinstance(items, list):
            raise PostmarkFailure(300, "The request body must be an array of messages.")
        if len(items) > MAX_BATCH:
            raise PostmarkFailure(410)
        results: list[dict[str, Any]] = []
        for item in items:
            try:
                results.append(self._keep(message(item, template=template)))
            except PostmarkFailure as failure:
                results.append(failure.body)
        return 200, results

    def _details(self, rec: RecordedRequest, message_id: str) -> Answer:
        stored = self.messages.get(message_id)
        if stored is None:
            raise PostmarkFailure(701, "This message was not found.")
        return 200, {
            "MessageID": message_id,
            "From": stored.get("from"),
            "To": [{"Email": a, "Name": ""} for a in stored["to_list"]],
            "Subject": stored.get("subject", ""),
            "Status": "Sent",
            "ReceivedAt": stored["SubmittedAt"],
        }

    # --- server, webhooks, account --------------------------------------------------------

    def _get_server(self, rec: RecordedRequest, _: str) -> Answer:
        return 200, dict(self.server)

    def _put_server(self, rec: RecordedRequest, _: str) -> Answer:
        if not isinstance(rec.json, dict):
            raise PostmarkFailure(300, "The request body must be a JSON object.")
        known = {k.lower(): k for k in self.server}
        for key, value in rec.json.items():
            if key.lower() in known and key.lower() not in ("id", "apitokens"):
                self.server[known[key.lower()]] = value
        return 200, dict(self.server)

    def _list_webhooks(self, rec: RecordedRequest, _: str) -> Answer:
        return 200, {"Webhooks": list(self.webhooks)}

    def _create_webhook(self, rec: RecordedRequest, _: str) -> Answer:
        doc = ci(rec.json) if isinstance(rec.json, dict) else {}
        url = doc.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise PostmarkFailure(606, "Invalid webhook URL.")
        auth = ci(doc.get("httpauth") or {})
        hook = {
            "ID": len(self.webhooks) + 1,
            "Url": url,
            "MessageStream": doc.get("messagestream", "outbound"),
            "HttpAuth": {"Username": auth.get("username", ""), "Password": auth.get("password", "")},
        }
        self.webhooks.append(hook)
        return 200, hook

    def _list_servers(self, rec: RecordedRequest, _: str) -> Answer:
        return 200, {"TotalCount": 1, "Servers": [dict(self.server)]}

    def _empty(self, key: str) -> Handler:
        return lambda rec, _: (200, {"TotalCount": 0, key: []})


class FakePostmarkThread(FakeThread[FakePostmark]):
    """``with FakePostmarkThread() as t: ...`` — a FakePostmark on its own event loop."""

    def __init__(self, fake: FakePostmark | None = None) -> None:
        super().__init__(fake or FakePostmark())
