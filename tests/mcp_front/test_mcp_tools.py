"""The MCP front through the `mcp` SDK's own client, over streamable HTTP and over stdio
(`keybrake mcp`): listings follow the key's policy, refusals are readable tool errors, a revoke
is seen by the next call, scope holds, every call has its audit row, caps are exact."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from tests.fakes.stripe_server import FakeStripe
from tests.fakes.twilio_server import FakeTwilioThread
from tests.harness import KeybrakeThread
from tests.mcp_front.conftest import Connect, text_of

PAY = {"amount": 600, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}


def _mcp_rows(kb: KeybrakeThread, key: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in kb.audit(key_id=key["id"]) if (r["metadata"] or {}).get("mcp")]


async def test_listing_follows_each_keys_policy(kb: KeybrakeThread, connect: Connect) -> None:
    wide = kb.issue({"daily_usd_cap": 25, "max_usd_per_call": 10})
    narrow = kb.issue({"allowed_endpoints": ["GET /v1/customers/*", "POST /v1/refunds"], "total_usd_cap": 3})
    async with connect(kb.url, wide["key"]) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert len(tools) == 17 and {"stripe_create_payment_intent", "stripe_create_refund"} <= set(tools)
    pay = tools["stripe_create_payment_intent"]
    assert pay.description is not None
    assert "$25.00 a day" in pay.description and "at most $10.00 per call" in pay.description
    assert pay.annotations is not None and pay.annotations.destructive_hint and not pay.annotations.read_only_hint
    assert pay.input_schema["required"] == ["amount", "currency"]
    assert "idempotency_key" in pay.input_schema["properties"]
    async with connect(kb.url, narrow["key"]) as c:
        listed = (await c.list_tools()).tools
    assert sorted(t.name for t in listed) == ["stripe_create_refund", "stripe_retrieve_customer"]
    assert all("$3.00 in total" in (t.description or "") for t in listed)


async def test_payment_stopped_by_the_cap_with_a_readable_error(
    kb: KeybrakeThread, fake_stripe: FakeStripe, connect: Connect
) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    async with connect(kb.url, key["key"]) as c:
        first = await c.call_tool("stripe_create_payment_intent", {**PAY, "description": "order 1"})
        assert not first.is_error, text_of(first)
        assert first.structured_content is not None and first.structured_content["status"] == "succeeded"
        second = await c.call_tool("stripe_create_payment_intent", {**PAY, "description": "order 2"})
    assert second.is_error
    text = text_of(second)
    assert "spend_cap_exceeded" in text and "Retrying will not help before the cap resets" in text
    assert "$10.00" in text and "$6.00 used" in text
    assert text.count("$6.00 used") == 1  # said once (a second "Cap …" line repeated the message)
    assert len(fake_stripe.payment_intents) == 1  # the refused call never reached Stripe
    rows = _mcp_rows(kb, key)
    verdicts = sorted(r["verdict"] for r in rows)
    assert verdicts == ["allowed", "cap_exceeded"]
    assert {r["metadata"]["mcp"]["tool"] for r in rows} == {"stripe_create_payment_intent"}
    facts = [(r.meta or {})["keybrake"] for r in (first, second)]
    assert {f["request_id"] for f in facts} == {r["id"] for r in rows}
    assert facts[0]["spend_remaining_usd"] == "4" and facts[1]["code"] == "spend_cap_exceeded"


async def test_a_refund_of_an_unknown_id_says_the_id_was_not_found_not_only_the_cap(
    kb: KeybrakeThread, fake_stripe: FakeStripe, connect: Connect
) -> None:
    """A refund without an amount reserves max_usd_per_call; when its payment's lookup finds
    nothing, the cap's refusal says the id was not found (newcomer: the model waited for the reset)."""
    key = kb.issue({"daily_usd_cap": 20, "max_usd_per_call": 15})
    async with connect(kb.url, key["key"]) as c:
        paid = await c.call_tool("stripe_create_payment_intent", {**PAY, "amount": 1200})
        assert not paid.is_error, text_of(paid)
        refund = await c.call_tool("stripe_create_refund", {"payment_intent": "pi_nope"})
    text = text_of(refund)
    assert refund.is_error and "spend_cap_exceeded" in text and "this call needs $15.00" in text
    assert "reserves the key's max_usd_per_call ($15.00)" in text
    assert "pi_nope was not found at the vendor (404): check the id." in text
    assert [(r.method, r.path) for r in fake_stripe.requests][-1] == ("GET", "/v1/payment_intents/pi_nope")


