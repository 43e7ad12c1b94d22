"""Stripe's endpoint classes: what is free, what is priced from the request, which endpoints'
exact spelling decides a price, and the parameters pricing and scope read (docs/policy.md,
what a call costs). Read by vendors/stripe.py."""

from __future__ import annotations

from keybrake.core.patterns import EndpointPattern, parse_pattern
from keybrake.vendors import stripe_objects


def _patterns(*texts: str) -> tuple[EndpointPattern, ...]:
    return tuple(parse_pattern(t) for t in texts)


# Endpoints that move no money. Anything not listed here or priced below is unpriceable.
# Not here on purpose: invoice and invoice-item creation/update, which Stripe can collect
# later on its own (auto_advance, a subscription's next invoice) without passing through us.
FREE = _patterns(
    "GET /**",
    "POST /v1/customers",
    "POST /v1/customers/*",
    "DELETE /v1/customers/*",
    "POST /v1/customers/*/sources",
    "POST /v1/payment_methods",
    "POST /v1/payment_methods/*",
    "POST /v1/payment_methods/*/attach",
    "POST /v1/payment_methods/*/detach",
    "POST /v1/payment_intents/*",
    "POST /v1/payment_intents/*/cancel",
    "POST /v1/setup_intents",
    "POST /v1/setup_intents/*",
    "POST /v1/setup_intents/*/confirm",
    "POST /v1/setup_intents/*/cancel",
    "POST /v1/products",
    "POST /v1/products/*",
    "DELETE /v1/products/*",
    "POST /v1/prices",
    "POST /v1/prices/*",
    "DELETE /v1/invoices/*",
    "POST /v1/invoices/*/void",
    "DELETE /v1/invoiceitems/*",
    "POST /v1/charges/*",
    "POST /v1/refunds/*",
    "POST /v1/refunds/*/cancel",
    "POST /v1/payouts/*/cancel",
    "POST /v1/tokens",
    "POST /v1/coupons",
    "DELETE /v1/coupons/*",
    # Guarded (docs/policy.md, guarded endpoints), but they move no money once a key may call them at all.
    "POST /v1/webhook_endpoints",
    "* /v1/webhook_endpoints/**",
    "POST /v1/ephemeral_keys",
    "DELETE /v1/ephemeral_keys/*",
)

# Endpoints whose upper bound is in the request: (pattern, cost_kind, amount param, needs currency).
PRICED: tuple[tuple[EndpointPattern, str], ...] = (
    (parse_pattern("POST /v1/charges"), "charge"),
    (parse_pattern("POST /v1/payouts"), "payout"),
    (parse_pattern("POST /v1/transfers"), "transfer"),
    (parse_pattern("POST /v1/topups"), "topup"),
)
PAYMENT_INTENT_CREATE = parse_pattern("POST /v1/payment_intents")
REFUND_CREATE = parse_pattern("POST /v1/refunds")
CREDIT_NOTE_CREATE = parse_pattern("POST /v1/credit_notes")

# Endpoints whose exact spelling decides a price: a case variant (`POST /v1/Charges`) is refused
# (`base.check_path_spelling`). Stripe documents no alternative spelling; a trailing `/` is refused by
# `core.paths`. Case variants of free endpoints are priced as unpriceable, which is stricter.
MONEY_MOVING: tuple[EndpointPattern, ...] = (
    *(p for p, _ in PRICED),
    PAYMENT_INTENT_CREATE,
    REFUND_CREATE,
    CREDIT_NOTE_CREATE,
    *(p for p, _, _ in stripe_objects.OBJECT_PRICED),
)

# Top-level parameters Keybrake's pricing, scope or policy reads: a name that differs from one
# of them only in case, width or surrounding blanks is refused (Stripe's names are exact).
ENFORCED = frozenset(
    {
        "amount",
        "currency",
        "customer",
        "confirm",
        "capture",
        "capture_method",
        "payment_intent",
        "charge",
        "invoice",
        "amount_to_capture",
        "refund_amount",
        "idempotency_key",
    }
)
