"""The object ledger and pre-flight lookups (docs/policy.md, what a call costs; docs/policy.md)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from tests.fakes.stripe_server import FakeStripe
from tests.harness import REAL_SECRET, KeybrakeThread


def via(kb: KeybrakeThread, key: dict[str, Any]) -> stripe.StripeClient:
    return stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)


def direct(fake: FakeStripe) -> stripe.StripeClient:
    """Straight to the fake Stripe with the real secret: objects Keybrake never saw."""
    return stripe.StripeClient(REAL_SECRET, base_addresses={"api": fake.base_url}, max_network_retries=0)


def used(kb: KeybrakeThread, key: dict[str, Any]) -> float:
    with kb.admin() as c:
        return float(c.get(f"/v1/keys/{key['id']}").json()["usage"]["daily_usd"]["used"])


def test_concurrent_confirms_cannot_exceed_the_cap(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    sc = via(kb, key)
    intents = [
        sc.v1.payment_intents.create({"amount": 300, "currency": "usd", "payment_method": "pm_card_visa"})
        for _ in range(6)
    ]  # created without confirm: free, but the ledger learns their amounts
    assert used(kb, key) == 0
    http = stripe.HTTPXClient()
    ac = stripe.StripeClient(
        key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0, http_client=http
    )

    async def confirm_all() -> list[Any]:
        async def one(pi_id: str) -> Any:
            try:
                return await ac.v1.payment_intents.confirm_async(pi_id)
            except stripe.StripeError as exc:
                return exc

        try:
            return await asyncio.gather(*(one(pi.id) for pi in intents))
        finally:
            await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in stripe-python

    results = asyncio.run(confirm_all())
    assert sum(1 for r in results if not isinstance(r, Exception)) == 3
    assert all(r.http_status == 429 for r in results if isinstance(r, stripe.StripeError))
    assert len([r for r in fake_stripe.requests if r.path.endswith("/confirm")]) == 3
    assert used(kb, key) == 9
    assert not [r for r in fake_stripe.requests if r.method == "GET"]  # all from the ledger


def test_confirm_of_an_unknown_payment_intent_makes_one_preflight_get(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    pi = direct(fake_stripe).v1.payment_intents.create(
        {"amount": 700, "currency": "usd", "payment_method": "pm_card_visa", "customer": "cus_A"}
    )
    fake_stripe.reset()
    key = kb.issue({"daily_usd_cap": 6, "customer_allowlist": ["cus_A"]})
    with pytest.raises(stripe.RateLimitError):
        via(kb, key).v1.payment_intents.confirm(pi.id)  # $7 from the pre-flight GET > $6 cap
    with kb.admin() as c:
        c.patch(f"/v1/keys/{key['id']}", json={"policy": {"daily_usd_cap": 10}})
    assert via(kb, key).v1.payment_intents.confirm(pi.id).status == "succeeded"
    gets = [r for r in fake_stripe.requests if r.method == "GET"]
    assert [r.path for r in gets] == [f"/v1/payment_intents/{pi.id}"]
    assert gets[0].headers["authorization"] == f"Bearer {REAL_SECRET}"
    rows = sorted(kb.audit(key_id=key["id"]), key=lambda r: r["id"])
    assert rows[0]["preflight_lookup"]["status"] == 200 and rows[0]["customer_scope_id"] == "cus_A"
    assert rows[1]["preflight_lookup"] is None and rows[1]["cost_usd"] == 7
    assert used(kb, key) == 7


def test_authorise_then_capture_counts_the_amount_once(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 20})
    sc = via(kb, key)
    pi = sc.v1.payment_intents.create(
        {
            "amount": 500,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "capture_method": "manual",
        }
    )
    assert pi.status == "requires_capture" and used(kb, key) == 5
    captured = sc.v1.payment_intents.capture(pi.id)
    assert captured.status == "succeeded" and used(kb, key) == 5
    capture_row = kb.audit(key_id=key["id"])[0]
    assert capture_row["path"].endswith("/capture") and capture_row["reserved_usd"] == 0
    assert capture_row["cost_usd"] == 0
    auth = sc.v1.charges.create({"amount": 400, "currency": "usd", "source": "tok_visa", "capture": False})
    sc.v1.charges.capture(auth.id)
    assert used(kb, key) == 9  # the charge authorisation counted when authorised, its capture added nothing


def test_refund_of_another_customers_charge_is_refused(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    theirs = direct(fake_stripe).v1.charges.create(
        {"amount": 900, "currency": "usd", "customer": "cus_OTHER", "source": "tok_visa"}
    )
    mine = direct(fake_stripe).v1.charges.create(
        {"amount": 900, "currency": "usd", "customer": "cus_A", "source": "tok_visa"}
    )
    key = kb.issue({"customer_allowlist": ["cus_A"], "daily_usd_cap": 100})
    with pytest.raises(stripe.PermissionError) as info:
        via(kb, key).v1.refunds.create({"charge": theirs.id})
    assert info.value.error is not None and info.value.error.code == "scope_violation"
    # The denial tells the agent nothing about an object it may not see; the operator's row does.
    assert "cus_OTHER" not in str(info.value.user_message) and "cus_OTHER" not in str(info.value.json_body)
    denied = kb.audit(key_id=key["id"], verdict="denied")[0]
    assert "cus_OTHER" in denied["reason"] and denied["preflight_lookup"]["status"] == 200
    refund = via(kb, key).v1.refunds.create({"charge": mine.id, "amount": 300})
    assert refund.amount == 300
    posts = [r for r in fake_stripe.requests if r.method == "POST" and r.path == "/v1/refunds"]
    assert len(posts) == 1 and posts[0].form["charge"] == [mine.id]


def test_content_length_with_transfer_encoding_is_refused(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    body = b"amount=100&currency=usd"
    raw = (
        b"POST /stripe/v1/charges HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {key['key']}\r\n".encode()
        + b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", kb.port), timeout=5) as s:
        s.sendall(raw)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    assert fake_stripe.requests == []


def test_requires_action_keeps_the_reservation_until_reconciled(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    with KeybrakeThread(tmp_path / "d", reconcile_interval_s=0.2) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 100})
        sc = via(kb, key)
        done, dropped = (
            sc.v1.payment_intents.create(
                {
                    "amount": amount,
                    "currency": "usd",
                    "confirm": True,
                    "payment_method": "pm_card_authenticationRequired",
                }
            )
            for amount in (1200, 800)
        )
        assert done.status == dropped.status == "requires_action"
        with kb.admin() as c:
            usage = c.get(f"/v1/keys/{key['id']}").json()["usage"]["daily_usd"]
        assert (usage["used"], usage["reserved"]) == (0, 20)  # kept as estimates
        # the customer finishes one authentication and abandons the other, outside Keybrake
        fake_stripe.payment_intents[done.id].update(status="succeeded", amount_received=1200)
        fake_stripe.payment_intents[dropped.id].update(status="canceled")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = {r["vendor_object_id"]: r for r in kb.audit(key_id=key["id"])}
            if all(r["cost_source"] != "estimate" for r in rows.values()):
                break
            time.sleep(0.1)
        assert (rows[done.id]["cost_usd"], rows[done.id]["cost_source"]) == (12, "response")
        assert rows[done.id]["settled_by"] == "reconciliation"
        assert rows[done.id]["cap_usage_after_usd"] == 12  # the usage after its own settlement, not 0
        assert (rows[dropped.id]["cost_usd"], rows[dropped.id]["cost_kind"]) == (0, "none")
        with kb.admin() as c:
            usage = c.get(f"/v1/keys/{key['id']}").json()["usage"]["daily_usd"]
        assert (usage["used"], usage["reserved"]) == (12, 0)


# -- the ledger counts what Keybrake counted (issue: money counted from an object's status) --


def test_a_browser_confirmation_is_counted_when_captured_through_keybrake(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    """PaymentIntents created through Keybrake without `confirm`, confirmed outside (the usual browser
    flow with the publishable key) and then captured through Keybrake: five of them moved $250 under
    a $10 cap when "already counted" came from the object's status."""
    key = kb.issue({"daily_usd_cap": 10})
    sc = via(kb, key)
    refused = 0
    for _ in range(5):
        pi = sc.v1.payment_intents.create(
            {"amount": 5000, "currency": "usd", "payment_method": "pm_card_visa", "capture_method": "manual"}
        )
        direct(fake_stripe).v1.payment_intents.confirm(pi.id)  # the browser, outside Keybrake
        assert sc.v1.payment_intents.retrieve(pi.id).status == "requires_capture"  # the ledger sees it
        with pytest.raises(stripe.RateLimitError) as info:
            sc.v1.payment_intents.capture(pi.id)
        assert info.value.error is not None and info.value.error.code == "spend_cap_exceeded"
        refused += 1
    assert refused == 5 and used(kb, key) == 0
    assert not [r for r in fake_stripe.requests if r.path.endswith("/capture")]
    # with room under the cap, the capture counts the whole amount (Keybrake counted none of it)
    with kb.admin() as c:
        c.patch(f"/v1/keys/{key['id']}", json={"policy": {"daily_usd_cap": 300}})
    for row in list(fake_stripe.payment_intents.values()):
        assert sc.v1.payment_intents.capture(row["id"]).status == "succeeded"
    assert used(kb, key) == 250


