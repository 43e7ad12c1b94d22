"""Stripe objects a request depends on, and what the object ledger keeps of them.

Confirm, capture, increment, invoice pay and refund-by-object requests name an object whose
amount and customer are not in the request. Keybrake prices and scopes them from the ledger
(facts recorded from earlier answers) or from one pre-flight GET with the real secret.
Pure functions: the pipeline does the lookups and passes the facts in.
"""

from __future__ import annotations

from typing import Any

from keybrake.core.ledger import LedgerEntry
from keybrake.core.patterns import parse_pattern
from keybrake.vendors.base import VendorRequest, answer_text

# The largest amount Stripe takes in any currency (IDR: 12 digits; most currencies: 8), in minor
# units. Amounts beyond it are refused before pricing and distrusted in answers.
MAX_MINOR = 999_999_999_999
COLLECTIONS = {"pi_": "payment_intents", "ch_": "charges", "in_": "invoices", "re_": "refunds", "sub_": "subscriptions"}
PARAM_REFERENCES = ("payment_intent", "charge", "invoice")

# Endpoints priced from the object they name: (pattern, cost_kind, amount parameter or None).
OBJECT_PRICED = tuple(
    (parse_pattern(p), kind, param)
    for p, kind, param in (
        ("POST /v1/payment_intents/*/confirm", "charge", None),
        ("POST /v1/payment_intents/*/capture", "capture", "amount_to_capture"),
        ("POST /v1/payment_intents/*/increment_authorization", "authorization", "amount"),
        ("POST /v1/charges/*/capture", "capture", "amount"),
        ("POST /v1/invoices/*/pay", "charge", None),
        ("POST /v1/refunds", "refund", "amount"),
        ("POST /v1/charges/*/refund", "refund", "amount"),
        ("POST /v1/charges/*/refunds", "refund", "amount"),
    )
)


def _kind_of(object_id: str) -> str | None:
    return next((c for prefix, c in COLLECTIONS.items() if object_id.startswith(prefix)), None)


def referenced_object(vreq: VendorRequest) -> str | None:
    """The object a request acts on: `/v1/<collection>/<id>/…`, else a payment_intent/charge/invoice param."""
    path = vreq.path
    if len(path) >= 3 and path[0] == "v1" and _kind_of(path[2]) == path[1]:
        return path[2]
    for name in PARAM_REFERENCES:
        value = vreq.params.scalar(name)
        if value and _kind_of(value):
            return value
    return None


def object_priced(vreq: VendorRequest) -> tuple[str, str | None] | None:
    """(cost_kind, amount parameter) when the request's price comes from the object it names."""
    for pattern, kind, param in OBJECT_PRICED:
        if pattern.matches(vreq.method, vreq.path):
            return kind, param
    return None


def lookup_path(object_id: str) -> str | None:
    collection = _kind_of(object_id)
    return f"/v1/{collection}/{object_id}" if collection else None


def ledger_entries(doc: Any, account_context: str | None) -> list[LedgerEntry]:
    """Facts from an answer: the object itself, or each item of a list."""
    if not isinstance(doc, dict):
        return []
    items = doc.get("data") if doc.get("object") in ("list", "search_result") else [doc]
    out = []
    for obj in items if isinstance(items, list) else []:
        entry = _entry(obj, account_context) if isinstance(obj, dict) else None
        if entry is not None:
            out.append(entry)
    return out


def _int(obj: dict[str, Any], name: str) -> int | None:
    """A vendor amount, validated before any arithmetic: an integer in [0, MAX_MINOR], else None."""
    v = obj.get(name)
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_MINOR else None


def _entry(obj: dict[str, Any], account_context: str | None) -> LedgerEntry | None:
    """An object's facts: who it belongs to and how much it is for. Never what is counted —
    that moves only with Keybrake's own settlements (an object's status changes outside it)."""
    oid = obj.get("id")
    if not isinstance(oid, str) or _kind_of(oid) is None:
        return None
    kind = str(obj.get("object", ""))
    customer = obj.get("customer")
    if isinstance(customer, dict):  # expanded
        customer = customer.get("id")
    currency = obj.get("currency")
    amount = _int(obj, "amount_due") if kind == "invoice" else _int(obj, "amount")
    return LedgerEntry(
        object_id=oid,
        kind=kind,
        customer=customer if isinstance(customer, str) else None,
        account_context=account_context,
        currency=currency.lower() if isinstance(currency, str) else None,
        amount=amount,
        refunded=_int(obj, "amount_refunded") if kind == "charge" else None,
        captured=obj.get("captured") if kind == "charge" and isinstance(obj.get("captured"), bool) else None,
    )


def committed(obj: dict[str, Any]) -> int | None:
    """What an object states it will finally move (minor units), when its answer settles that.

    A captured PaymentIntent or Charge moves what was captured (Stripe releases the rest of the
    authorisation); a canceled or failed one moves nothing beyond what it already received. None
    while the outcome is open (an authorisation not yet captured, a confirmation pending).
    Source: Stripe API reference, PaymentIntent `status`/`amount_received`, Charge
    `captured`/`amount_captured`, Invoice `status`/`amount_paid`.
    """
    kind, status = answer_text(obj, "object"), answer_text(obj, "status")
    if kind == "payment_intent":
        if status in ("succeeded", "canceled"):
            return _int(obj, "amount_received") or 0
        return None
    if kind == "charge":
        if status == "failed":
            return 0
        if obj.get("captured") is True:
            return _int(obj, "amount_captured")
        return None
    if kind == "invoice" and status in ("paid", "void", "uncollectible"):
        return _int(obj, "amount_paid")
    return None
