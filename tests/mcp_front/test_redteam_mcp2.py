"""Second red-team round against the MCP front, as a prompt-injected agent holding one vault key.

Each test is a fault found by attacking the front, kept as a regression test now it is fixed.
Raw JSON-RPC over httpx so the exact bytes are the agent's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keybrake.vendors.tool_catalog import STRIPE_TOOLS
from keybrake.vendors.tools import ToolInputError, build_request, derived_idempotency_key
from tests.fakes.resend_server import FakeResend
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread
from tests.mcp_front.test_redteam_mcp import ACCEPT, modern_headers, tool_call
from tests.waits import healthz_while


def _stall_behind(kb: KeybrakeThread, vault_key: str, body: bytes, *, chunked: bool) -> tuple[float, dict[str, Any]]:
    """(how long /healthz waited while `body` was answered, the tools/call result)."""
    stalled: list[float] = []

    def other_tenant() -> None:
        time.sleep(0.4)  # while the call is being checked
        started = time.monotonic()
        httpx.get(f"{kb.url}/healthz", timeout=60)
        stalled.append(time.monotonic() - started)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 16 * 1024):
            yield body[i : i + 16 * 1024]

    waiter = threading.Thread(target=other_tenant)
    waiter.start()
    answer = httpx.post(
        f"{kb.url}/_keybrake/mcp",
        content=chunks() if chunked else body,
        headers={**ACCEPT, "authorization": f"Bearer {vault_key}"},
        timeout=120,
    )
    waiter.join()
    return stalled[0], answer.json()["result"]


def _costly_invalid_call() -> bytes:
    # ~0.9 MB (inside Stripe's 1 MiB limit): every item valid but the last, so the first-error-only
    # check still walks the whole list before it finds the one problem.
    items: list[dict[str, object]] = [{"price": "price_1", "quantity": 1}] * 25_000 + [{"x": 1}]
    return json.dumps(tool_call("stripe_create_subscription", {"customer": "cus_1", "items": items})).encode()


@pytest.mark.timing  # measures how long /healthz waits: alone, after the parallel passes
def test_a_large_call_held_off_the_event_loop_by_content_length(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    # Held: with a Content-Length above 64 KiB the check runs in a thread.
    key = kb.issue({"daily_usd_cap": 100})
    stalled, result = _stall_behind(kb, key["key"], _costly_invalid_call(), chunked=False)
    assert result["isError"] and "Nothing was sent" in result["content"][0]["text"]
    assert stalled < 0.5, f"/healthz waited {stalled:.2f} s"
    assert fake_stripe.requests == []


@pytest.mark.timing  # measures how long /healthz waits: alone, after the parallel passes
def test_a_chunked_large_call_does_not_stall_the_proxy(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    stalled, result = _stall_behind(kb, key["key"], _costly_invalid_call(), chunked=True)
    assert result["isError"] and "Nothing was sent" in result["content"][0]["text"]
    assert fake_stripe.requests == []
    assert stalled < 0.5, f"/healthz waited {stalled:.2f} s behind one chunked tools/call"


def test_another_run_cannot_replay_a_derived_idempotency_key(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    run_a = kb.issue({"daily_usd_cap": 100}, label="tenant-a:run-1")
    run_b = kb.issue({"daily_usd_cap": 100}, label="tenant-b:run-2")
    pay = {"amount": 700, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    first = httpx.post(
        f"{kb.url}/_keybrake/mcp",
        json=tool_call("stripe_create_payment_intent", {**pay, "idempotency_key": "order-1"}),
        headers={**ACCEPT, "authorization": f"Bearer {run_a['key']}"},
        timeout=60,
    ).json()["result"]
    assert not first["isError"], first
    # Run B's injected agent knows run A's key id (it is no secret: response headers, audit, logs)
    # and computes the key the MCP front sent for run A, as docs/mcp.md describes it.
    stolen = derived_idempotency_key(run_a["id"], "", {"idempotency_key": "order-1"})
    form = "amount=700&currency=usd&payment_method=pm_card_visa&confirm=true"
    second = httpx.post(
        f"{kb.url}/stripe/v1/payment_intents",
        content=form,
        headers={
            "authorization": f"Bearer {run_b['key']}",
            "content-type": "application/x-www-form-urlencoded",
            "idempotency-key": stolen,
        },
        timeout=60,
    )
    a_intent = first["structuredContent"]["id"]
    assert a_intent not in second.text, f"run B was handed run A's {a_intent}: {second.text[:300]}"


def test_an_integral_float_is_not_sent_as_a_float(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    args = {"amount": 700.0, "currency": "usd"}
    result = httpx.post(
        f"{kb.url}/_keybrake/mcp",
        json=tool_call("stripe_create_payment_intent", args),
        headers={**ACCEPT, "authorization": f"Bearer {key['key']}"},
        timeout=60,
    ).json()["result"]
    sent = [r.body for r in fake_stripe.requests if r.method == "POST"]
    # Either encoded as the integer it is (amount=700) or refused before anything is sent.
    assert all(b"amount=700.0" not in body for body in sent), (sent, result["content"][0]["text"][:200])


def test_deep_arguments_are_a_tool_error_not_a_crash(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    before = len(kb.logs.lines)
    answers = []
    # The depth that parses but does not encode depends on the stack at each point: try a band.
    for depth in range(900, 1000, 2):
        args = {"amount": 700, "currency": "usd", "zz": "DEEP"}
        body = json.dumps(tool_call("stripe_create_payment_intent", args, modern=True))
        body = body.replace('"DEEP"', "[" * depth + "]" * depth)
        answer = httpx.post(
            f"{kb.url}/_keybrake/mcp",
            content=body,
            headers={
                **ACCEPT,
                "authorization": f"Bearer {key['key']}",
                **modern_headers("stripe_create_payment_intent"),
            },
            timeout=60,
        ).json()
        answers.append((depth, answer.get("error", {}).get("message")))
    assert fake_stripe.requests == []
    crashed = [(d, m) for d, m in answers if m == "Internal server error"]
    errors = [json.loads(line)["msg"] for line in kb.logs.lines[before:] if json.loads(line)["level"] == "error"]
    assert crashed == [] and errors == [], (crashed, errors[:3])


def test_a_path_parameter_refusal_names_the_real_rule() -> None:
    tool = next(t for t in STRIPE_TOOLS if t.name == "stripe_retrieve_payment_intent")
    with pytest.raises(ToolInputError) as refused:
        build_request(tool, {"intent": "pi_1.json"}, "key_1")
    assert "'.'" not in str(refused.value), str(refused.value)


def test_a_retry_spelt_differently_is_the_same_payment(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """Found by the third red team: the derived idempotency key hashed the arguments as written,
    so `1500.0` for `1500` or an empty `metadata: {}` (both send the same form) made a new key and
    Stripe charged again. The key now follows the request sent (vendors/tools.py request_identity)."""
    key = kb.issue({"daily_usd_cap": 100, "max_usd_per_call": 50})
    pay = {"amount": 1500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    spellings = [pay, {**pay, "amount": 1500.0}, {**pay, "metadata": {}}, {**pay, "payment_method_types": []}]
    spellings.append(dict(reversed(pay.items())))  # the same arguments in another order
    results = []
    for args in spellings:
        results.append(
            httpx.post(
                f"{kb.url}/_keybrake/mcp",
                json=tool_call("stripe_create_payment_intent", args),
                headers={**ACCEPT, "authorization": f"Bearer {key['key']}"},
                timeout=60,
            ).json()["result"]
        )
    assert not any(r["isError"] for r in results), results
    assert len({r["structuredContent"]["id"] for r in results}) == 1
    assert len(fake_stripe.payment_intents) == 1  # one charge at Stripe, replayed four times
    assert {r["_meta"]["keybrake"]["spend_remaining_usd"] for r in results} == {"85"}
    sent = {q.headers.get("idempotency-key") for q in fake_stripe.requests if q.method == "POST"}
    assert len(sent) == 1


@pytest.mark.timing  # measures how long /healthz waits: alone, after the parallel passes
def test_a_send_of_many_small_values_does_not_stall_the_proxy(kbr: KeybrakeThread, fake_resend: FakeResend) -> None:
    """Third red team (2026-12-02): 300,000 tags (8.7 MB, a legal Resend body) through
    resend_send_email — /healthz waited 4.1 s while the pipeline parsed the request on the event
    loop (proxy/offload.py now parses a large body on a thread of its own; a body of more than
    MAX_BODY_VALUES values is refused before the MCP SDK parses it). /healthz is probed every
    20 ms for as long as the call runs. What stays on the loop is the MCP SDK's own parse of the
    JSON-RPC message."""
    key = kbr.issue({"daily_usd_cap": 1}, vendor="resend", label="test:big")
    tags = [{"name": "a", "value": "b"}] * 160_000  # 480,000 values: under MAX_BODY_VALUES
    args = {"from": "Acme <bot@mail.acme.io>", "to": "a@example.com", "subject": "s", "text": "t", "tags": tags}
    body = json.dumps(tool_call("resend_send_email", args)).encode()
    headers = {**ACCEPT, "authorization": f"Bearer {key['key']}"}
    answer, waits = healthz_while(
        kbr.url, lambda: httpx.post(f"{kbr.url}/_keybrake/mcp", content=body, headers=headers, timeout=120)
    )
    result = answer.json()["result"]
    assert not result["isError"], result["content"][0]["text"]
    assert len(fake_resend.emails) == 1
    print(f"\n/healthz behind a 4.6 MB tools/call: {len(waits)} probes, max {max(waits) * 1000:.0f} ms")
    assert max(waits) < 0.5, f"/healthz waited {max(waits):.2f} s behind one large tools/call ({len(waits)} probes)"


def test_a_tools_call_of_too_many_values_is_refused_before_the_sdk_reads_it(
    kbr: KeybrakeThread, fake_resend: FakeResend
) -> None:
    """Third red team: a 40 MB tools/call held the event loop 1.4 s in the MCP SDK's own parse.
    Past MAX_BODY_VALUES values the endpoint answers 413 before the SDK sees the body."""
    key = kbr.issue({"daily_usd_cap": 1}, vendor="resend", label="test:big")
    tags = [{"name": "a", "value": "b"}] * 200_000  # 600,000 values
    args = {"from": "Acme <bot@mail.acme.io>", "to": "a@example.com", "subject": "s", "text": "t", "tags": tags}
    r = httpx.post(
        f"{kbr.url}/_keybrake/mcp",
        content=json.dumps(tool_call("resend_send_email", args)).encode(),
        headers={**ACCEPT, "authorization": f"Bearer {key['key']}"},
        timeout=60,
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large", r.text
    assert "500,000 values" in r.json()["error"]["message"]
    assert fake_resend.emails == {}
