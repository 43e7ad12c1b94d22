"""A Stripe request's summary: the audit row's `request_summary` and what a person approving the
call sees (docs/approvals.md). Read by vendors/stripe.py."""

from __future__ import annotations

from typing import Any

from keybrake.vendors.base import VendorRequest

# Parameters that send money somewhere other than the platform's own balance, or act for another
# account: always in the summary when sent, right after the amount, so a short view (Slack shows
# six fields) never hides where the money goes behind the rest.
ROUTING = (
    "destination",
    "destination.account",
    "destination.amount",
    "transfer_data.destination",
    "transfer_data.amount",
    "on_behalf_of",
    "application_fee_amount",
    "reverse_transfer",
    "refund_application_fee",
)
OTHER = ("customer", "charge", "payment_intent", "confirm", "capture_method")


def summary(vreq: VendorRequest) -> dict[str, Any]:
    """The amount and currency, the Stripe account the call acts in (`stripe_account`: the
    Stripe-Account or Stripe-Context header, or an account in the path) when not the platform's,
    every routing parameter sent, then the customer and the object acted on."""
    out: dict[str, Any] = {}
    for name in ("amount", "currency"):
        if (v := shown(vreq, name)) is not None:
            out[name] = v
    if vreq.account_context is not None:
        out["stripe_account"] = vreq.account_context[:64]
    for name in ROUTING + OTHER:
        if (v := shown(vreq, name)) is not None:
            out[name] = v
    return out


def shown(vreq: VendorRequest, name: str) -> str | None:
    """A parameter's value as the summary shows it (several values joined; at most 64 characters),
    never a refusal: the summary describes the request, the checks decide on it."""
    vals = vreq.params.values.get(name)
    return ", ".join(vals)[:64] if vals else None
