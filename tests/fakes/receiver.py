"""A loopback HTTP receiver for alert deliveries (webhook or Slack-shaped): records, answers 200."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer, FakeThread, RecordedRequest


class Receiver(FakeServer):
    """Answers 200 `ok` (Slack's answer) unless told otherwise with ``next_status``."""

    name = "fake-receiver"

    def record(self, request: web.Request, body: bytes) -> RecordedRequest:
        rec = super().record(request, body)
        rec.json = json.loads(body) if body else None
        return rec

    def reply(self, status: int, doc: Any) -> web.Response:
        return web.json_response(doc, status=status)

    async def handle(self, request: web.Request, recorded: RecordedRequest) -> web.Response:
        return web.Response(text="ok")

    def fail_next(self, times: int, status: int = 503) -> None:
        self.next_status.extend([(status, {"error": "receiver down"})] * times)


class ReceiverThread(FakeThread[Receiver]):
    def __init__(self) -> None:
        super().__init__(Receiver())
