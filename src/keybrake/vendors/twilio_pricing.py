"""Twilio's typed parse result and what a request costs: estimates before the call, the price
from the answer, and the final price reconciled later (docs/policy.md, what a call costs).

Twilio answers `price: null` when a message or call is created, so the estimate stands
(`cost_source=estimate`) until reconciliation reads the real price; a call's own price leaves
out the legs its TwiML dials, so calls always settle by reconciliation (docs/sdk-twilio.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from keybrake.core.destinations import country_of
from keybrake.core.money import MICRO
from keybrake.core.patterns import EndpointPattern
from keybrake.vendors import twilio_voice
from keybrake.vendors.base import Estimate, Rates, VendorCost, VendorRequest, answer_text
from keybrake.vendors.rates import TwilioRates

# The largest price Keybrake believes for one message or call, in the price's unit; anything
# beyond it (or not a finite decimal) is treated as no price, so the estimate stands.
MAX_PRICE = Decimal(100_000)
# A message is at most 1,600 characters: even as UCS-2 that is 24 segments. Counts beyond this
# bound in an answer are not believed.
MAX_SEGMENTS = 1600
OBJECT_SID = re.compile(r"^(SM|MM|CA)[0-9a-f]{32}$")
_NO_CHARGE_STATUSES = frozenset({"canceled", "busy", "no-answer"})


@dataclass(frozen=True)
class TwilioParse:
    """What the one parse learnt of a Twilio request (`VendorRequest.detail`).

    `kind`: "message" (Messages create), "call" (Calls or Participants create) or None;
    `format`: the representation asked for ("json", "xml", …; "json" outside the 2010 API);
    for a message, its `segments` (an upper bound) and `num_media` (MediaUrl count).
    """

    kind: str | None
    format: str = "json"
    segments: int | None = None
    num_media: int | None = None


@dataclass(frozen=True)
class TwilioScope:
    """What the key's policy decided for a Twilio request (`ScopeResult.detail`).

    `to`: the normalised destination (E.164 or `channel:` address); `whatsapp`: sent over
    WhatsApp; `dials`: TwiML dial targets checked; `time_limit`: a call's limit in seconds, and
    `set_time_limit` that limit when Keybrake writes it into the body (absent or larger).
    """

    to: str | None = None
    whatsapp: bool = False
    dials: int = 0
    time_limit: int | None = None
    set_time_limit: int | None = None


NO_PARSE = TwilioParse(None)
NO_SCOPE = TwilioScope()


def estimate(
    vreq: VendorRequest, detail: TwilioParse, scope: TwilioScope, rates: TwilioRates, free: Sequence[EndpointPattern]
) -> Estimate:
    """Upper bound of a message (per segment or MMS, by destination country) or a call (per
    minute of its time limit, plus the child legs its TwiML may dial); free or unpriceable else."""
    country = country_of(scope.to) if scope.to is not None else None
    if detail.kind == "message":
        if detail.num_media:
            return Estimate("priced", _micro(rates.rate("mms", country)), "mms", "usd", sends=1)
        per_segment = rates.rate("whatsapp" if scope.whatsapp else "sms", country)
        return Estimate("priced", _micro(per_segment * int(detail.segments or 0)), "sms", "usd", sends=1)
    if detail.kind == "call":
        assert scope.time_limit is not None, "a call's scope decides its time limit"
        minutes = math.ceil(scope.time_limit / 60)
        per_minute = rates.rate("call_per_minute", country) + twilio_voice.child_leg_rate(
            vreq.method, vreq.path, vreq.params, rates
        )
        return Estimate("priced", _micro(per_minute * minutes), "call", "usd")
    if any(p.matches(vreq.method, vreq.path) for p in free):
        return Estimate("free", 0, "none")
    return Estimate("unpriceable", 0, "call" if "calls" in "/".join(vreq.path).lower() else "sms")


def cost(detail: TwilioParse, estimate: Estimate, status: int, doc: Any, rates: Rates) -> VendorCost:
    """What a definite answer (< 500) says the call cost (the estimate while Twilio has no price)."""
    if status >= 400:
        return VendorCost(0, "none", "none")  # Twilio refused it: nothing was sent
    sid = doc.get("sid") if isinstance(doc, dict) and isinstance(doc.get("sid"), str) else None
    if estimate.pricing == "free":
        return VendorCost(0, "none", "none", vendor_object_id=sid)
    if not isinstance(doc, dict):
        return VendorCost(estimate.amount, "estimate", estimate.cost_kind, vendor_object_id=sid)
    priced = price(doc, rates)
    if priced is not None and estimate.cost_kind != "call":
        # A call's own price leaves out the legs its TwiML dials: calls settle by reconciliation.
        return VendorCost(priced, "response", estimate.cost_kind, vendor_object_id=sid)
    amount = estimate.amount
    counted = _segments(doc.get("num_segments"))
    estimated = detail.segments
    if counted and isinstance(estimated, int) and counted > estimated:  # 0 (Messaging Services) is ignored
        amount = math.ceil(amount * counted / estimated)
    # No price yet: the estimate stands until reconciliation reads the real one (§3.1.2).
    keep = sid is not None and OBJECT_SID.match(sid) is not None
    return VendorCost(amount, "estimate", estimate.cost_kind, keep_reservation=keep, vendor_object_id=sid)


def price(doc: dict[str, Any], rates: Rates) -> int | None:
    """|price| in USD micro-dollars (half-up), or None while Twilio has not priced it."""
    value_raw, unit = doc.get("price"), doc.get("price_unit")
    if value_raw is None or not isinstance(value_raw, str | int | float):
        return None
    try:
        value = abs(Decimal(str(value_raw)))
    except InvalidOperation:
        return None
    rate = rates.get(str(unit or "usd").lower())
    if rate is None or not value.is_finite() or value > MAX_PRICE:
        return None  # validated before arithmetic: an absurd price leaves the estimate standing
    return int((value * Decimal(rate) * MICRO).to_integral_value(rounding="ROUND_HALF_UP"))


def reconcile(doc: Any, rates: Rates, related: Sequence[Any] = ()) -> VendorCost | None:
    """The final price of a Message or Call, or None while Twilio has not priced all of it.

    A call's price is its own leg plus every child call its TwiML dialled (`related`: pages
    of `Calls.json?ParentCallSid=…`, Twilio's documented filter); it is final once each has
    a price or ended without a charge.
    """
    if not isinstance(doc, dict):
        return None
    sid = doc.get("sid") if isinstance(doc.get("sid"), str) else None
    kind = "call" if (sid or "").startswith("CA") else ("mms" if (sid or "").startswith("MM") else "sms")
    total = 0
    for leg in [doc, *(c for page in related for c in _calls_of(page))]:
        priced = price(leg, rates)
        if priced is None and answer_text(leg, "status") not in _NO_CHARGE_STATUSES:
            return None
        total += priced or 0
    if total == 0 and answer_text(doc, "status") in _NO_CHARGE_STATUSES:
        return VendorCost(0, "response", "none", vendor_object_id=sid)
    return VendorCost(total, "response", kind, vendor_object_id=sid)


def _calls_of(page: Any) -> list[dict[str, Any]]:
    calls = page.get("calls") if isinstance(page, dict) else None
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _micro(usd: Decimal) -> int:
    """Round up to the next micro-dollar: estimates are upper bounds."""
    return int((usd * MICRO).to_integral_value(rounding="ROUND_CEILING"))


def _segments(v: Any) -> int | None:
    """A `num_segments` from an answer, validated before arithmetic: a whole number (Twilio sends a
    decimal string) up to MAX_SEGMENTS, else None (a float, infinity or an absurd count is ignored)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 4:
        v = int(v)
    return v if isinstance(v, int) and 0 <= v <= MAX_SEGMENTS else None