async def test_revoked_keys_next_call_is_refused(kb: KeybrakeThread, fake_stripe: FakeStripe, connect: Connect) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    async with connect(kb.url, key["key"]) as c:
        ok = await c.call_tool("stripe_create_customer", {"email": "a@example.com"})
        assert not ok.is_error, text_of(ok)
        with kb.admin() as admin:
            assert admin.delete(f"/v1/keys/{key['id']}", params={"reason": "run over"}).status_code == 200
        refused = await c.call_tool("stripe_create_customer", {"email": "b@example.com"})
        assert refused.is_error and "key_revoked" in text_of(refused) and "run over" in text_of(refused)
        assert "ask the operator for a new key" in text_of(refused) and "change the call" not in text_of(refused)
        with pytest.raises(MCPError, match="key_revoked"):
            await c.list_tools()
    assert len(fake_stripe.customers) == 1
    rows = _mcp_rows(kb, key)
    assert sorted(r["verdict"] for r in rows) == ["allowed", "denied_key_revoked"]


async def test_twilio_destination_outside_scope(
    kbt: KeybrakeThread, fake_twilio: FakeTwilioThread, connect: Connect
) -> None:
    key = kbt.issue({"daily_usd_cap": 5, "allowed_to_prefixes": ["+1"]}, vendor="twilio", label="test:sms")
    async with connect(kbt.url, key["key"]) as c:
        names = sorted(t.name for t in (await c.list_tools()).tools)
        assert names == ["twilio_fetch_message", "twilio_place_call", "twilio_send_sms"]
        sent = await c.call_tool("twilio_send_sms", {"To": "+14155550100", "From": "+14155550199", "Body": "hi"})
        assert not sent.is_error, text_of(sent)
        sid = sent.structured_content["sid"] if sent.structured_content else ""
        fetched = await c.call_tool("twilio_fetch_message", {"Sid": sid})
        assert not fetched.is_error and fetched.structured_content and fetched.structured_content["sid"] == sid
        out = await c.call_tool("twilio_send_sms", {"To": "+447700900123", "From": "+14155550199", "Body": "hi"})
    assert out.is_error and "scope_violation" in text_of(out) and "will not help" in text_of(out)
    assert [m for m in fake_twilio.fake.messages.values() if m["to"] == "+447700900123"] == []
    rows = _mcp_rows(kbt, key)
    assert sorted((r["metadata"]["mcp"]["tool"], r["verdict"]) for r in rows) == [
        ("twilio_fetch_message", "allowed"),
        ("twilio_send_sms", "allowed"),
        ("twilio_send_sms", "denied_scope_violation"),
    ]


async def test_concurrent_calls_are_exact_against_the_cap(
    kb: KeybrakeThread, fake_stripe: FakeStripe, connect: Connect
) -> None:
    key = kb.issue({"daily_usd_cap": 30})
    async with connect(kb.url, key["key"]) as c:
        results = await asyncio.gather(
            *(c.call_tool("stripe_create_payment_intent", {**PAY, "metadata": {"order": str(i)}}) for i in range(12))
        )
    passed = [r for r in results if not r.is_error]
    assert len(passed) == 5  # $6 each against $30
    assert all("spend_cap_exceeded" in text_of(r) for r in results if r.is_error)
    charged = sum(pi["amount"] for pi in fake_stripe.payment_intents.values() if pi["status"] == "succeeded")
    assert charged == 3000
    assert sorted(r["verdict"] for r in _mcp_rows(kb, key)) == ["allowed"] * 5 + ["cap_exceeded"] * 7
