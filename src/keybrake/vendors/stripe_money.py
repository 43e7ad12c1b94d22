"""Money in Stripe answers: what a call moved, what it counts for the object it acted on, and
what an object fetched later says it finally moved. Pure functions over the answer, the request
and the facts looked up for it.

Cost parsing uses only fields stable across Stripe API versions (`amount`, `amount_received`,
`amount_capturable`, `amount_captured`, `amount_refunded`, `currency`, `status`, `customer`),
since agents may send any `Stripe-Version`. Money is counted once per object (docs/policy.md,
the object ledger).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from keybrake.core.errors import Denial
from keybrake.core.ledger import LedgerEntry, ObjectCount
from keybrake.core.money import minor_to_micro_usd
from keybrake.core.patterns import parse_pattern
from keybrake.vendors import stripe_objects
from keybrake.vendors.base import Estimate, Rates, VendorCost, VendorRequest, answer_text

# Minor-unit exponents (docs/policy.md, currencies); every other currency Stripe supports has 2.
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())


def exponent(currency: str) -> int:
    c = currency.lower()
    if c in ZERO_DECIMAL:
        return 0
    if c in THREE_DECIMAL:
        return 3
    return 2


# Calls that settle what an object finally moves without being priced themselves: a cancel
# releases an uncaptured authorisation (what Keybrake counted for it is released with it).
SETTLES_OBJECT = (parse_pattern("POST /v1/payment_intents/*/cancel"),)
# Statuses that mean no money moved, and those whose outcome is still open.
# The agent chooses the Stripe-Version: API versions before 2019-02-11 name two of them
# `requires_source` (now requires_payment_method) and `requires_source_action` (now requires_action).
_NO_MONEY_STATUSES = frozenset({"failed", "canceled", "requires_payment_method", "requires_source"})
_KEEP_STATUSES = frozenset({"requires_action", "requires_confirmation", "requires_source_action"})
# A non-negative integer of at most 12 digits: the most Stripe takes in any currency (IDR).
AMOUNT = re.compile(r"^[0-9]{1,12}$")


def cost(
    vreq: VendorRequest, estimate: Estimate, status: int, headers: dict[str, str], doc: Any, rates: Rates
) -> VendorCost:
    """What an answer says the call moved, and what it counts for the object it acted on.

    Money is counted once per object: a call on an object counts only what exceeds what
    Keybrake's own settlements counted for it before; when the answer states what the object
    will finally move (a capture for less, a cancel), the store releases the excess
    (`ObjectCount.committed`). Answer amounts are validated before any arithmetic: anything
    but an integer in [0, MAX_MINOR] leaves the estimate standing.
    """
    if status >= 400:
        # A Stripe 4xx (including 402 card_error and 429) moved no money.
        return VendorCost(0, "none", "none")
    obj = doc
    object_id = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
    if headers.get("idempotent-replayed", "").lower() == "true":
        return VendorCost(0, "none", "none", vendor_object_id=object_id)
    if estimate.pricing == "free":
        count = None
        if isinstance(obj, dict) and object_id and any(p.matches(vreq.method, vreq.path) for p in SETTLES_OBJECT):
            final = stripe_objects.committed(obj)
            count = ObjectCount(object_id, 0, final) if final is not None else None
        return VendorCost(0, "none", "none", vendor_object_id=object_id, count=count)
    if not isinstance(obj, dict):
        # Money may have moved and the answer does not say how much: keep the estimate.
        return VendorCost(estimate.amount, "estimate", estimate.cost_kind, vendor_object_id=object_id)
    fact = facts(vreq).get(object_id) if object_id else None
    counted_before = fact.amount_counted if fact is not None else 0
    currency = obj.get("currency")
    if answer_text(obj, "status") in _KEEP_STATUSES:
        # The customer may finish it outside Keybrake: the estimate stays reserved and counted
        # for the object until reconciliation reads the outcome.
        count = ObjectCount(object_id, estimate.minor) if object_id and estimate.minor else None
        return VendorCost(
            estimate.amount,
            "estimate",
            estimate.cost_kind,
            keep_reservation=True,
            vendor_object_id=object_id,
            count=count,
        )
    kind, amount = money_moved(obj, estimate.cost_kind)
    released = _uncaptured_refund(vreq, obj) if estimate.cost_kind == "refund" else None
    if released is not None:
        # Refunding a charge that was never captured releases its authorisation: no money
        # moves back, and what was counted for the authorisation is released.
        return VendorCost(0, "response", "none", vendor_object_id=object_id, count=ObjectCount(released, 0, 0))
    if kind == "refund" and obj.get("object") == "charge":
        # The older /v1/charges/{id}/refund answers with the charge: `amount_refunded` is the
        # running total of every refund, so this call counts its own amount only.
        amount = _legacy_refund(vreq, estimate, obj)
    if amount is None or not isinstance(currency, str) or currency.lower() not in rates:
        return VendorCost(estimate.amount, "estimate", estimate.cost_kind, vendor_object_id=object_id)
    count = None
    if kind not in ("refund", "none") and object_id is not None:
        amount = max(0, amount - counted_before)  # counted once per object
        count = ObjectCount(object_id, amount, stripe_objects.committed(obj))
    if amount == 0:
        return VendorCost(0, "response", "none", vendor_object_id=object_id, count=count)
    micro = to_usd(amount, currency.lower(), rates, reserve=False)
    return VendorCost(micro, "response", kind, vendor_object_id=object_id, count=count)


def reconcile(doc: Any, rates: Rates, related: Sequence[Any] = ()) -> VendorCost | None:
    """A PaymentIntent left in requires_action settles once the customer finishes (or abandons) it."""
    if not isinstance(doc, dict) or answer_text(doc, "status") in _KEEP_STATUSES:
        return None
    oid = doc.get("id") if isinstance(doc.get("id"), str) else None
    kind, amount = money_moved(doc, "charge")
    currency = doc.get("currency")
    if not amount or not isinstance(currency, str) or currency.lower() not in rates:
        count = ObjectCount(oid, 0, stripe_objects.committed(doc)) if oid else None
        return VendorCost(0, "response", "none", vendor_object_id=oid, count=count)
    count = ObjectCount(oid, amount, stripe_objects.committed(doc)) if oid else None
    return VendorCost(
        to_usd(amount, currency.lower(), rates, reserve=False),
        "response",
        kind,
        vendor_object_id=oid,
        count=count,
    )


def facts(vreq: VendorRequest) -> Mapping[str, LedgerEntry]:
    """What the pre-flight lookups taught about the objects the request names, by id."""
    return vreq.facts


def to_usd(amount_minor: int, currency: str, rates: Rates, *, reserve: bool) -> int:
    rate = rates.get(currency)
    if rate is None:
        raise Denial(
            "currency_not_supported",
            f"Currency {currency.upper()!r} has no USD rate configured, so this call cannot be priced "
            "against the key's caps. Ask the operator to add it to KEYBRAKE_FX_RATES_FILE. Do not retry.",
        )
    return minor_to_micro_usd(amount_minor, exponent(currency), Decimal(rate), reserve=reserve)


def money_moved(obj: dict[str, Any], fallback_kind: str) -> tuple[str, int | None]:
    """(cost_kind, amount in minor units) for a Stripe object an allowed call returned."""
    kind = answer_text(obj, "object")
    status = answer_text(obj, "status")
    if status in _NO_MONEY_STATUSES:
        return "none", 0

    def amt(name: str) -> int | None:
        v = obj.get(name)
        valid = isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= stripe_objects.MAX_MINOR
        return v if valid else None

    if kind == "charge":
        if fallback_kind == "refund":
            return "refund", amt("amount_refunded")
        captured = obj.get("captured")
        if captured is True and amt("amount_captured") is not None:
            return "charge", amt("amount_captured")  # a partial capture moves what was captured
        return ("charge" if captured is not False else "authorization"), amt("amount")
    if kind == "payment_intent":
        if status == "requires_capture":
            return "authorization", amt("amount_capturable") or amt("amount")
        if status in ("succeeded", "processing"):
            return ("capture" if fallback_kind == "capture" else "charge"), amt("amount_received") or amt("amount")
        return fallback_kind, None  # a status Keybrake does not know: the estimate stands, never $0
    if kind == "refund":
        return "refund", amt("amount")
    if kind in ("payout", "transfer", "topup"):
        return kind, amt("amount")
    if kind == "transfer_reversal":
        return "transfer", amt("amount")
    if kind == "invoice":
        return "charge", amt("amount_paid")
    if kind == "credit_note":
        return "refund", amt("refund_amount") if "refund_amount" in obj else amt("amount")
    return fallback_kind, None


def _uncaptured_refund(vreq: VendorRequest, obj: dict[str, Any]) -> str | None:
    """The charge whose authorisation a refund call's answer released, when it refunded an uncaptured charge.

    Only the answer itself says so: the older endpoint answers with the charge (`captured: false`
    after the refund). A refund object says nothing about its charge's capture, and facts learnt
    earlier may be stale (the charge captured since), so /v1/refunds always counts as a refund.
    """
    if obj.get("object") == "charge" and obj.get("captured") is False and isinstance(obj.get("id"), str):
        return str(obj["id"])
    return None


def _legacy_refund(vreq: VendorRequest, estimate: Estimate, charge: dict[str, Any]) -> int | None:
    """What one call to the older charge-refund endpoint refunded (minor units).

    With `amount`, exactly that (Stripe refunds it or refuses); without, the remainder the
    estimate computed from the charge's facts, never more than the charge's refunded total.
    """
    raw = vreq.params.scalar("amount")
    if raw is not None and AMOUNT.match(raw):
        return int(raw)
    total = charge.get("amount_refunded")
    if estimate.minor is None or not isinstance(total, int) or isinstance(total, bool) or total < 0:
        return None
    return min(estimate.minor, total)
