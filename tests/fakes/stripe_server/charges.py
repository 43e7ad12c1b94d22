"""Charges (create, retrieve, list, capture) and refunds, the legacy charge refund included."""

from __future__ import annotations

from typing import Any

from tests.fakes.stripe_server.params import (
    Answer,
    Params,
    StripeError,
    _amount,
    _bool,
    _card_error,
    _currency,
    _decline_for,
    _invalid,
    _list,
    _metadata,
    _no_such,
    _public,
    _str,
    new_id,
)
from tests.fakes.stripe_server.state import StripeState


class ChargeEndpoints(StripeState):
    """Charges and refunds; `_new_charge` and `_do_capture` are shared with PaymentIntents."""

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
