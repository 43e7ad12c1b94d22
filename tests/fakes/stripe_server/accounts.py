"""Webhook endpoints, customers, payouts, transfers and the balance."""

from __future__ import annotations

import secrets
import string
from typing import Any

from tests.fakes.stripe_server.params import (
    Answer,
    Params,
    _amount,
    _array,
    _currency,
    _list,
    _metadata,
    _no_such,
    _public,
    _rand,
    _str,
    new_id,
)
from tests.fakes.stripe_server.state import StripeState


class AccountEndpoints(StripeState):
    """Webhook endpoints, customers, payouts, transfers, balance: objects no cap is counted on here."""

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
