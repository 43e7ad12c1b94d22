"""Red-team findings against the MCP front, as a prompt-injected agent holding one vault key.

Each test is a fault found by attacking the front as a prompt-injected agent would; each failed
before its fix and is kept as a regression test. Raw JSON-RPC over httpx so the exact bytes are the
agent's.
"""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keybrake.core.policy import Policy
from keybrake.vendors.tool_catalog import RESEND_TOOLS, STRIPE_TOOLS, TWILIO_TOOLS
from keybrake.vendors.tools import blast_radius
from tests.fakes.resend_server import FakeResend
from tests.fakes.stripe_server import FakeStripe
from tests.fakes.twilio_server import FakeTwilioThread
from tests.harness import KeybrakeThread
from tests.mcp_front.conftest import GENEROUS

ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
# The 2026-07-28 ("modern") protocol: the SDK routes a request carrying this version to its
# single-exchange entry, which parses the body with `json.loads` rather than pydantic's parser.
MODERN = "2026-07-28"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


def post(kb: KeybrakeThread, vault_key: str, body: str | bytes, **headers: str) -> httpx.Response:
    """POST `body` to the MCP endpoint with the vault key as Bearer."""
    return httpx.post(
        f"{kb.url}/_keybrake/mcp",
        content=body,
        headers={**ACCEPT, "authorization": f"Bearer {vault_key}", **headers},
        timeout=60,
    )


def tool_call(name: str, arguments: dict[str, Any], *, modern: bool = False) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if modern:
        params["_meta"] = MODERN_META
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


