"""The built-in vendors' MCP tools (docs/mcp.md): Stripe's common agent set, Twilio's messages and
calls, Resend's sends. Each is the endpoint the vendor's SDK calls, with the parameters the
vendor documents (Stripe API reference, Twilio REST API reference, Resend API reference); a
configured vendor's tools come from its definition (`vendors/configured/tools.py`).
"""

from __future__ import annotations

from typing import Any

from keybrake.vendors.base import Vendor
from keybrake.vendors.configured.tools import definition_tools
from keybrake.vendors.tools import Tool

_S: dict[str, Any] = {"type": "string"}
_I: dict[str, Any] = {"type": "integer", "minimum": 0}
_META: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "description": "Key-value pairs stored on the object.",
}
_LIMIT: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 100, "description": "How many to return (1-100)."}
_AMOUNT: dict[str, Any] = {"type": "integer", "minimum": 1, "description": "In the currency's smallest unit (cents)."}
_CURRENCY: dict[str, Any] = {"type": "string", "minLength": 3, "maxLength": 3, "description": "ISO code, lower case."}


def _d(base: dict[str, Any], text: str) -> dict[str, Any]:
    return {**base, "description": text}


def _stripe(name: str, method: str, path: str, summary: str, moves: str = "", **kw: Any) -> Tool:
    return Tool(
        f"stripe_{name}", "stripe", method, path, summary, moves, body="form_nested", idempotent=method == "POST", **kw
    )


STRIPE_TOOLS = (
    _stripe(
        "create_customer",
        "POST",
        "/v1/customers",
        "Create a Stripe customer.",
        properties={"email": _S, "name": _S, "phone": _S, "description": _S, "metadata": _META},
    ),
    _stripe("retrieve_customer", "GET", "/v1/customers/{customer}", "Retrieve a Stripe customer by id (cus_…)."),
    _stripe(
        "list_customers",
        "GET",
        "/v1/customers",
        "List Stripe customers, newest first, optionally by email.",
        properties={"email": _S, "limit": _LIMIT, "starting_after": _S},
    ),
    _stripe(
        "create_payment_intent",
        "POST",
        "/v1/payment_intents",
        "Create a PaymentIntent (a payment to collect). With confirm=true it charges at once.",
        "Moves money: charges the amount you pass when confirmed.",
        properties={
            "amount": _AMOUNT,
            "currency": _CURRENCY,
            "customer": _S,
            "payment_method": _S,
            "description": _S,
            "confirm": {"type": "boolean"},
            "capture_method": {"type": "string", "enum": ["automatic", "automatic_async", "manual"]},
            "metadata": _META,
        },
        required=("amount", "currency"),
    ),
    _stripe(
        "confirm_payment_intent",
        "POST",
        "/v1/payment_intents/{intent}/confirm",
        "Confirm a PaymentIntent (pi_…): attempts the payment.",
        "Moves money: charges the PaymentIntent's amount.",
        properties={"payment_method": _S, "return_url": _S},
    ),
    _stripe(
        "capture_payment_intent",
        "POST",
        "/v1/payment_intents/{intent}/capture",
        "Capture an authorised PaymentIntent (pi_…), in full or in part.",
        "Moves money: captures up to the authorised amount.",
        properties={"amount_to_capture": _AMOUNT},
    ),
    _stripe("retrieve_payment_intent", "GET", "/v1/payment_intents/{intent}", "Retrieve a PaymentIntent (pi_…)."),
    _stripe(
        "create_refund",
        "POST",
        "/v1/refunds",
        "Refund a payment: name the payment_intent (pi_…) or the charge (ch_…); amount is optional (default: all "
        "of what is left).",
        "Moves money: returns up to the payment's amount to the customer.",
        properties={
            "payment_intent": _S,
            "charge": _S,
            "amount": _AMOUNT,
            "reason": {"type": "string", "enum": ["duplicate", "fraudulent", "requested_by_customer"]},
            "metadata": _META,
        },
    ),
    _stripe("retrieve_charge", "GET", "/v1/charges/{charge}", "Retrieve a charge (ch_…)."),
    _stripe(
        "list_charges",
        "GET",
        "/v1/charges",
        "List charges, newest first, optionally of one customer or PaymentIntent.",
        properties={"customer": _S, "payment_intent": _S, "limit": _LIMIT, "starting_after": _S},
    ),
    _stripe(
        "create_invoice_item",
        "POST",
        "/v1/invoiceitems",
        "Add a line (amount or price) to a customer's next or named draft invoice.",
        "Moves money once the invoice is finalized and paid: adds the amount to what the customer owes.",
        properties={
            "customer": _S,
            "invoice": _S,
            "amount": _AMOUNT,
            "currency": _CURRENCY,
            "price": _d(_S, "A price id (price_…) instead of amount."),
            "quantity": _I,
            "description": _S,
        },
        required=("customer",),
    ),
    _stripe(
        "create_invoice",
        "POST",
        "/v1/invoices",
        "Create a draft invoice for a customer (its pending invoice items are added).",
        "Moves money once finalized and paid: bills the customer the invoice's total.",
        properties={
            "customer": _S,
            "collection_method": {"type": "string", "enum": ["charge_automatically", "send_invoice"]},
            "days_until_due": _I,
            "description": _S,
            "auto_advance": {"type": "boolean"},
            "metadata": _META,
        },
        required=("customer",),
    ),
    _stripe(
        "finalize_invoice",
        "POST",
        "/v1/invoices/{invoice}/finalize",
        "Finalize a draft invoice (in_…): it can then be paid or sent.",
        "Moves money: a finalized invoice charging automatically bills the customer.",
        properties={"auto_advance": {"type": "boolean"}},
    ),
    _stripe(
        "list_invoices",
        "GET",
        "/v1/invoices",
        "List invoices, optionally of one customer or status.",
        properties={
            "customer": _S,
            "status": {"type": "string", "enum": ["draft", "open", "paid", "uncollectible", "void"]},
            "limit": _LIMIT,
            "starting_after": _S,
        },
    ),
    _stripe(
        "create_subscription",
        "POST",
        "/v1/subscriptions",
        "Subscribe a customer to one or more prices.",
        "Moves money: bills the customer each period, starting now unless there is a trial.",
        properties={
            "customer": _S,
            "items": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {"price": _S, "quantity": _I},
                    "required": ["price"],
                    "additionalProperties": False,
                },
            },
            "default_payment_method": _S,
            "trial_period_days": _I,
            "metadata": _META,
        },
        required=("customer", "items"),
    ),
    _stripe(
        "cancel_subscription",
        "DELETE",
        "/v1/subscriptions/{subscription}",
        "Cancel a subscription (sub_…) at once.",
        "Stops future billing; may credit or refund per the account's proration settings.",
    ),
    _stripe(
        "list_subscriptions",
        "GET",
        "/v1/subscriptions",
        "List subscriptions, optionally of one customer or status.",
        properties={"customer": _S, "status": _S, "limit": _LIMIT, "starting_after": _S},
    ),
)

