"""A derived idempotency key follows the request a tool call sends, never how its arguments were
spelt (vendors/tools.py `request_identity`): two calls get the same key exactly when the vendor
reads the same request. The reference model is the vendor's own reading of what was sent — a form
as parsed into fields (urllib's parse_qs: the order of distinct fields means nothing to Stripe), a
JSON body as parsed (object key order means nothing; a whole number is one number).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from hypothesis import event, given, settings
from hypothesis import strategies as st

from keybrake.vendors.tool_catalog import RESEND_TOOLS, STRIPE_TOOLS
from keybrake.vendors.tools import Tool, ToolInputError, ToolRequest, build_request

PAY = next(t for t in STRIPE_TOOLS if t.name == "stripe_create_payment_intent")
SEND = next(t for t in RESEND_TOOLS if t.name == "resend_send_email")
# Few values, so that different spellings of one request come up often.
VALUES = st.sampled_from([1500, 1500.0, 700, "usd", "eur", {}, [], {"order": "1"}, {"order": 1}, ["card"], True])
OPTIONAL = st.dictionaries(st.sampled_from(["metadata", "description", "payment_method_types", "confirm"]), VALUES)


def _reading(req: ToolRequest) -> Any:
    """The vendor's reading of a request: what it acts on."""
    if req.content_type == "application/json":
        return json.loads(req.body, parse_float=lambda s: int(float(s)) if float(s).is_integer() else float(s))
    return parse_qs(req.body.decode(), keep_blank_values=True)  # field → its values, in their order


def _built(tool: Tool, args: dict[str, Any]) -> ToolRequest | None:
    try:
        return build_request(tool, args, "vk_1", secret=b"s" * 32)
    except ToolInputError:
        return None


@settings(max_examples=400, deadline=None)
@given(
    a=st.fixed_dictionaries({"amount": VALUES, "currency": VALUES}, optional={"metadata": VALUES}),
    b_extra=OPTIONAL,
    b_amount=VALUES,
    reverse=st.booleans(),
)
def test_same_reading_same_key_and_only_then(
    a: dict[str, Any], b_extra: dict[str, Any], b_amount: Any, reverse: bool
) -> None:
    b = {**a, "amount": b_amount, **b_extra}
    b = dict(reversed(b.items())) if reverse else b
    ra, rb = _built(PAY, a), _built(PAY, b)
    if ra is None or rb is None:
        event("refused by name (ToolInputError): nothing sent, no key")
        return
    assert ra.idempotency_key is not None and rb.idempotency_key is not None
    event("the same request" if _reading(ra) == _reading(rb) else "another request")
    assert (ra.idempotency_key == rb.idempotency_key) == (_reading(ra) == _reading(rb)), (ra.body, rb.body)


@settings(max_examples=200, deadline=None)
@given(
    to=st.one_of(st.just("a@example.com"), st.lists(st.just("a@example.com"), min_size=1, max_size=2)),
    tags=st.sampled_from([None, [], [{"name": "n", "value": "1"}]]),
    reverse=st.booleans(),
    subject=st.sampled_from(["hi", "Hi"]),
)
def test_a_json_call_same_reading_same_key(to: Any, tags: Any, reverse: bool, subject: str) -> None:
    base = {"from": "me@example.com", "to": to, "subject": subject, "text": "x", "amount": 2.0}
    if tags is not None:
        base["tags"] = tags
    other = dict(reversed(base.items())) if reverse else dict(base)
    other["amount"] = 2
    ra, rb = _built(SEND, base), _built(SEND, other)
    assert ra is not None and rb is not None
    assert _reading(ra) == _reading(rb) and ra.idempotency_key == rb.idempotency_key


def test_the_red_teams_spellings_share_one_key() -> None:
    pay = {"amount": 1500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    spellings = [pay, {**pay, "amount": 1500.0}, {**pay, "metadata": {}}, {**pay, "payment_method_types": []}]
    keys = {req.idempotency_key for args in spellings if (req := _built(PAY, args)) is not None}
    assert len(keys) == 1
    assert _built(PAY, {**pay, "amount": 1501}) is not None
    assert _built(PAY, {**pay, "amount": 1501}).idempotency_key not in keys  # type: ignore[union-attr]