def test_an_amount_raised_by_an_update_prices_the_confirm_that_follows(
    kb: KeybrakeThread, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The update's answer teaches the new amount; it must be durable before that answer returns,
    however slowly settlements are written (here: each batch takes 300 ms once the PaymentIntent
    is known to the ledger at $1)."""
    key = kb.issue({"daily_usd_cap": 10})
    sc = via(kb, key)
    pi = sc.v1.payment_intents.create({"amount": 100, "currency": "usd", "payment_method": "pm_card_visa"})
    assert kb.app is not None
    store = kb.app.settler._store
    settle_many = store.settle_many

    async def slow_settle(jobs: list[Any]) -> None:
        await asyncio.sleep(0.3)
        await settle_many(jobs)

    monkeypatch.setattr(store, "settle_many", slow_settle)
    sc.v1.payment_intents.update(pi.id, {"amount": 900_000})  # free: moves nothing by itself
    with pytest.raises(stripe.RateLimitError):  # priced at $9,000 at once, not at the $1 seen before
        sc.v1.payment_intents.confirm(pi.id)
    assert not [r for r in fake_stripe.requests if r.path.endswith("/confirm")]
    assert fake_stripe.payment_intents[pi.id]["status"] == "requires_confirmation"


def test_a_capture_for_less_releases_what_will_never_move(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 160})
    sc = via(kb, key)
    pi = sc.v1.payment_intents.create(
        {
            "amount": 10000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "capture_method": "manual",
        }
    )
    assert used(kb, key) == 100
    sc.v1.payment_intents.capture(pi.id, {"amount_to_capture": 4000})
    assert used(kb, key) == 40  # Stripe released the other $60
    rows = sorted(kb.audit(key_id=key["id"]), key=lambda r: r["id"])
    assert rows[0]["cost_usd"] == 40 and "released by" in rows[0]["reason"]
    assert rows[1]["cost_usd"] == 0 and "released $60" in rows[1]["reason"]
    # the freed room is usable: a $110 charge fits (40 + 110 = 150 of 160)
    assert sc.v1.charges.create({"amount": 11000, "currency": "usd", "source": "tok_visa"}).amount == 11000
    # and a cancel releases a whole authorisation
    held = sc.v1.payment_intents.create(
        {
            "amount": 1000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "capture_method": "manual",
        }
    )
    with pytest.raises(stripe.RateLimitError):
        sc.v1.charges.create({"amount": 100, "currency": "usd", "source": "tok_visa"})  # 160 + 1 > 160
    assert used(kb, key) == 160
    assert sc.v1.payment_intents.cancel(held.id).status == "canceled"
    assert used(kb, key) == 150


def test_each_refund_through_the_older_endpoint_counts_its_own_amount(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    sc = via(kb, key)
    charge = sc.v1.charges.create({"amount": 3000, "currency": "usd", "source": "tok_visa"})
    h = {"Authorization": f"Bearer {key['key']}"}
    for amount in (1000, 500):
        r = httpx.post(f"{kb.url}/stripe/v1/charges/{charge.id}/refund", data={"amount": amount}, headers=h)
        assert r.status_code == 200 and r.json()["object"] == "charge"
    r = httpx.post(f"{kb.url}/stripe/v1/charges/{charge.id}/refund", headers=h)  # the remaining $15
    assert r.status_code == 200 and r.json()["amount_refunded"] == 3000
    refunds = sorted(
        (row for row in kb.audit(key_id=key["id"]) if row["cost_kind"] == "refund"), key=lambda row: row["id"]
    )
    assert [row["cost_usd"] for row in refunds] == [10, 5, 15]  # not the running total (10, 15, 30)
    assert used(kb, key) == 30 + 30
