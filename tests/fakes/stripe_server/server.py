"""The fake Stripe server: routes, auth, Rack-style parameters, idempotency keys, forced answers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from tests.fakes.base import FakeThread, RecordedRequest
from tests.fakes.reference_parsers import RackError, rack_parse, stripe_params, to_form_params
from tests.fakes.stripe_server.accounts import AccountEndpoints
from tests.fakes.stripe_server.intents import IntentEndpoints
from tests.fakes.stripe_server.params import (
    DEFAULT_SECRET,
    Answer,
    Params,
    StripeError,
    _dumps,
    _rand,
    mask_key,
)

Handler = Callable[[Params, str], Answer]


class FakeStripe(IntentEndpoints, AccountEndpoints):
    """A fake Stripe API server. ``await start()`` binds 127.0.0.1 on a free port.

    Test controls (``reset()`` puts them back, keeping objects and idempotency records):

    - ``delay_seconds``: sleep this long before answering any request.
    - ``hang``: an ``asyncio.Event`` or ``threading.Event``; while it is set here and not yet
      set, every request waits for it before being answered (simulates a call in flight).
    - ``next_status``: queue of ``(status, json_body)``; each request pops the first one and is
      answered with it instead (after recording it and before auth). Forced answers create no
      objects and are not stored under idempotency keys.
    """

    name = "fake-stripe"

    def __init__(self, *, secret: str = DEFAULT_SECRET) -> None:
        super().__init__(secret=secret)
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        for method, pattern, handler in (
            ("POST", r"/v1/customers", self._create_customer),
            ("GET", r"/v1/customers", self._list_customers),
            ("GET", r"/v1/customers/(?P<id>[^/]+)", self._get_customer),
            ("POST", r"/v1/charges", self._create_charge),
            ("GET", r"/v1/charges", self._list_charges),
            ("GET", r"/v1/charges/(?P<id>[^/]+)", self._get_charge),
            ("POST", r"/v1/charges/(?P<id>[^/]+)/capture", self._capture_charge),
            ("POST", r"/v1/charges/(?P<id>[^/]+)/refund", self._refund_charge_legacy),
            ("POST", r"/v1/payment_intents", self._create_payment_intent),
            ("GET", r"/v1/payment_intents", self._list_payment_intents),
            ("GET", r"/v1/payment_intents/(?P<id>[^/]+)", self._get_payment_intent),
            ("POST", r"/v1/payment_intents/(?P<id>[^/]+)/confirm", self._confirm_payment_intent),
            ("POST", r"/v1/payment_intents/(?P<id>[^/]+)/capture", self._capture_payment_intent),
            ("POST", r"/v1/payment_intents/(?P<id>[^/]+)/cancel", self._cancel_payment_intent),
            ("POST", r"/v1/payment_intents/(?P<id>[^/]+)", self._update_payment_intent),
            ("POST", r"/v1/refunds", self._create_refund),
            ("GET", r"/v1/refunds", self._list_refunds),
            ("GET", r"/v1/refunds/(?P<id>[^/]+)", self._get_refund),
            ("POST", r"/v1/payouts", self._create_payout),
            ("GET", r"/v1/payouts/(?P<id>[^/]+)", self._get_payout),
            ("POST", r"/v1/transfers", self._create_transfer),
            ("GET", r"/v1/transfers/(?P<id>[^/]+)", self._get_transfer),
            ("GET", r"/v1/balance", self._get_balance),
            ("POST", r"/v1/webhook_endpoints", self._create_webhook_endpoint),
            ("GET", r"/v1/webhook_endpoints", self._list_webhook_endpoints),
        ):
            self._routes.append((method, re.compile(pattern), handler))

    # --- lifecycle (FakeServer) --------------------------------------------------------------

    async def __aenter__(self) -> FakeStripe:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, request: web.Request) -> web.Response:
        return await self._handle(request)

    # --- request handling ------------------------------------------------------------------

    async def _wait(self) -> None:
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds)
        hang = self.hang
        if hang is not None:
            # polling works for asyncio.Event and threading.Event, set from any thread
            while not hang.is_set():
                await asyncio.sleep(0.005)

    def _reply(
        self, status: int, body: bytes, request: web.Request, extra: dict[str, str] | None = None
    ) -> web.Response:
        headers = {
            "Request-Id": "req_" + _rand(),
            "Stripe-Version": request.headers.get("Stripe-Version", "2020-08-27"),
            "Cache-Control": "no-cache, no-store",
        }
        key = request.headers.get("Idempotency-Key")
        if key and request.method == "POST":
            headers["Idempotency-Key"] = key
        headers.update(extra or {})
        return web.Response(status=status, body=body, headers=headers, content_type="application/json")

    async def _handle(self, request: web.Request) -> web.Response:
        """Record the request, then answer it: a forced answer, a 401, a 400 for parameters Rack
        refuses, or the endpoint's answer (through the idempotency key on a POST that has one)."""
        body = await request.read()
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True) if body else {}
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=request.query_string,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                form=form,
            )
        )

        if self.next_status:
            answer = self.next_status.pop(0)
            await self._wait()
            return self._reply(answer[0], _dumps(answer[1]), request, answer[2] if len(answer) == 3 else None)

        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.secret}":
            await self._wait()
            return self._reply(401, _dumps(_unauthorized(auth)), request)

        # Parameters as Stripe reads them: Rack-style (see tests/fakes/reference_parsers.py), the
        # body merged over the query on POST; a structural conflict is Stripe's 400.
        try:
            tree = (
                stripe_params(request.rel_url.raw_query_string, body.decode("utf-8", "replace"))
                if request.method == "POST"
                else rack_parse(request.rel_url.raw_query_string)
            )
        except RackError as exc:
            await self._wait()
            error = {"error": {"type": "invalid_request_error", "message": f"Invalid request parameters: {exc}"}}
            return self._reply(400, _dumps(error), request)
        params = to_form_params(tree)
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if not key:
            await self._wait()
            status, payload, _ = self._dispatch(request.method, request.path, params)
            return self._reply(status, payload, request)
        return await self._idempotent(request, key, params)

    async def _idempotent(self, request: web.Request, key: str, params: Params) -> web.Response:
        """A POST under an idempotency key: the first answer replayed for the same parameters, 400
        for other parameters, 409 while the first request is still running."""
        fingerprint = (request.method, request.path, sorted((k, v) for k, v in params.items()))
        if key in self.idempotency:
            first, status, payload, original = self.idempotency[key]
            await self._wait()
            if first != fingerprint:
                error = {
                    "error": {
                        "type": "idempotency_error",
                        "message": (
                            "Keys for idempotent requests can only be used with the same parameters "
                            f"they were first used with. Try using a key other than '{key}' if you "
                            "meant to execute a different request."
                        ),
                    }
                }
                return self._reply(400, _dumps(error), request)
            replay = {"Idempotent-Replayed": "true", "Original-Request": original}
            return self._reply(status, payload, request, replay)
        if key in self._in_flight:
            await self._wait()
            error = {
                "error": {
                    "type": "idempotency_error",
                    "code": "idempotency_key_in_use",
                    "message": (
                        "There is currently another in-progress request using this Idempotent Key "
                        "(that probably means you submitted twice, and the other request is still "
                        f"going through): {key}. Please try again later."
                    ),
                }
            }
            return self._reply(409, _dumps(error), request)

        self._in_flight.add(key)
        try:
            await self._wait()
            status, payload, cache = self._dispatch(request.method, request.path, params)
            response = self._reply(status, payload, request)
            if cache:
                self.idempotency[key] = (fingerprint, status, payload, response.headers["Request-Id"])
            return response
        finally:
            self._in_flight.discard(key)

    def _dispatch(self, method: str, path: str, params: Params) -> tuple[int, bytes, bool]:
        """Route and run a request synchronously: (status, JSON body, keep under idempotency key)."""
        for route_method, pattern, handler in self._routes:
            m = pattern.fullmatch(path)
            if m and route_method == method:
                try:
                    status, answer = handler(params, m.groupdict().get("id") or "")
                except StripeError as exc:
                    return exc.status, _dumps({"error": exc.error}), exc.cache
                return status, _dumps(answer), True
        message = (
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/."
        )
        return 404, _dumps({"error": {"type": "invalid_request_error", "message": message}}), False


def _unauthorized(auth: str) -> dict[str, Any]:
    """Stripe's 401 body for a missing or wrong API key (the key masked as Stripe masks it)."""
    if auth.startswith("Bearer ") and auth[7:].strip():
        message = f"Invalid API Key provided: {mask_key(auth[7:].strip())}"
    else:
        message = (
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
            "or we can help at https://support.stripe.com/."
        )
    return {"error": {"type": "invalid_request_error", "message": message}}


class FakeStripeThread(FakeThread[FakeStripe]):
    """Runs a :class:`FakeStripe` in its own event loop on a background thread.

    ``with FakeStripeThread() as t: ...`` — ``t.fake`` is the server, ``t.base_url`` its URL.
    ``fake.hang`` may be a ``threading.Event`` set from the test thread; ``hold()`` /
    ``release()`` do that for you.
    """

    def __init__(self, *, secret: str = DEFAULT_SECRET) -> None:
        super().__init__(FakeStripe(secret=secret))