def modern_headers(name: str) -> dict[str, str]:
    return {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": name}


@pytest.fixture
def kb_small(tmp_path: Path, fake_stripe: FakeStripe) -> Iterator[KeybrakeThread]:
    """Keybrake on the fake Stripe with a 64 KiB body limit (KEYBRAKE_MAX_BODY_BYTES)."""
    with KeybrakeThread(tmp_path / "data", max_body_bytes=64 * 1024, **GENEROUS) as server:
        server.add_credential(fake_stripe.base_url)
        yield server


def test_a_small_call_cannot_make_the_proxy_build_a_huge_body(
    kb_small: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    # An open parameter (Stripe tools send on what they do not declare) with a long name and a
    # list: form_nested writes `name[0]=1&name[1]=1&…`, the whole name again for every item.
    key = kb_small.issue({"daily_usd_cap": 100})
    for name, refusal in (("n" * 3000, "longer than 512 characters"), ("m" * 400, "larger than 65536 bytes")):
        args = {"email": "a@example.com", name: [1] * 4000}
        body = json.dumps(tool_call("stripe_create_customer", args))
        assert len(body) < 20_000  # well inside the 64 KiB limit the endpoint reads within
        tracemalloc.start()
        try:
            answer = post(kb_small, key["key"], body)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        result = answer.json()["result"]
        assert result["isError"] and refusal in result["content"][0]["text"], result
        # The request may use a few times its own size and the body limit, not 12 MB (3000 × 4000).
        assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a {len(body)}-byte request"
    assert fake_stripe.requests == []


def test_a_lone_surrogate_is_a_tool_error_not_a_protocol_failure(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    body = json.dumps(tool_call("stripe_create_customer", {"description": "SURROGATE"}, modern=True))
    answer = post(kb, key["key"], body.replace("SURROGATE", "\\ud800"), **modern_headers("stripe_create_customer"))
    assert answer.status_code == 200
    doc = answer.json()
    assert "error" not in doc, doc  # today: {"code": -32603, "message": "Internal server error"}
    assert doc["result"]["isError"] and "not valid Unicode" in doc["result"]["content"][0]["text"]
    assert fake_stripe.requests == []


def test_the_same_surrogate_on_the_handshake_path_is_refused_as_a_parse_error(kb: KeybrakeThread) -> None:
    # Held: pydantic's parser (the 2025 handshake-era path) refuses a lone surrogate outright.
    key = kb.issue({"daily_usd_cap": 100})
    body = json.dumps(tool_call("stripe_create_customer", {"description": "SURROGATE"}))
    answer = post(kb, key["key"], body.replace("SURROGATE", "\\ud800"))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == -32700


def test_another_runs_idempotency_key_does_not_return_its_payment(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    run_a = kb.issue({"daily_usd_cap": 100}, label="tenant-a:run-1")
    run_b = kb.issue({"daily_usd_cap": 100}, label="tenant-b:run-2")
    # Agents pick plain keys ("order-1"); run B's injected agent repeats run A's call and key.
    pay = {"amount": 700, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    args = {**pay, "idempotency_key": "order-1"}
    first = post(kb, run_a["key"], json.dumps(tool_call("stripe_create_payment_intent", args))).json()["result"]
    second = post(kb, run_b["key"], json.dumps(tool_call("stripe_create_payment_intent", args))).json()["result"]
    assert not first["isError"], first
    a_intent = first["structuredContent"]["id"]
    # Today run B is answered with run A's PaymentIntent (its client_secret too), audited as B's own
    # allowed payment, and no second payment exists.
    b_intent = (second.get("structuredContent") or {}).get("id")
    assert b_intent != a_intent, f"run B was handed run A's {a_intent} ({second['structuredContent']['client_secret']})"
    assert a_intent not in json.dumps(second)


def test_a_value_json_cannot_carry_is_never_sent(kbr: KeybrakeThread, fake_resend: FakeResend) -> None:
    key = kbr.issue({"daily_send_cap": 5, "allowed_to_domains": ["example.com"]}, vendor="resend", label="t:mail")
    one = {"from": "a@acme.test", "to": ["b@example.com"], "subject": "hi", "text": "x", "tags": "NOT_JSON"}
    body = json.dumps(tool_call("resend_send_email", one, modern=True)).replace('"NOT_JSON"', "NaN")
    answer = post(kbr, key["key"], body, **modern_headers("resend_send_email")).json()
    assert answer["result"]["isError"], answer
    # Today the fake Resend received b'{…,"tags":NaN}' and answered 422.
    assert [r.body for r in fake_resend.requests if r.method == "POST"] == []


@pytest.mark.timing  # measures how long /healthz waits: alone, after the parallel passes
def test_an_invalid_call_does_not_stall_the_proxy(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    # 10,000 subscription items each breaking two rules (no price, an unknown member): ~100 KB.
    args = {"customer": "cus_1", "items": [{"x": 1}] * 10_000}
    body = json.dumps(tool_call("stripe_create_subscription", args))
    stalled: list[float] = []

    def other_tenant() -> None:
        time.sleep(0.3)  # while the invalid call is being checked
        started = time.monotonic()
        httpx.get(f"{kb.url}/healthz", timeout=60)
        stalled.append(time.monotonic() - started)

    waiter = threading.Thread(target=other_tenant)
    waiter.start()
    started = time.monotonic()
    answer = post(kb, key["key"], body).json()["result"]
    took = time.monotonic() - started
    waiter.join()
    assert answer["isError"] and "Nothing was sent" in answer["content"][0]["text"]
    assert fake_stripe.requests == []
    assert stalled[0] < 0.5, f"/healthz waited {stalled[0]:.1f} s behind one invalid tools/call ({took:.1f} s)"


def test_idempotency_key_on_a_tool_without_one_is_refused(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    # docs/mcp.md: "The client may set it in the idempotency_key argument" — an agent retrying an
    # SMS with one believes the retry is one send.
    key = kbt.issue({"daily_usd_cap": 10}, vendor="twilio")
    sms = {"To": "+14155550100", "From": "+14155550000", "Body": "your code is 1234", "idempotency_key": "otp-1"}
    answers = [post(kbt, key["key"], json.dumps(tool_call("twilio_send_sms", sms))).json()["result"] for _ in range(2)]
    sent = [r.body for r in fake_twilio.fake.requests if r.method == "POST"]
    # Today: two messages, each with `idempotency_key=otp-1` in Twilio's form.
    assert answers[0]["isError"] and "idempotency_key" in answers[0]["content"][0]["text"], sent
    assert sent == []


def test_only_reads_are_described_as_reads() -> None:
    policy = Policy()
    wrong = [
        t.name
        for t in STRIPE_TOOLS + TWILIO_TOOLS + RESEND_TOOLS
        if t.method != "GET" and "Reads only" in blast_radius(t, policy, "2030-01-01T00:00:00Z")
    ]
    assert wrong == []


def test_a_get_tools_query_is_bounded_like_a_body(kb_small: KeybrakeThread) -> None:
    key = kb_small.issue({"daily_usd_cap": 100})
    # 30,000 '[' (30 KB of JSON, inside the 64 KiB limit) percent-encode to a 90 KB query string.
    answer = post(kb_small, key["key"], json.dumps(tool_call("stripe_list_customers", {"email": "[" * 30_000})))
    result = answer.json()["result"]
    # Refused before anything is sent (no audit row: nothing reached the pipeline, as for any bad arguments).
    assert result["isError"] and "query string would be larger than 8192 bytes" in result["content"][0]["text"]
    assert kb_small.audit(key_id=key["id"]) == []


def test_a_revoked_keys_calls_do_not_log_errors(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    with kb.admin() as admin:
        assert admin.delete(f"/v1/keys/{key['id']}", params={"reason": "run over"}).status_code == 200
    body = json.dumps(tool_call("stripe_create_customer", {"email": "a@example.com"}, modern=True))
    before = len(kb.logs.lines)
    for _ in range(3):  # an injected agent can repeat this as fast as it likes
        result = post(kb, key["key"], body, **modern_headers("stripe_create_customer")).json()["result"]
        assert result["isError"] and result["_meta"]["keybrake"]["code"] == "key_revoked"
    errors = [json.loads(line) for line in kb.logs.lines[before:] if json.loads(line)["level"] == "error"]
    assert errors == [], [e["msg"] for e in errors]
    assert fake_stripe.requests == []
