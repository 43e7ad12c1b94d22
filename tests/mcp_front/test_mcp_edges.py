"""The MCP front's edges: retries are one call at the vendor, bad arguments never leave, the HTTP
endpoint refuses before reading, Resend's tools, and `keybrake mcp`'s own errors."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner

from keybrake.cli import main
from keybrake.tokens import VAULT_PREFIX, new_token
from tests.approval_holds import decide, pending_for
from tests.fakes.resend_server import FakeResend
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for
from tests.mcp_front.conftest import Connect, mcp_http, text_of

PAY = {"amount": 700, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}


async def test_a_retried_call_is_one_payment_and_a_new_key_is_a_new_one(
    kb: KeybrakeThread, fake_stripe: FakeStripe, connect: Connect
) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    async with connect(kb.url, key["key"]) as c:
        first = await c.call_tool("stripe_create_payment_intent", PAY)
        again = await c.call_tool("stripe_create_payment_intent", PAY)  # the client's retry: same arguments
        assert not first.is_error and not again.is_error, text_of(again)
        assert first.structured_content and again.structured_content
        assert again.structured_content["id"] == first.structured_content["id"]
        assert len(fake_stripe.payment_intents) == 1
        chosen = {**PAY, "idempotency_key": "order-2"}  # the agent means a second, identical payment
        second = await c.call_tool("stripe_create_payment_intent", chosen)
        assert second.structured_content and second.structured_content["id"] != first.structured_content["id"]
        replay = await c.call_tool("stripe_create_payment_intent", chosen)
        assert replay.structured_content and replay.structured_content["id"] == second.structured_content["id"]
    assert len(fake_stripe.payment_intents) == 2
    keys = [r["idempotency_key"] for r in kb.audit(key_id=key["id"])]
    # Each sent as this vault key's own (keyed hash): the derived one twice, the client's twice.
    assert sorted(keys.count(k) for k in set(keys)) == [2, 2] and all(k.startswith("mcp-") for k in keys)


async def test_bad_arguments_never_leave(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    async with mcp_http(kb.url, key["key"]) as c:
        missing = await c.call_tool("stripe_create_payment_intent", {"amount": 100})
        assert missing.is_error and "'currency' is a required property" in text_of(missing)
        wrong = await c.call_tool("stripe_create_payment_intent", {"amount": "a lot", "currency": "usd"})
        assert wrong.is_error and "amount" in text_of(wrong) and "Nothing was sent" in text_of(wrong)
        for intent in ("../../v1/transfers", "pi_1/capture", "pi_1%2F..", "..", ""):
            escaped = await c.call_tool("stripe_capture_payment_intent", {"intent": intent})
            assert escaped.is_error and "intent" in text_of(escaped), intent
        null = await c.call_tool("stripe_create_customer", {"email": None})
        assert null.is_error and "null" in text_of(null)
        other = await c.call_tool("twilio_send_sms", {"To": "+14155550100", "Body": "x"})
        assert other.is_error and "No tool 'twilio_send_sms' for this vault key (stripe)" in text_of(other)
    # A code to branch on, as for a refusal (newcomer: these had no _meta at all).
    for result, code in ((missing, "arguments_invalid"), (wrong, "arguments_invalid"), (null, "arguments_invalid")):
        assert (result.meta or {})["keybrake"] == {"code": code}
    assert (escaped.meta or {})["keybrake"] == {"code": "arguments_invalid"}
    assert (other.meta or {})["keybrake"] == {"code": "tool_unknown"}
    # JSON may escape a lone surrogate, which no encoding can send on: refused as unparseable before any
    # tool runs (and `build_request` refuses one too: tests/vendors/test_tool_build_errors.py)
    call = {"name": "stripe_create_customer", "arguments": {"email": "@@@"}}
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": call}).replace("@@@", "\\ud800")
    headers = {"Authorization": f"Bearer {key['key']}", "Accept": "application/json, text/event-stream"}
    headers["MCP-Protocol-Version"] = "2025-06-18"
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"{kb.url}/_keybrake/mcp", content=body, headers={**headers, "content-type": "application/json"}
        )
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700, r.text
    assert fake_stripe.requests == []


async def test_the_endpoint_refuses_before_reading(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    url = f"{kb.url}/_keybrake/mcp"
    async with httpx.AsyncClient(timeout=30) as http:
        bare = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert bare.status_code == 401 and bare.json()["error"]["code"] == "key_missing"
        assert bare.headers["www-authenticate"].startswith("Bearer")
        forged = await http.post(url, json={}, headers={"Authorization": "Bearer vault_key_nope"})
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "key_invalid"
        stream = await http.get(url, headers={"Authorization": f"Bearer {key['key']}"})
        assert stream.status_code == 405 and stream.headers["allow"] == "POST"
        big = await http.post(
            url,
            content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
            headers={"Authorization": f"Bearer {key['key']}", "content-type": "application/json"},
        )
        assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
        vendor_secret = await http.post(url, json={}, headers={"Authorization": "Bearer sk_live_abc123"})
        assert vendor_secret.status_code == 401 and "sk_live_abc123" not in vendor_secret.text


async def test_resend_send_and_batch(kbr: KeybrakeThread, fake_resend: FakeResend, connect: Connect) -> None:
    key = kbr.issue({"daily_send_cap": 3, "allowed_to_domains": ["example.com"]}, vendor="resend", label="test:mail")
    one = {"from": "a@acme.test", "to": ["b@example.com"], "subject": "hi", "text": "hello"}
    async with connect(kbr.url, key["key"]) as c:
        assert sorted(t.name for t in (await c.list_tools()).tools) == ["resend_send_batch", "resend_send_email"]
        sent = await c.call_tool("resend_send_email", one)
        assert not sent.is_error, text_of(sent)
        batch = await c.call_tool("resend_send_batch", {"emails": [one, {**one, "to": "c@example.com"}]})
        assert not batch.is_error, text_of(batch)
        over = await c.call_tool("resend_send_batch", {"emails": [{**one, "subject": "x"}, {**one, "subject": "y"}]})
        assert over.is_error and "send_cap_exceeded" in text_of(over)
        outside = await c.call_tool("resend_send_email", {**one, "to": "d@elsewhere.test", "subject": "z"})
        assert outside.is_error and "scope_violation" in text_of(outside)
    assert len(fake_resend.emails) == 3
    transports = {r["metadata"]["mcp"]["transport"] for r in kbr.audit(key_id=key["id"])}
    assert transports == {"stdio" if "stdio" in connect.__name__ else "streamable-http"}


def test_keybrake_mcp_says_what_is_missing(
    kb: KeybrakeThread, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("KEYBRAKE_")]:
        monkeypatch.delenv(name)
    runner = CliRunner()
    no_key = runner.invoke(main, ["mcp", "--url", kb.url])
    assert no_key.exit_code == 2 and "KEYBRAKE_VAULT_KEY is not set" in no_key.stderr and no_key.stdout == ""
    monkeypatch.setenv("KEYBRAKE_VAULT_KEY", "vault_key_not-a-real-one")
    malformed = runner.invoke(main, ["mcp", "--url", kb.url])
    assert malformed.exit_code == 2 and "is not a vault key" in malformed.stderr
    key = kb.issue({"daily_usd_cap": 1})
    monkeypatch.setenv("KEYBRAKE_VAULT_KEY", key["key"])
    bad_url = runner.invoke(main, ["mcp", "--url", "ftp://x"])
    assert bad_url.exit_code == 2 and "not an http:// or https:// URL" in bad_url.stderr
    down = runner.invoke(main, ["mcp", "--url", "http://127.0.0.1:9"])
    assert down.exit_code == 1 and "nothing answers at http://127.0.0.1:9" in down.stderr
    assert "--url or KEYBRAKE_URL" in down.stderr and key["key"] not in down.stderr + down.stdout
    elsewhere = runner.invoke(main, ["mcp", "--url", fake_stripe.base_url])  # a server, not Keybrake
    assert elsewhere.exit_code == 1 and "did not answer as a Keybrake server's proxy port" in elsewhere.stderr
    with kb.admin() as admin:
        assert admin.delete(f"/v1/keys/{key['id']}", params={"reason": "run over"}).status_code == 200
    revoked = runner.invoke(main, ["mcp", "--url", kb.url])
    assert revoked.exit_code == 1 and "refused the vault key (key_revoked)" in revoked.stderr
    assert revoked.stdout == ""
    monkeypatch.setenv("KEYBRAKE_VAULT_KEY", new_token(VAULT_PREFIX))  # well formed, never issued
    unknown = runner.invoke(main, ["mcp", "--url", kb.url])
    assert unknown.exit_code == 1 and "refused the vault key (key_invalid)" in unknown.stderr


async def test_a_tool_call_held_for_approval_waits_then_goes_or_stops(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 100, "approval_above_usd": 5, "approval_timeout_seconds": 60})
    async with mcp_http(kb.url, key["key"]) as c:
        held = asyncio.ensure_future(c.call_tool("stripe_create_payment_intent", PAY))  # $7 > $5: a person decides
        approval = (await asyncio.to_thread(pending_for, kb, key["id"]))[0]
        assert not held.done() and fake_stripe.payment_intents == {}
        assert (await asyncio.to_thread(decide, kb, approval["id"], "approve")).status_code == 200
        approved = await held
        assert (
            not approved.is_error
            and approved.structured_content
            and approved.structured_content["status"] == "succeeded"
        )
        again = asyncio.ensure_future(c.call_tool("stripe_create_payment_intent", {**PAY, "description": "second"}))
        second = (await asyncio.to_thread(pending_for, kb, key["id"]))[0]
        assert (await asyncio.to_thread(decide, kb, second["id"], "deny", {"reason": "not today"})).status_code == 200
        denied = await again
    assert denied.is_error and "approval_denied" in text_of(denied) and "not today" in text_of(denied)
    assert len(fake_stripe.payment_intents) == 1


def test_a_held_tool_call_whose_client_hangs_up_is_never_sent(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """As for a proxied call: the hold watches the MCP request's connection; hanging up ends it
    (abandoned), and nothing reaches the vendor."""
    key = kb.issue({"daily_usd_cap": 100, "approval_above_usd": 5, "approval_timeout_seconds": 60})
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    body = json.dumps({**call, "params": {"name": "stripe_create_payment_intent", "arguments": PAY}}).encode()
    u = urlsplit(kb.url)
    assert u.hostname is not None and u.port is not None
    s = socket.create_connection((u.hostname, u.port))
    head = (
        f"POST /_keybrake/mcp HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {key['key']}\r\n"
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        f"MCP-Protocol-Version: 2025-06-18\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    s.sendall(head.encode() + body)
    approval = pending_for(kb, key["id"])[0]
    s.close()  # the agent hangs up while a person has not decided yet

    def ended() -> dict[str, object] | None:
        with kb.admin() as admin:
            got: dict[str, object] = admin.get(f"/v1/approvals/{approval['id']}").json()
        return got if got["state"] != "pending" else None

    gone = wait_for(ended, 10)
    assert gone["state"] == "cancelled" and "disconnected" in str(gone), gone
    with kb.admin() as admin:
        assert admin.post(f"/v1/approvals/{approval['id']}/approve", json={}).status_code == 409  # too late
    assert fake_stripe.payment_intents == {}


def test_refusals_of_a_revoked_key_keep_its_bound_run_id(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 5}, metadata={"agent_run_id": "run-bound-7"})
    with kb.admin() as admin:
        assert admin.delete(f"/v1/keys/{key['id']}").status_code == 200
    r = httpx.post(f"{kb.url}/stripe/v1/customers", data={"email": "a@example.com"}, auth=("", key["key"]), timeout=30)
    assert r.status_code == 401
    rows = kb.audit(agent_run_id="run-bound-7")
    assert [row["verdict"] for row in rows] == ["denied_key_revoked"]
