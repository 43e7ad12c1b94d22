"""Stripe objects a request depends on, and what the object ledger keeps of them.

Confirm, capture, increment, invoice pay and refund-by-object requests name an object whose
amount and customer are not in the request. Keybrake prices and scopes them from the ledger
(facts recorded from earlier answers) or from one pre-flight GET with the real secret.
Pure functions: the pipeline does the lookups and passes the facts in.
"""

from __future__ import annotations

from typing import Any

from keybrake.core.patterns import parse_pattern
from keybrake.store.base import LedgerEntry
from keybrake.vendors.base import VendorRequest

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
    v = obj.get(name)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _entry(obj: dict[str, Any], account_context: str | None) -> LedgerEntry | None:
    oid = obj.get("id")
    if not isinstance(oid, str) or _kind_of(oid) is None:
        return None
    kind = str(obj.get("object", ""))
    customer = obj.get("customer")
    if isinstance(customer, dict):  # expanded
        customer = customer.get("id")
    currency = obj.get("currency")
    status = obj.get("status")
    amount = _int(obj, "amount")
    counted = 0
    if kind == "payment_intent":
        if status == "succeeded":
            counted = _int(obj, "amount_received") or amount or 0
        elif status == "requires_capture":
            counted = _int(obj, "amount_capturable") or amount or 0
        elif status == "processing":
            counted = amount or 0
    elif kind == "charge":
        if status != "failed":
            # an uncaptured charge is an authorisation: it counts when authorised (CONTRACT §3.1)
            counted = max(_int(obj, "amount_captured") or 0, amount or 0)
    elif kind == "invoice":
        amount = _int(obj, "amount_due")
        counted = _int(obj, "amount_paid") or 0
    elif kind == "refund":
        counted = (amount or 0) if status not in ("failed", "canceled") else 0
    return LedgerEntry(
        object_id=oid,
        kind=kind,
        customer=customer if isinstance(customer, str) else None,
        account_context=account_context,
        currency=currency.lower() if isinstance(currency, str) else None,
        amount=amount,
        amount_counted=counted,
    )