_TWILIO_ACCOUNT = "/2010-04-01/Accounts/{key_id}"
TWILIO_TOOLS = (
    Tool(
        "twilio_send_sms",
        "twilio",
        "POST",
        _TWILIO_ACCOUNT + "/Messages.json",
        "Send an SMS or MMS with Twilio. Twilio has no idempotency key: calling again sends again (unless the "
        "key's policy sets dedup_window_seconds).",
        "Sends: one message per call, billed per segment to the destination's country.",
        properties={
            "To": _d(_S, "The destination, E.164 (+14155550100)."),
            "From": _d(_S, "A Twilio number of the account, E.164."),
            "MessagingServiceSid": _d(_S, "MG… instead of From."),
            "Body": _d(_S, "The text, up to 1,600 characters."),
            "MediaUrl": {"type": "array", "items": _S, "minItems": 1, "maxItems": 10},
            "ContentSid": _d(_S, "HX…: a content template instead of Body."),
        },
        required=("To",),
        body="form_repeat",
        one_of_each=(("From", "MessagingServiceSid"), ("Body", "MediaUrl", "ContentSid")),
    ),
    Tool(
        "twilio_fetch_message",
        "twilio",
        "GET",
        _TWILIO_ACCOUNT + "/Messages/{Sid}.json",
        "Fetch a message (SM… or MM…): its status, price and error code.",
        body="form_repeat",
    ),
    Tool(
        "twilio_place_call",
        "twilio",
        "POST",
        _TWILIO_ACCOUNT + "/Calls.json",
        "Place a phone call with Twilio, driven by TwiML (Twiml) or a TwiML URL (Url).",
        "Sends: one call per call of the tool, billed per minute to the destination's country.",
        properties={
            "To": _d(_S, "The destination, E.164."),
            "From": _d(_S, "A Twilio number of the account, E.164."),
            "Twiml": _d(_S, "The call's TwiML instructions."),
            "Url": _d(_S, "A URL that answers TwiML."),
            "TimeLimit": _d(_I, "Seconds the call may last."),
        },
        required=("To", "From"),
        body="form_repeat",
    ),
)

_ADDRESSES: dict[str, Any] = {"type": ["string", "array"], "items": _S, "minItems": 1, "maxItems": 50}
_EMAIL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "from": _S,
        "to": _ADDRESSES,
        "subject": _S,
        "html": _S,
        "text": _S,
        "cc": _ADDRESSES,
        "bcc": _ADDRESSES,
        "reply_to": _ADDRESSES,
    },
    "required": ["from", "to", "subject"],
}
RESEND_TOOLS = (
    Tool(
        "resend_send_email",
        "resend",
        "POST",
        "/emails",
        "Send one email with Resend (html or text).",
        "Sends: one email to every address in to, cc and bcc, each billed.",
        properties=_EMAIL["properties"],
        required=tuple(_EMAIL["required"]),
        idempotent=True,
    ),
    Tool(
        "resend_send_batch",
        "resend",
        "POST",
        "/emails/batch",
        "Send up to 100 emails in one call with Resend; admitted or refused whole.",
        "Sends: every email of the batch to every address it names, each billed.",
        properties={"emails": {"type": "array", "minItems": 1, "maxItems": 100, "items": _EMAIL}},
        required=("emails",),
        body="json_array",
        array_arg="emails",
        idempotent=True,
        open_params=False,
    ),
)

_BUILT_IN = {"stripe": STRIPE_TOOLS, "twilio": TWILIO_TOOLS, "resend": RESEND_TOOLS}


def tools_for(vendor: Vendor) -> tuple[Tool, ...]:
    """The MCP tools of `vendor`: the built-in set, a configured vendor's from its definition,
    none for a vendor without tools (Shopify: its GraphQL API is one endpoint, no tool set yet)."""
    if vendor.name in _BUILT_IN:
        return _BUILT_IN[vendor.name]
    definition = getattr(vendor, "definition", None)
    if definition is not None:
        return definition_tools(definition)
    return ()
