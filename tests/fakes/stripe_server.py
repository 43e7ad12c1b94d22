"""A small in-memory fake of the Stripe API (v1) on loopback, for tests.

It speaks the wire format stripe-python uses (form-encoded bodies with bracket syntax, JSON
answers) and answers in the shapes of Stripe's OpenAPI spec (API version 2020-08-27, see
stripe/openapi `openapi/spec3.json`). Only the fields tests care about, plus the ones the
spec marks as required, are filled in.

Endpoints: customers (create, retrieve, list), charges (create, retrieve, list, capture),
payment_intents (create, retrieve, list, confirm, capture), refunds (create, retrieve, list),
payouts (create, retrieve), transfers (create, retrieve) and balance. Anything else is answered
with Stripe's "Unrecognized request URL" 404.

Magic values, as in Stripe test mode: a `source` or `payment_method` of `tok_chargeDeclined` /
`pm_card_chargeDeclined` (or `...InsufficientFunds`) declines with a 402 card_error;
`pm_card_authenticationRequired` leaves a PaymentIntent in `requires_action`.

Parameters are read as Stripe reads them, Rack-style (tests/fakes/reference_parsers.py): a
plain key overwrites (`amount[]=100&amount=99999` is an amount of 99999), `x[]` appends, `x[a]`
nests, the body is merged over the query string on POST (GET reads only the query), and a
structural conflict (`amount=1&amount[]=2`) is a 400 `invalid_request_error`.

Deliberately looser than Stripe: customers, sources and destinations are not checked for
existence, and unknown parameters are accepted.

Usage, async::

    async with FakeStripe() as fake:
        ...fake.base_url...

or from synchronous tests::

    with FakeStripeThread() as t:
        ...t.base_url, t.fake.requests...
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import string
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from tests.fakes.base import FakeServer, FakeThread, RecordedRequest
from tests.fakes.reference_parsers import RackError, rack_parse, stripe_params, to_form_params

DEFAULT_SECRET = "sk_test_fake_secret_1234567890"

_ALNUM = string.ascii_letters + string.digits
_DOCS = "https://stripe.com/docs/error-codes/"

Params = dict[str, list[str]]
Answer = tuple[int, dict[str, Any]]


def _rand(n: int = 14) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def new_id(prefix: str) -> str:
    """A Stripe-looking object id: ``prefix`` + 14 random letters and digits."""
    return f"{prefix}_{_rand()}"


class StripeError(Exception):
    """Raised by handlers; becomes ``{"error": {...}}`` with ``status``.

    ``cache=False`` marks request-validation errors, whose results Stripe does not keep under the
    idempotency key (the endpoint never started executing).
    """

    def __init__(self, status: int, error: dict[str, Any], *, cache: bool = True) -> None:
        super().__init__(error.get("message", ""))
        self.status = status
        self.error = error
        self.cache = cache


def _invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    err: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code:
        err["code"] = code
        err["doc_url"] = _DOCS + code.replace("_", "-")
    if param:
        err["param"] = param
    # validation errors are not kept under the idempotency key; business errors are
    return StripeError(400, err, cache=code is not None and not code.startswith("parameter_"))


def _missing_param(param: str) -> StripeError:
    return _invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")


def _no_such(kind: str, object_id: str, param: str) -> StripeError:
    code = "resource_missing"
    return StripeError(
        404,
        {
            "type": "invalid_request_error",
            "code": code,
            "doc_url": _DOCS + "resource-missing",
            "param": param,
            "message": f"No such {kind}: '{object_id}'",
        },
    )


def mask_key(key: str) -> str:
    """Mask an API key the way Stripe does in error messages: prefix, asterisks, last four."""
    prefix = ""
    for p in ("sk_test_", "sk_live_", "rk_test_", "rk_live_", "pk_test_", "pk_live_"):
        if key.startswith(p):
            prefix = p
            break
    rest = key[len(prefix) :]
    if len(rest) <= 4:
        return prefix + "*" * len(rest)
    return prefix + "*" * (len(rest) - 4) + rest[-4:]


# --- form parameters (Stripe bracket syntax) -------------------------------------------------


def _one(p: Params, name: str) -> str | None:
    values = p.get(name)
    return values[-1] if values else None


def _str(p: Params, name: str, *, required: bool = False) -> str | None:
    value = _one(p, name)
    if value is None or value == "":
        if required:
            raise _missing_param(name)
        return None
    return value


def _int(p: Params, name: str, *, required: bool = False) -> int | None:
    value = _str(p, name, required=required)
    if value is None:
        return None
    if not re.fullmatch(r"-?\d+", value):
        raise _invalid(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer")
    return int(value)


def _bool(p: Params, name: str, default: bool) -> bool:
    value = _str(p, name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise _invalid(f"Invalid boolean: {value}", param=name)
    return value == "true"


def _hash(p: Params, name: str) -> dict[str, str]:
    """``name[key]=value`` pairs as a dict (``metadata[order]=42`` -> ``{"order": "42"}``)."""
    out: dict[str, str] = {}
    for key, values in p.items():
        m = re.fullmatch(re.escape(name) + r"\[([^\[\]]+)\]", key)
        if m:
            out[m.group(1)] = values[-1]
    return out


def _array(p: Params, name: str) -> list[str]:
    """``name[]=a&name[]=b`` or ``name[0]=a&name[1]=b`` as a list."""
    if f"{name}[]" in p:
        return list(p[f"{name}[]"])
    indexed = []
    for key, values in p.items():
        m = re.fullmatch(re.escape(name) + r"\[(\d+)\]", key)
        if m:
            indexed.append((int(m.group(1)), values[-1]))
    return [v for _, v in sorted(indexed)]


def _metadata(p: Params, current: dict[str, str] | None = None) -> dict[str, str]:
    md = dict(current or {})
    if _one(p, "metadata") == "":  # metadata= unsets everything
        md = {}
    for k, v in _hash(p, "metadata").items():
        if v == "":
            md.pop(k, None)
        else:
            md[k] = v
    return md


def _currency(p: Params) -> str:
    value = _str(p, "currency", required=True)
    assert value is not None
    return value.lower()


def _amount(p: Params, name: str = "amount", *, required: bool = True) -> int | None:
    value = _int(p, name, required=required)
    if value is not None and value < 1:
        raise _invalid("This value must be greater than or equal to 1.", param=name, code="parameter_invalid_integer")
    return value


# --- test-mode magic values ------------------------------------------------------------------

_DECLINES = {
    "chargeDeclined": ("generic_decline", "Your card was declined."),
    "chargeDeclinedInsufficientFunds": ("insufficient_funds", "Your card has insufficient funds."),
}


def _decline_for(instrument: str | None) -> tuple[str, str] | None:
    if not instrument:
        return None
    for prefix in ("tok_", "pm_card_"):
        if instrument.startswith(prefix):
            return _DECLINES.get(instrument[len(prefix) :])
    return None


def _needs_authentication(payment_method: str | None) -> bool:
    return payment_method in ("pm_card_authenticationRequired", "pm_card_threeDSecure2Required")


def _card_error(decline: tuple[str, str], **extra: Any) -> dict[str, Any]:
    decline_code, message = decline
    return {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": decline_code,
        "doc_url": _DOCS + "card-declined",
        "message": message,
        **extra,
    }


def _list(url: str, data: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


# --- the server ------------------------------------------------------------------------------

Handler = Callable[[Params, str], Answer]


class FakeStripe(FakeServer):
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
        super().__init__()
        self.secret = secret
        # objects, by id
        self.customers: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.payouts: dict[str, dict[str, Any]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        # idempotency key -> (fingerprint, status, body, original request id)
        self.idempotency: dict[str, tuple[tuple[Any, ...], int, bytes, str]] = {}
        self.webhook_endpoints: dict[str, dict[str, Any]] = {}
        self._in_flight: set[str] = set()
        self._counter = 0
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
            if auth.startswith("Bearer ") and auth[7:].strip():
                message = f"Invalid API Key provided: {mask_key(auth[7:].strip())}"
            else:
                message = (
                    "You did not provide an API key. You need to provide your API key in the "
                    "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                    "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
                    "or we can help at https://support.stripe.com/."
                )
            error = {"error": {"type": "invalid_request_error", "message": message}}
            return self._reply(401, _dumps(error), request)

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

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _now() -> int:
        return int(time.time())

    @staticmethod
    def _page(url: str, objects: list[dict[str, Any]], p: Params) -> Answer:
        """Newest first, with loose ``limit`` / ``starting_after`` / ``ending_before``."""
        items = sorted(objects, key=lambda o: (o["created"], o["_seq"]), reverse=True)
        after, before = _str(p, "starting_after"), _str(p, "ending_before")
        ids = [o["id"] for o in items]
        if after in ids:
            items = items[ids.index(after) + 1 :]
        elif before in ids:
            items = items[: ids.index(before)]
        limit = _int(p, "limit") or 10
        limit = max(1, min(limit, 100))
        page = items[:limit]
        return 200, _list(url, [_public(o) for o in page], has_more=len(items) > limit)

    def _seq(self) -> int:
        self._counter += 1
        return self._counter

    # --- webhook endpoints (guarded by Keybrake; `secret` is only returned at creation) --------

    def _create_webhook_endpoint(self, p: Params, _: str) -> Answer:
        we: dict[str, Any] = {
            "id": new_id("we"),
            "object": "webhook_endpoint",
            "api_version": None,
            "application": None,
            "created": self._now(),
            "description": _str(p, "description"),
            "enabled_events": _array(p, "enabled_events"),
            "livemode": False,
            "metadata": _metadata(p),
            "status": "enabled",
            "url": _str(p, "url", required=True),
            "_seq": self._seq(),
        }
        self.webhook_endpoints[we["id"]] = we
        return 200, _public({**we, "secret": "whsec_" + _rand(32)})

    def _list_webhook_endpoints(self, p: Params, _: str) -> Answer:
        return self._page("/v1/webhook_endpoints", list(self.webhook_endpoints.values()), p)

    # --- customers -------------------------------------------------------------------------

    def _create_customer(self, p: Params, _: str) -> Answer:
        cus: dict[str, Any] = {
            "id": new_id("cus"),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": self._now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": _str(p, "description"),
            "discount": None,
            "email": _str(p, "email"),
            "invoice_prefix": "".join(secrets.choice(string.ascii_uppercase) for _ in range(8)),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": _str(p, "payment_method"),
                "footer": None,
            },
            "livemode": False,
            "metadata": _metadata(p),
            "name": _str(p, "name"),
            "next_invoice_sequence": 1,
            "phone": _str(p, "phone"),
            "preferred_locales": _array(p, "preferred_locales"),
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
            "_seq": self._seq(),
        }
        self.customers[cus["id"]] = cus
        return 200, _public(cus)

    def _get_customer(self, _: Params, cus_id: str) -> Answer:
        if cus_id not in self.customers:
            raise _no_such("customer", cus_id, "id")
        return 200, _public(self.customers[cus_id])

    def _list_customers(self, p: Params, _: str) -> Answer:
        items = list(self.customers.values())
        email = _str(p, "email")
        if email is not None:
            items = [c for c in items if (c["email"] or "").lower() == email.lower()]
        return self._page("/v1/customers", items, p)

    # --- charges ---------------------------------------------------------------------------

    def _new_charge(
        self,
        *,
        amount: int,
        currency: str,
        customer: str | None,
        capture: bool,
        payment_method: str | None,
        payment_intent: str | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        failed: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        ch_id = new_id("ch")
        outcome: dict[str, str | None]
        if failed:
            outcome = {
                "network_status": "declined_by_network",
                "reason": failed[0],
                "risk_level": "normal",
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined",
            }
        else:
            outcome = {
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            }
        ch = {
            "id": ch_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount if capture and not failed else 0,
            "amount_refunded": 0,
            "balance_transaction": None if failed or not capture else new_id("txn"),
            "billing_details": {
                "address": {
                    "city": None,
                    "country": None,
                    "line1": None,
                    "line2": None,
                    "postal_code": None,
                    "state": None,
                },
                "email": None,
                "name": None,
                "phone": None,
            },
            "captured": bool(capture and not failed),
            "created": self._now(),
            "currency": currency,
            "customer": customer,
            "description": description,
            "disputed": False,
            "failure_code": "card_declined" if failed else None,
            "failure_message": failed[1] if failed else None,
            "livemode": False,
            "metadata": metadata or {},
            "outcome": outcome,
            "paid": not failed,
            "payment_intent": payment_intent,
            "payment_method": payment_method or new_id("card"),
            "receipt_url": None,
            "refunded": False,
            "refunds": _list(f"/v1/charges/{ch_id}/refunds", []),
            "status": "failed" if failed else "succeeded",
            "_seq": self._seq(),
        }
        self.charges[ch_id] = ch
        return ch

    def _create_charge(self, p: Params, _: str) -> Answer:
        amount = _amount(p)
        currency = _currency(p)
        assert amount is not None
        capture = _bool(p, "capture", True)
        instrument = _str(p, "source") or _str(p, "payment_method")
        decline = _decline_for(instrument)
        ch = self._new_charge(
            amount=amount,
            currency=currency,
            customer=_str(p, "customer"),
            capture=capture,
            payment_method=_str(p, "payment_method"),
            description=_str(p, "description"),
            metadata=_metadata(p),
            failed=decline,
        )
        if decline:
            raise StripeError(402, _card_error(decline, charge=ch["id"]))
        return 200, _public(ch)

    def _charge(self, ch_id: str, param: str = "id") -> dict[str, Any]:
        if ch_id not in self.charges:
            raise _no_such("charge", ch_id, param)
        return self.charges[ch_id]

    def _get_charge(self, _: Params, ch_id: str) -> Answer:
        return 200, _public(self._charge(ch_id))

    def _list_charges(self, p: Params, _: str) -> Answer:
        items = list(self.charges.values())
        for name in ("customer", "payment_intent"):
            value = _str(p, name)
            if value is not None:
                items = [c for c in items if c[name] == value]
        return self._page("/v1/charges", items, p)

    def _do_capture(self, ch: dict[str, Any], amount: int | None, param: str) -> None:
        if ch["status"] != "succeeded":
            raise _invalid(f"Charge {ch['id']} has failed and cannot be captured.", code="charge_not_capturable")
        if ch["captured"]:
            raise _invalid(f"Charge {ch['id']} has already been captured.", code="charge_already_captured")
        if ch["refunded"]:  # refunding an uncaptured charge released its authorisation
            raise _invalid(f"Charge {ch['id']} has already been refunded.", code="charge_already_refunded")
        amount = ch["amount"] if amount is None else amount
        if amount > ch["amount"]:
            raise _invalid(
                f"The amount to capture ({amount}) must be less than or equal to the amount "
                f"authorized ({ch['amount']}).",
                param=param,
                code="amount_too_large",
            )
        ch["captured"] = True
        ch["amount_captured"] = amount
        ch["amount_refunded"] = ch["amount"] - amount  # the rest of the authorization is released
        ch["balance_transaction"] = new_id("txn")
        pi = self.payment_intents.get(ch["payment_intent"] or "")
        if pi is not None:
            pi.update(status="succeeded", amount_received=amount, amount_capturable=0)

    def _capture_charge(self, p: Params, ch_id: str) -> Answer:
        ch = self._charge(ch_id)
        self._do_capture(ch, _amount(p, required=False), "amount")
        return 200, _public(ch)

    # --- payment intents -------------------------------------------------------------------

    def _pi_public(self, pi: dict[str, Any]) -> dict[str, Any]:
        out = _public(pi)
        charges = [_public(self.charges[c]) for c in pi["_charges"] if c in self.charges]
        out["charges"] = _list(f"/v1/charges?payment_intent={pi['id']}", charges[-1:])
        return out

    def _create_payment_intent(self, p: Params, _: str) -> Answer:
        amount = _amount(p)
        currency = _currency(p)
        assert amount is not None
        capture_method = _str(p, "capture_method") or "automatic"
        if capture_method not in ("automatic", "automatic_async", "manual"):
            raise _invalid(
                "Invalid capture_method: must be one of automatic, automatic_async, or manual",
                param="capture_method",
                code="parameter_invalid_string",
            )
        confirmation_method = _str(p, "confirmation_method") or "automatic"
        confirm = _bool(p, "confirm", False)
        payment_method = _str(p, "payment_method")
        pi_id = new_id("pi")
        pi = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": capture_method,
            "client_secret": f"{pi_id}_secret_{_rand(25)}",
            "confirmation_method": confirmation_method,
            "created": self._now(),
            "currency": currency,
            "customer": _str(p, "customer"),
            "description": _str(p, "description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": _metadata(p),
            "next_action": None,
            "payment_method": payment_method,
            "payment_method_types": _array(p, "payment_method_types") or ["card"],
            "processing": None,
            "receipt_email": _str(p, "receipt_email"),
            "setup_future_usage": None,
            "status": "requires_confirmation" if payment_method else "requires_payment_method",
            "_charges": [],
            "_seq": self._seq(),
        }
        self.payment_intents[pi_id] = pi
        if confirm:
            self._confirm(pi, None)
        return 200, self._pi_public(pi)

    def _confirm(self, pi: dict[str, Any], payment_method: str | None) -> None:
        allowed = ("requires_payment_method", "requires_confirmation", "requires_action")
        if pi["status"] not in allowed:
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "code": "payment_intent_unexpected_state",
                    "doc_url": _DOCS + "payment-intent-unexpected-state",
                    "message": (
                        "This PaymentIntent's payment_method could not be updated because it has a "
                        f"status of {pi['status']}. You may only update the payment_method of a "
                        "PaymentIntent with one of the following statuses: "
                        "requires_payment_method, requires_confirmation, requires_action."
                    ),
                    "payment_intent": self._pi_public(pi),
                },
            )
        if payment_method:
            pi["payment_method"] = payment_method
        pm = pi["payment_method"]
        if not pm:
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "code": "payment_intent_unexpected_state",
                    "doc_url": _DOCS + "payment-intent-unexpected-state",
                    "message": (
                        "You cannot confirm this PaymentIntent because it's missing a payment "
                        "method. You can either update the PaymentIntent with a payment method and "
                        "then confirm it again, or confirm it again directly with a payment method."
                    ),
                    "payment_intent": self._pi_public(pi),
                },
            )
        pi["last_payment_error"] = None
        pi["next_action"] = None
        if _needs_authentication(pm) and pi["status"] != "requires_action":
            pi["status"] = "requires_action"
            pi["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
            return
        manual = pi["capture_method"] == "manual"
        decline = _decline_for(pm)
        ch = self._new_charge(
            amount=pi["amount"],
            currency=pi["currency"],
            customer=pi["customer"],
            capture=not manual,
            payment_method=pm,
            payment_intent=pi["id"],
            description=pi["description"],
            metadata=pi["metadata"],
            failed=decline,
        )
        pi["_charges"].append(ch["id"])
        pi["latest_charge"] = ch["id"]
        if decline:
            error = _card_error(decline, charge=ch["id"])
            pi["status"] = "requires_payment_method"
            pi["payment_method"] = None
            pi["last_payment_error"] = {**error, "payment_method": {"id": pm, "object": "payment_method"}}
            raise StripeError(402, {**error, "payment_intent": self._pi_public(pi)})
        if manual:
            pi["status"] = "requires_capture"
            pi["amount_capturable"] = pi["amount"]
        else:
            pi["status"] = "succeeded"
            pi["amount_received"] = pi["amount"]

    def _payment_intent(self, pi_id: str, param: str = "intent") -> dict[str, Any]:
        if pi_id not in self.payment_intents:
            raise _no_such("payment_intent", pi_id, param)
        return self.payment_intents[pi_id]

    def _get_payment_intent(self, _: Params, pi_id: str) -> Answer:
        return 200, self._pi_public(self._payment_intent(pi_id))

    def _list_payment_intents(self, p: Params, _: str) -> Answer:
        items = list(self.payment_intents.values())
        customer = _str(p, "customer")
        if customer is not None:
            items = [i for i in items if i["customer"] == customer]
        status, page = self._page("/v1/payment_intents", items, p)
        page["data"] = [self._pi_public(self.payment_intents[o["id"]]) for o in page["data"]]
        return status, page

    def _confirm_payment_intent(self, p: Params, pi_id: str) -> Answer:
        pi = self._payment_intent(pi_id)
        self._confirm(pi, _str(p, "payment_method"))
        return 200, self._pi_public(pi)

    def _capture_payment_intent(self, p: Params, pi_id: str) -> Answer:
        pi = self._payment_intent(pi_id)
        amount = _amount(p, "amount_to_capture", required=False)
        if pi["status"] != "requires_capture":
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "code": "payment_intent_unexpected_state",
                    "doc_url": _DOCS + "payment-intent-unexpected-state",
                    "message": (
                        "This PaymentIntent could not be captured because it has a status of "
                        f"{pi['status']}. Only a PaymentIntent with one of the following statuses "
                        "may be captured: requires_capture."
                    ),
                    "payment_intent": self._pi_public(pi),
                },
            )
        self._do_capture(self.charges[pi["latest_charge"]], amount, "amount_to_capture")
        return 200, self._pi_public(pi)

    def _update_payment_intent(self, p: Params, pi_id: str) -> Answer:
        """`POST /v1/payment_intents/{id}`: amount, currency, customer, payment_method, description,
        metadata — only before the PaymentIntent is confirmed (Stripe: payment_intent_unexpected_state)."""
        pi = self._payment_intent(pi_id)
        if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "code": "payment_intent_unexpected_state",
                    "doc_url": _DOCS + "payment-intent-unexpected-state",
                    "message": f"This PaymentIntent's amount could not be updated because it has a status of "
                    f"{pi['status']}.",
                },
            )
        amount = _amount(p, required=False)
        if amount is not None:
            pi["amount"] = amount
        if _str(p, "currency") is not None:
            pi["currency"] = _currency(p)
        for name in ("customer", "description"):
            if _str(p, name) is not None:
                pi[name] = _str(p, name)
        if _str(p, "payment_method") is not None:
            pi["payment_method"] = _str(p, "payment_method")
            if pi["status"] == "requires_payment_method":
                pi["status"] = "requires_confirmation"
        pi["metadata"] = _metadata(p, pi["metadata"])
        return 200, self._pi_public(pi)

    def _cancel_payment_intent(self, p: Params, pi_id: str) -> Answer:
        """Cancel: allowed before it succeeds; an uncaptured authorisation is released (refunded)."""
        pi = self._payment_intent(pi_id)
        if pi["status"] in ("succeeded", "canceled"):
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "code": "payment_intent_unexpected_state",
                    "doc_url": _DOCS + "payment-intent-unexpected-state",
                    "message": f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}.",
                },
            )
        for ch_id in pi["_charges"]:
            ch = self.charges.get(ch_id)
            if ch is not None and ch["status"] == "succeeded" and not ch["captured"]:
                ch["amount_refunded"], ch["refunded"] = ch["amount"], True
        pi.update(
            status="canceled",
            amount_capturable=0,
            canceled_at=self._now(),
            cancellation_reason=_str(p, "cancellation_reason"),
        )
        return 200, self._pi_public(pi)

    # --- refunds ---------------------------------------------------------------------------

    def _refund_charge_legacy(self, p: Params, ch_id: str) -> Answer:
        """The older `POST /v1/charges/{id}/refund`: refunds like /v1/refunds and answers the *charge*
        (whose `amount_refunded` is the running total of every refund)."""
        self._create_refund({**p, "charge": [ch_id]}, "")
        return 200, _public(self._charge(ch_id))

    def _create_refund(self, p: Params, _: str) -> Answer:
        ch_id, pi_id = _str(p, "charge"), _str(p, "payment_intent")
        amount = _amount(p, required=False)
        ch: dict[str, Any] | None
        if ch_id:
            ch = self._charge(ch_id, "charge")
        elif pi_id:
            pi = self._payment_intent(pi_id, "payment_intent")
            ch = self.charges.get(pi["latest_charge"] or "")
            # A PaymentIntent is refundable once it succeeded; an uncaptured one is canceled instead.
            if ch is None or ch["status"] != "succeeded" or not ch["captured"]:
                raise _invalid(
                    f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                    param="payment_intent",
                )
        else:
            raise _invalid(
                "One of the following params should be provided for this request: payment_intent or charge.",
                code="parameter_missing",
            )
        if ch["status"] != "succeeded":
            raise _invalid(f"Charge {ch['id']} has failed and cannot be refunded.", param="charge")
        refundable = (ch["amount_captured"] if ch["captured"] else ch["amount"]) - ch["amount_refunded"]
        if refundable <= 0:
            raise _invalid(f"Charge {ch['id']} has already been refunded.", code="charge_already_refunded")
        if not ch["captured"]:
            amount = None  # refunding an uncaptured charge releases the whole authorisation
        amount = refundable if amount is None else amount
        if amount > refundable:
            raise _invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({refundable})",
                param="amount",
                code="amount_too_large",
            )
        reason = _str(p, "reason")
        re_obj = {
            "id": new_id("re"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": new_id("txn"),
            "charge": ch["id"],
            "created": self._now(),
            "currency": ch["currency"],
            "metadata": _metadata(p),
            "payment_intent": ch["payment_intent"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
            "_seq": self._seq(),
        }
        self.refunds[re_obj["id"]] = re_obj
        ch["amount_refunded"] += amount
        ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
        ch["refunds"]["data"].insert(0, _public(re_obj))
        return 200, _public(re_obj)

    def _get_refund(self, _: Params, re_id: str) -> Answer:
        if re_id not in self.refunds:
            raise _no_such("refund", re_id, "id")
        return 200, _public(self.refunds[re_id])

    def _list_refunds(self, p: Params, _: str) -> Answer:
        items = list(self.refunds.values())
        for name in ("charge", "payment_intent"):
            value = _str(p, name)
            if value is not None:
                items = [r for r in items if r[name] == value]
        return self._page("/v1/refunds", items, p)

    # --- payouts, transfers, balance -------------------------------------------------------

    def _create_payout(self, p: Params, _: str) -> Answer:
        amount = _amount(p)
        currency = _currency(p)
        now = self._now()
        po: dict[str, Any] = {
            "id": new_id("po"),
            "object": "payout",
            "amount": amount,
            "arrival_date": now + 2 * 86400,
            "automatic": False,
            "balance_transaction": new_id("txn"),
            "created": now,
            "currency": currency,
            "description": _str(p, "description"),
            "destination": _str(p, "destination") or new_id("ba"),
            "failure_balance_transaction": None,
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": _metadata(p),
            "method": _str(p, "method") or "standard",
            "original_payout": None,
            "reversed_by": None,
            "source_type": _str(p, "source_type") or "card",
            "statement_descriptor": _str(p, "statement_descriptor"),
            "status": "pending",
            "type": "bank_account",
            "_seq": self._seq(),
        }
        self.payouts[po["id"]] = po
        return 200, _public(po)

    def _get_payout(self, _: Params, po_id: str) -> Answer:
        if po_id not in self.payouts:
            raise _no_such("payout", po_id, "id")
        return 200, _public(self.payouts[po_id])

    def _create_transfer(self, p: Params, _: str) -> Answer:
        amount = _amount(p)
        currency = _currency(p)
        destination = _str(p, "destination", required=True)
        tr_id = new_id("tr")
        tr = {
            "id": tr_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "balance_transaction": new_id("txn"),
            "created": self._now(),
            "currency": currency,
            "description": _str(p, "description"),
            "destination": destination,
            "destination_payment": new_id("py"),
            "livemode": False,
            "metadata": _metadata(p),
            "reversals": _list(f"/v1/transfers/{tr_id}/reversals", []),
            "reversed": False,
            "source_transaction": _str(p, "source_transaction"),
            "source_type": _str(p, "source_type") or "card",
            "transfer_group": _str(p, "transfer_group"),
            "_seq": self._seq(),
        }
        self.transfers[tr_id] = tr
        return 200, _public(tr)

    def _get_transfer(self, _: Params, tr_id: str) -> Answer:
        if tr_id not in self.transfers:
            raise _no_such("transfer", tr_id, "id")
        return 200, _public(self.transfers[tr_id])

    def _get_balance(self, _: Params, __: str) -> Answer:
        return 200, {
            "object": "balance",
            "available": [{"amount": 1_000_000, "currency": "usd", "source_types": {"card": 1_000_000}}],
            "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
            "livemode": False,
        }


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy without the fake's bookkeeping keys (those starting with ``_``)."""
    copy: dict[str, Any] = json.loads(json.dumps({k: v for k, v in obj.items() if not k.startswith("_")}))
    return copy


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=2).encode()


class FakeStripeThread(FakeThread[FakeStripe]):
    """Runs a :class:`FakeStripe` in its own event loop on a background thread.

    ``with FakeStripeThread() as t: ...`` — ``t.fake`` is the server, ``t.base_url`` its URL.
    ``fake.hang`` may be a ``threading.Event`` set from the test thread; ``hold()`` /
    ``release()`` do that for you.
    """

    def __init__(self, *, secret: str = DEFAULT_SECRET) -> None:
        super().__init__(FakeStripe(secret=secret))
