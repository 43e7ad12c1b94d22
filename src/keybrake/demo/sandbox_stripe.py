"""A Stripe sandbox: PaymentIntents, Charges and Refunds in memory, answering in the shapes of
Stripe's API reference (https://docs.stripe.com/api): form-encoded requests, `Bearer sk_test_…`
authentication, JSON objects with `id`, `object`, `amount` (minor units), `currency`, `status`,
the `{"error": {...}}` envelope, a `Request-Id` header and `Idempotency-Key` replays
(`Idempotent-Replayed: true`). It keeps the refundable remainder as Stripe does: a refund larger
than what is left of the charge is refused (400 `amount_too_large`)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from keybrake.demo.sandbox import Sandbox, now_s, object_id


class StripeError(Exception):
    """An error answer: HTTP `status` and the body's `error` object."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status, self.error = status, error


def _invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    err: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if param:
        err["param"] = param
    if code:
        err["code"] = code
        err["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    return StripeError(400, err)


def _missing(kind: str, oid: str, param: str) -> StripeError:
    return StripeError(
        404,
        {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "param": param,
            "message": f"No such {kind}: '{oid}'",
            "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        },
    )


def _amount(form: dict[str, str], required: bool) -> int | None:
    raw = form.get("amount")
    if raw is None:
        if required:
            raise _invalid("Missing required param: amount.", param="amount", code="parameter_missing")
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 8 or int(raw) < 1:
        raise _invalid("Invalid positive integer", param="amount")
    return int(raw)


class StripeSandbox(Sandbox):
    """Stripe in memory. `secret`: the only key it accepts (`sk_test_…`). `moved_refunds_minor`:
    the sum of every refund it made (minor units), what the account really paid out."""

    name = "stripe"

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self._replays: dict[str, tuple[int, Any]] = {}

    @property
    def moved_refunds_minor(self) -> int:
        return sum(int(r["amount"]) for r in self.refunds.values() if r["status"] == "succeeded")

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._serve)

    # -- objects ------------------------------------------------------------------------------

    def seed_payment(self, *, amount: int, currency: str, customer: str, description: str) -> dict[str, Any]:
        """A PaymentIntent that succeeded before the demo starts (the order the agent refunds), with
        its captured Charge. `amount` in minor units. Returns the PaymentIntent."""
        pi_id, ch_id = object_id("pi_"), object_id("ch_")
        created = now_s()
        charge = {
            "id": ch_id, "object": "charge", "amount": amount, "amount_captured": amount,
            "amount_refunded": 0, "balance_transaction": object_id("txn_"), "captured": True,
            "created": created, "currency": currency, "customer": customer, "description": description,
            "livemode": False, "metadata": {}, "paid": True, "payment_intent": pi_id,
            "payment_method": object_id("pm_"), "refunded": False, "status": "succeeded",
        }  # fmt: skip
        intent = {
            "id": pi_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_received": amount, "capture_method": "automatic", "client_secret": None,
            "confirmation_method": "automatic", "created": created, "currency": currency,
            "customer": customer, "description": description, "latest_charge": ch_id, "livemode": False,
            "metadata": {}, "payment_method": charge["payment_method"], "payment_method_types": ["card"],
            "status": "succeeded",
        }  # fmt: skip
        self.charges[ch_id], self.intents[pi_id] = charge, intent
        return dict(intent)

    def _refund(self, form: dict[str, str]) -> dict[str, Any]:
        pi_id, ch_id = form.get("payment_intent"), form.get("charge")
        if ch_id:
            charge = self.charges.get(ch_id)
            if charge is None:
                raise _missing("charge", ch_id, "charge")
        elif pi_id:
            intent = self.intents.get(pi_id)
            if intent is None:
                raise _missing("payment_intent", pi_id, "payment_intent")
            charge = self.charges[intent["latest_charge"]]
        else:
            raise _invalid(
                "One of the following params should be provided for this request: payment_intent or charge.",
                code="parameter_missing",
            )
        refundable = charge["amount_captured"] - charge["amount_refunded"]
        if refundable <= 0:
            raise _invalid(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
        amount = _amount(form, required=False) or refundable
        if amount > refundable:
            raise _invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({refundable})",
                param="amount",
                code="amount_too_large",
            )
        refund = {
            "id": object_id("re_"), "object": "refund", "amount": amount,
            "balance_transaction": object_id("txn_"), "charge": charge["id"], "created": now_s(),
            "currency": charge["currency"], "metadata": {}, "payment_intent": charge["payment_intent"],
            "reason": form.get("reason"), "receipt_number": None, "status": "succeeded",
        }  # fmt: skip
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        return dict(refund)

    # -- HTTP ---------------------------------------------------------------------------------

    def _route(self, method: str, parts: list[str], form: dict[str, str]) -> tuple[int, Any]:
        if method == "POST" and parts == ["v1", "refunds"]:
            return 200, self._refund(form)
        if method == "GET" and len(parts) == 3 and parts[0] == "v1":
            table, kind = {
                "payment_intents": (self.intents, "payment_intent"),
                "charges": (self.charges, "charge"),
                "refunds": (self.refunds, "refund"),
            }.get(parts[1], (None, ""))
            if table is not None:
                obj = table.get(parts[2])
                if obj is None:
                    raise _missing(kind, parts[2], "id")
                return 200, dict(obj)
        raise StripeError(
            404,
            {
                "type": "invalid_request_error",
                "message": f"Unrecognized request URL ({method}: /{'/'.join(parts)}). This sandbox serves "
                "POST /v1/refunds and GET /v1/{payment_intents,charges,refunds}/{id}.",
            },
        )

    async def _serve(self, request: web.Request) -> web.Response:
        rid = object_id("req_", 14)
        headers = {"Request-Id": rid, "Stripe-Version": request.headers.get("Stripe-Version", "2024-06-20")}
        if request.headers.get("Authorization", "") != f"Bearer {self.secret}":
            shown = request.headers.get("Authorization", "")[7:]
            err = {
                "type": "invalid_request_error",
                "message": f"Invalid API Key provided: {shown[:8]}{'*' * 8}{shown[-4:]}"
                if shown
                else "You did not provide an API key.",
            }
            return web.json_response({"error": err}, status=401, headers=headers)
        body = (await request.read()).decode("utf-8", "replace")
        form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        idem = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if idem and idem in self._replays:
            status, doc = self._replays[idem]
            return web.json_response(doc, status=status, headers={**headers, "Idempotent-Replayed": "true"})
        try:
            status, doc = self._route(request.method, [p for p in request.path.split("/") if p], form)
        except StripeError as exc:
            status, doc = exc.status, {"error": {**exc.error, "request_log_url": None}}
        if idem and status < 500:
            self._replays[idem] = (status, doc)
            headers["Idempotency-Key"] = idem
        return web.Response(text=json.dumps(doc), status=status, headers=headers, content_type="application/json")
