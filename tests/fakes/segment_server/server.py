"""The fake Segment server: write-key auth, the Tracking API's limits, and the messages accepted."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeThread, JsonFakeServer, RecordedRequest
from tests.fakes.segment_server.wire import (
    DEFAULT_WRITE_KEY,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    TYPES,
    Answer,
    SegmentFailure,
    error_body,
    problem,
)

# The documented names, /v1/import (the batch endpoint's older name) and the one-letter names
# analytics.js posts to (/v1/t, /v1/i, …, /v1/b for a batch).
ENDPOINTS = {
    **{f"/v1/{t}": t for t in (*TYPES, "batch")},
    **{f"/v1/{t[0]}": t for t in TYPES},
    "/v1/import": "batch",
    "/v1/b": "batch",
}


class FakeSegment(JsonFakeServer):
    """A fake Segment HTTP Tracking API. ``await start()`` binds 127.0.0.1 on a free port.

    What it keeps (``reset()`` clears the test controls only):

    - ``events``: every message accepted, as sent plus ``type`` (from the path for single calls).
    - ``dropped``: ``(reason, message)`` for every message answered 200 but not accepted (no
      identity, a track without ``event``, an unknown write key, a repeated ``messageId``).
    - ``requests``: every request as it arrived; ``username``/``password`` hold the Basic
      credentials and ``json`` the parsed body (``body`` is
      decompressed when ``Content-Encoding: gzip``: aiohttp undoes it).

    Test controls as in ``tests.fakes.base.FakeServer`` (``delay_seconds``, ``hang``,
    ``next_status``; ``fail_next(status, message)`` queues an error in the shape below).
    """

    name = "fake-segment"

    def __init__(self, *, write_key: str = DEFAULT_WRITE_KEY) -> None:
        super().__init__()
        self.write_key = write_key
        self.events: list[dict[str, Any]] = []
        self.dropped: list[tuple[str, Any]] = []
        self._message_ids: set[str] = set()

    async def __aenter__(self) -> FakeSegment:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def fail_next(self, status: int, message: str = "forced failure", code: str = "invalid_request") -> None:
        """Answer the next request with ``status`` and ``{"code", "message"}``."""
        self.next_status.append((status, error_body(message, code)))

    def record(self, request: web.Request, body: bytes) -> RecordedRequest:
        rec = super().record(request, body)
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
                rec.username, rec.password = user, password
            except (binascii.Error, UnicodeDecodeError):
                pass
        return rec  # rec.json: aiohttp has already undone Content-Encoding: gzip

    async def handle(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        try:
            status, doc = self._answer(request, rec)
        except SegmentFailure as failure:
            status, doc = failure.answer
        return self.reply(status, doc)

    def _answer(self, request: web.Request, rec: RecordedRequest) -> Answer:
        endpoint = ENDPOINTS.get(request.path)
        if endpoint is None:
            raise SegmentFailure(f"{request.path} is not a Tracking API endpoint.", 404, "not_found")
        if request.method != "POST":
            raise SegmentFailure(f"{request.method} is not allowed on {request.path}.", 405, "method_not_allowed")
        if request.content_type != "application/json":
            raise SegmentFailure("The Content-Type header must be application/json.")
        doc = self._document(request, rec)
        messages = self._messages(endpoint, doc)
        known = self._authenticated(rec, doc)
        for msg_type, message in messages:
            reason = problem(message, msg_type) if known else "write key unknown"
            if reason is None and message.get("messageId") in self._message_ids:
                reason = "duplicate messageId"
            if reason is not None:
                self.dropped.append((reason, message))
                continue
            if isinstance(message.get("messageId"), str):
                self._message_ids.add(message["messageId"])
            self.events.append({**message, "type": msg_type})
        return 200, {"success": True}

    def _document(self, request: web.Request, rec: RecordedRequest) -> dict[str, Any]:
        raw = rec.body  # decompressed
        limit = MAX_BATCH_BYTES if ENDPOINTS.get(request.path) == "batch" else MAX_MESSAGE_BYTES
        if len(raw) > limit:
            raise SegmentFailure(f"The request is {len(raw)} bytes; the limit is {limit} bytes.")
        if not isinstance(rec.json, dict):
            raise SegmentFailure("The request body must be a JSON object.")
        return rec.json

    def _messages(self, endpoint: str, doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if endpoint != "batch":
            return [(endpoint, doc)]
        batch = doc.get("batch")
        if not isinstance(batch, list):
            raise SegmentFailure("The batch request needs a `batch` array.")
        if len(batch) > MAX_BATCH_MESSAGES:
            raise SegmentFailure(f"A batch holds at most {MAX_BATCH_MESSAGES} events; this one has {len(batch)}.")
        out: list[tuple[str, dict[str, Any]]] = []
        for message in batch:
            if not isinstance(message, dict):
                raise SegmentFailure("Each message in `batch` must be a JSON object.")
            if len(json.dumps(message, separators=(",", ":")).encode()) > MAX_MESSAGE_BYTES:
                raise SegmentFailure(f"A message in the batch is larger than {MAX_MESSAGE_BYTES} bytes.")
            out.append((str(message.get("type")), message))
        return out

    def _authenticated(self, rec: RecordedRequest, doc: dict[str, Any]) -> bool:
        """The write key from Basic auth (user) or, failing that, the body's ``writeKey``."""
        key = rec.username if rec.username else doc.get("writeKey")
        return isinstance(key, str) and secrets.compare_digest(key.encode(), self.write_key.encode())


class FakeSegmentThread(FakeThread[FakeSegment]):
    """Runs a :class:`FakeSegment` in its own event loop on a background thread.

    ``with FakeSegmentThread() as t: ...`` — ``t.fake`` is the server, ``t.base_url`` its URL.
    """

    def __init__(self, *, write_key: str = DEFAULT_WRITE_KEY) -> None:
        super().__init__(FakeSegment(write_key=write_key))
