"""A minimal, fast, Stripe- and Twilio-shaped fake upstream for the Keybrake benchmark.

A raw ASGI app (no framework) served by uvicorn with uvloop + httptools, run as its own
process so it never shares an event loop with the load generator or with Keybrake.

    FAKE_UPSTREAM_SECRET=sk_test_xxxxxxxx \
    FAKE_TWILIO_ACCOUNT_SID=AC<32 hex> FAKE_TWILIO_AUTH_TOKEN=<32 hex> \
        python bench/fake_upstream.py --port 8111

The two FAKE_TWILIO_* variables go together; without them the Twilio route is off (404).

Routes:
    POST /v1/charges    -> 200 Stripe-shaped charge JSON (with a Request-Id header) when
                           `Authorization: Bearer <FAKE_UPSTREAM_SECRET>`, else a 401 Stripe
                           error
    POST /2010-04-01/Accounts/{sid}/Messages.json
                        -> 201 Twilio-shaped Message JSON (price null, a Twilio-Request-Id
                           header) when HTTP Basic is FAKE_TWILIO_ACCOUNT_SID:FAKE_TWILIO_AUTH_TOKEN
                           and {sid} is that account, else Twilio's 401 error 20003
                           ({"code": 20003, "message": "Authenticate", "more_info": …,
                           "status": 401})
    GET  /healthz       -> 200 {"status": "ok"}
    GET  /_bench/stats  -> 200 counters {"charges": n, "charges_direct": n, "messages": n,
                           "messages_direct": n, "unauthorized": n, "messages_unauthorized": n,
                           "not_found": n}; "unauthorized" counts both vendors' 401s, "*_direct"
                           count requests marked with `X-Bench-Path: direct` (the bench's direct
                           path), so the rest are the requests Keybrake forwarded
    anything else       -> 404 Stripe-shaped error

It binds to loopback only.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_TWILIO_ID = b"twilio-request-id"
_JSON_HEADERS = [(b"content-type", b"application/json"), (b"stripe-version", b"2024-06-20")]


class FakeStripe:
    """Raw ASGI app. Everything per request is O(body) and allocation-light."""

    def __init__(self, secret: str, twilio_sid: str = "", twilio_token: str = "") -> None:
        if not secret:
            raise ValueError("a secret is required")
        self.expected_auth = b"Bearer " + secret.encode()
        self.twilio_sid = twilio_sid
        self.twilio_auth = b"Basic " + base64.b64encode(f"{twilio_sid}:{twilio_token}".encode())
        self.messages_path = f"/2010-04-01/Accounts/{twilio_sid}/Messages.json"
        self.ids = itertools.count(1)
        self.stats = {
            "charges": 0,
            "charges_direct": 0,
            "messages": 0,
            "messages_direct": 0,
            "unauthorized": 0,
            "messages_unauthorized": 0,
            "not_found": 0,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        method: str = scope["method"]
        path: str = scope["path"]
        if method == "POST" and path == "/v1/charges":
            await self._charge(scope, body, send)
        elif method == "POST" and self.twilio_sid and path.startswith("/2010-04-01/Accounts/"):
            await self._message(scope, path, body, send)
        elif method == "GET" and path == "/healthz":
            await _respond(send, 200, b'{"status":"ok"}')
        elif method == "GET" and path == "/_bench/stats":
            await _respond(send, 200, json.dumps(self.stats).encode())
        else:
            self.stats["not_found"] += 1
            msg = f"Unrecognized request URL ({method}: {path})."
            await _respond(send, 404, _error("invalid_request_error", msg))

    async def _charge(self, scope: Scope, body: bytes, send: Send) -> None:
        auth, direct = _auth_and_mark(scope)
        n = next(self.ids)
        request_id = f"req_bench{n:014x}".encode()
        if auth != self.expected_auth:
            self.stats["unauthorized"] += 1
            msg = "Invalid API Key provided."
            await _respond(send, 401, _error("invalid_request_error", msg), request_id)
            return
        form = dict(parse_qsl(body.decode("latin-1")))
        try:
            amount = int(form.get("amount", "100"))
        except ValueError:
            amount = 100
        charge = {
            "id": f"ch_bench{n:016x}",
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "balance_transaction": f"txn_bench{n:016x}",
            "captured": True,
            "created": int(time.time()),
            "currency": form.get("currency", "usd"),
            "customer": form.get("customer"),
            "description": form.get("description"),
            "livemode": False,
            "metadata": {},
            "paid": True,
            "refunded": False,
            "status": "succeeded",
        }
        self.stats["charges"] += 1
        if direct:
            self.stats["charges_direct"] += 1
        await _respond(send, 200, json.dumps(charge).encode(), request_id)

    async def _message(self, scope: Scope, path: str, body: bytes, send: Send) -> None:
        auth, direct = _auth_and_mark(scope)
        n = next(self.ids)
        request_id = f"RQ{n:032x}".encode()
        if auth != self.twilio_auth or path != self.messages_path:  # wrong credentials or another account
            self.stats["unauthorized"] += 1
            self.stats["messages_unauthorized"] += 1
            doc = {"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003"}
            await _respond(send, 401, json.dumps({**doc, "status": 401}).encode(), request_id, _TWILIO_ID)
            return
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        sid = f"SM{n:032x}"
        now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
        message = {
            "account_sid": self.twilio_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{self.messages_path[:-5]}/{sid}/Media.json"},
            "to": form.get("To"),
            "uri": f"{self.messages_path[:-5]}/{sid}.json",
        }
        self.stats["messages"] += 1
        if direct:
            self.stats["messages_direct"] += 1
        await _respond(send, 201, json.dumps(message).encode(), request_id, _TWILIO_ID)

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def _auth_and_mark(scope: Scope) -> tuple[bytes, bool]:
    """The Authorization header, and whether the bench's direct path marked the request."""
    auth, direct = b"", False
    for name, value in scope["headers"]:
        if name == b"authorization":
            auth = value
        elif name == b"x-bench-path":
            direct = value == b"direct"
    return auth, direct


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    for _ in range(10_000):  # bounded: a bench body is one chunk
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _error(kind: str, message: str) -> bytes:
    return json.dumps({"error": {"type": kind, "message": message}}).encode()


async def _respond(
    send: Send, status: int, body: bytes, request_id: bytes | None = None, id_header: bytes = b"request-id"
) -> None:
    base = _JSON_HEADERS[:1] if id_header == _TWILIO_ID else _JSON_HEADERS  # no Stripe-Version on Twilio answers
    headers = [*base, (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((id_header, request_id))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "::1"])
    args = parser.parse_args()
    secret = os.environ.get("FAKE_UPSTREAM_SECRET", "")
    if not secret:
        parser.error("set FAKE_UPSTREAM_SECRET to the secret this upstream accepts")
    twilio_sid = os.environ.get("FAKE_TWILIO_ACCOUNT_SID", "")
    twilio_token = os.environ.get("FAKE_TWILIO_AUTH_TOKEN", "")
    if bool(twilio_sid) != bool(twilio_token):
        parser.error("set both FAKE_TWILIO_ACCOUNT_SID and FAKE_TWILIO_AUTH_TOKEN, or neither")

    import uvicorn

    uvicorn.run(
        FakeStripe(secret, twilio_sid, twilio_token),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
