"""PaymentIntents: create, retrieve, list, update, confirm, capture, cancel."""

from __future__ import annotations

from typing import Any

from tests.fakes.stripe_server.charges import ChargeEndpoints
from tests.fakes.stripe_server.params import (
    _DOCS,
    Answer,
    Params,
    StripeError,
    _amount,
    _array,
    _bool,
    _card_error,
    _currency,
    _decline_for,
    _invalid,
    _list,
    _metadata,
    _needs_authentication,
    _public,
    _rand,
    _str,
    new_id,
)


class IntentEndpoints(ChargeEndpoints):
    """PaymentIntents; a confirmed one makes its charge through the charges' `_new_charge`."""

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
