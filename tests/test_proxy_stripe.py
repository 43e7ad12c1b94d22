"""The official stripe SDK through a running Keybrake, against a local fake Stripe."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread
from tests.stripe_sdk import assert_secret_only, async_client, client, code_of
from tests.waits import wait_until_async


def test_sdk_flows_reach_upstream_with_the_real_secret_and_are_audited(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 100, "max_usd_per_call": 60}, metadata={"agent_run_id": "run-8f3c"})
    sc = client(kb, key)
    customer = sc.v1.customers.create({"email": "a@example.com"})
    pi = sc.v1.payment_intents.create(
        {"amount": 2000, "currency": "usd", "customer": customer.id, "payment_method": "pm_card_visa", "confirm": True}
    )
    assert pi.status == "succeeded"
    pi2 = sc.v1.payment_intents.create(
        {"amount": 1500, "currency": "usd", "customer": customer.id, "payment_method": "pm_card_visa"}
    )
    confirmed = sc.v1.payment_intents.confirm(pi2.id)
    assert confirmed.status == "succeeded"
    charge = sc.v1.charges.create({"amount": 500, "currency": "usd", "customer": customer.id, "source": "tok_visa"})
    refund = sc.v1.refunds.create({"charge": charge.id, "amount": 200})
    customers = sc.v1.customers.list({"limit": 3})
    assert customers.data[0].id == customer.id
    assert_secret_only(fake_stripe, key["key"])

    rows = {(r["method"], r["path"]): r for r in kb.audit(agent_run_id="run-8f3c")}
    assert len(kb.audit(key_id=key["id"])) == 7
    assert rows[("POST", "/v1/payment_intents/" + pi2.id + "/confirm")]["cost_usd"] == 15
    charge_row = rows[("POST", "/v1/charges")]
    assert (charge_row["cost_usd"], charge_row["cost_source"], charge_row["cost_kind"]) == (5, "response", "charge")
    assert charge_row["vendor_object_id"] == charge.id and charge_row["vendor_request_id"].startswith("req_")
    assert charge_row["request_summary"] == {"amount": "500", "currency": "usd", "customer": customer.id}
    assert charge_row["idempotency_key"]  # stripe-python sends one on every POST
    refund_row = rows[("POST", "/v1/refunds")]
    # priced from the ledger: the charge Keybrake saw created gives the currency (no $60 fallback)
    assert (refund_row["cost_usd"], refund_row["cost_kind"], refund_row["reserved_usd"]) == (2, "refund", 2)
    assert rows[("GET", "/v1/customers")]["cost_usd"] == 0
    for r in rows.values():
        assert r["verdict"] == "allowed" and r["status"] == 200 and r["overhead_ms"] is not None
    # 20 + 15 + 5 + 2 = 42 dollars moved; caps consume refunds too
    with kb.admin() as c:
        usage = c.get(f"/v1/keys/{key['id']}").json()["usage"]["daily_usd"]
    assert usage["used"] == 42 and usage["reserved"] == 0
    assert refund.amount == 200


def test_headers_on_allowed_calls(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 10, "total_usd_cap": 8})
    r = httpx.post(
        f"{kb.url}/stripe/v1/charges",
        data={"amount": 300, "currency": "usd"},
        headers={"Authorization": f"Bearer {key['key']}", "X-Agent-Run-Id": "run-1", "X-Keybrake-Ticket": "T-1"},
    )
    assert r.status_code == 200
    assert r.headers["x-keybrake-key-id"] == key["id"]
    assert r.headers["x-keybrake-request-id"].startswith("kbr_")
    assert r.headers["x-keybrake-spend-remaining-usd"] == "5"  # tightest cap: 8 − 3
    assert float(r.headers["x-keybrake-overhead-ms"]) >= 0
    assert "set-cookie" not in r.headers
    row = kb.audit(key_id=key["id"])[0]
    assert row["agent_run_id"] == "run-1" and row["metadata"]["headers"] == {"x-keybrake-ticket": "T-1"}
    assert row["id"] == r.headers["x-keybrake-request-id"]


def test_disallowed_endpoint_raises_permission_error_and_sends_nothing(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"allowed_endpoints": ["GET /v1/customers/cus_*"], "daily_usd_cap": 10})
    with pytest.raises(stripe.PermissionError) as info:
        client(kb, key).v1.charges.create({"amount": 100, "currency": "usd"})
    assert "not in this key's allowed_endpoints" in str(info.value.user_message)
    assert code_of(info.value) == "endpoint_not_allowed"
    assert info.value.headers is not None and info.value.headers.get("stripe-should-retry") == "false"
    assert fake_stripe.requests == []
    assert kb.audit(key_id=key["id"])[0]["verdict"] == "denied_endpoint_not_allowed"


def _concurrent_charges(kb: KeybrakeThread, key: dict[str, Any], n: int) -> list[Any]:
    sc, http = async_client(kb, key)

    async def one(i: int) -> Any:
        try:
            return await sc.v1.charges.create_async({"amount": 100, "currency": "usd", "description": f"c{i}"})
        except stripe.StripeError as exc:
            return exc

    async def all_of() -> list[Any]:
        try:
            return await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in stripe-python

    return asyncio.run(all_of())


@pytest.mark.timing
@pytest.mark.parametrize(
    ("policy", "code", "cap"),
    [
        ({"daily_usd_cap": 10}, "spend_cap_exceeded", "key:daily_usd_cap"),
        ({"total_usd_cap": 10}, "spend_cap_exceeded", "key:total_usd_cap"),
        ({"max_requests_per_hour": 10}, "request_cap_exceeded", "key:max_requests_per_hour"),
    ],
)
def test_concurrent_requests_never_overshoot_a_cap(
    kb: KeybrakeThread, fake_stripe: FakeStripe, policy: dict[str, Any], code: str, cap: str
) -> None:
    key = kb.issue(policy)
    results = _concurrent_charges(kb, key, 100)
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, stripe.StripeError)]
    assert len(ok) == 10 and len(refused) == 90
    assert len([r for r in fake_stripe.requests if r.path == "/v1/charges"]) == 10
    for exc in refused:
        assert exc.http_status == 429 and code_of(exc) == code
        assert exc.headers is not None
        assert exc.headers["x-keybrake-cap-hit"] == "true" and exc.headers["x-keybrake-cap"] == cap
        assert exc.headers["stripe-should-retry"] == "false"
        assert ("retry-after" in exc.headers) is (cap != "key:total_usd_cap")
        assert "Do not retry" in str(exc.user_message)
    verdicts = [r["verdict"] for r in kb.audit(key_id=key["id"])]
    assert verdicts.count("allowed") == 10 and verdicts.count("cap_exceeded") == 90


def test_cap_message_names_the_cap(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 1})
    with pytest.raises(stripe.RateLimitError) as info:
        client(kb, key).v1.charges.create({"amount": 101, "currency": "usd"})
    err = info.value.json_body["error"]  # type: ignore[index]
    want = f"Do not retry: this call would exceed the daily spend cap of $1.00 for {key['id']}"
    assert err["message"].startswith(want)
    assert err["keybrake"]["cap"]["name"] == "daily_usd_cap" and err["keybrake"]["cap"]["limit_usd"] == 1
    assert err["keybrake"]["cap"]["requested_usd"] == 1.01 and err["keybrake"]["retryable"] is False


def test_revoke_takes_effect_on_the_next_request(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    sc = client(kb, key)
    sc.v1.customers.list()
    with kb.admin() as c:
        assert c.delete(f"/v1/keys/{key['id']}", params={"reason": "incident 42"}).status_code == 200
    before = len(fake_stripe.requests)
    for _ in range(5):
        with pytest.raises(stripe.AuthenticationError) as info:
            sc.v1.customers.list()
        assert code_of(info.value) == "key_revoked" and "incident 42" in str(info.value.user_message)
    assert len(fake_stripe.requests) == before


def test_revoke_under_load_admits_nothing_after_it_returns(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 1000})
    sc, http = async_client(kb, key)

    async def run() -> tuple[list[str], float]:
        stop = asyncio.Event()
        statuses: list[tuple[float, str]] = []

        async def agent() -> None:
            while not stop.is_set():
                start = asyncio.get_running_loop().time()
                try:
                    await sc.v1.customers.list_async()
                    statuses.append((start, "ok"))
                except stripe.AuthenticationError:
                    statuses.append((start, "revoked"))

        tasks = [asyncio.create_task(agent()) for _ in range(8)]
        await wait_until_async(lambda: len(statuses) >= 16, "the 8 agents to be served before the revoke")
        async with httpx.AsyncClient(base_url=kb.url, headers=kb.admin().headers) as c:
            await c.delete(f"/v1/keys/{key['id']}")
        revoked_at = asyncio.get_running_loop().time()
        await wait_until_async(
            lambda: sum(t > revoked_at for t, _ in statuses) >= 16, "16 calls sent after the revoke returned"
        )
        stop.set()
        await asyncio.gather(*tasks)
        await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in stripe-python
        return [s for t, s in statuses if t > revoked_at], revoked_at

    after, _ = asyncio.run(run())
    assert after and set(after) == {"revoked"}


def test_expired_key_is_refused(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    now = [1_800_000_000_000]
    with KeybrakeThread(tmp_path / "d", clock=lambda: now[0]) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue(expires_in="90s")
        client(kb, key).v1.customers.list()
        now[0] += 90_000
        with pytest.raises(stripe.AuthenticationError) as info:
            client(kb, key).v1.customers.list()
        assert code_of(info.value) == "key_expired"
        assert len(fake_stripe.requests) == 1
        with kb.admin() as c:
            assert c.get(f"/v1/keys/{key['id']}").json()["status"] == "expired"


def test_an_unpriceable_refund_sends_only_its_lookup(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """Which calls are unpriceable is decided in tests/proxy/test_decide.py; end to end, a refund
    of a charge nobody knows sends one pre-flight GET, which finds nothing, and nothing else."""
    key = kb.issue({"daily_usd_cap": 100})
    with pytest.raises(stripe.PermissionError) as info:
        client(kb, key).v1.refunds.create({"charge": "ch_x"})
    assert code_of(info.value) == "unpriceable_request"
    assert info.value.error is not None and info.value.error.message is not None
    assert info.value.error.message.startswith("ch_x was not found at the vendor (404): check the id. ")
    assert [(r.method, r.path) for r in fake_stripe.requests] == [("GET", "/v1/charges/ch_x")]
    row = kb.audit(key_id=key["id"], verdict="denied_unpriceable_request")[0]
    assert row["preflight_lookup"]["status"] == 404


def test_idempotent_replay_costs_nothing(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    sc = client(kb, key)
    params = {"amount": 700, "currency": "usd", "source": "tok_visa"}
    first = sc.v1.charges.create(params, {"idempotency_key": "order-1"})  # type: ignore[arg-type]
    again = sc.v1.charges.create(params, {"idempotency_key": "order-1"})  # type: ignore[arg-type]
    assert first.id == again.id
    assert fake_stripe.requests[-1].headers["idempotency-key"] == "order-1"
    rows = sorted(kb.audit(key_id=key["id"]), key=lambda r: r["ts"])
    assert [r["cost_usd"] for r in rows] == [7, 0]
    with kb.admin() as c:
        assert c.get(f"/v1/keys/{key['id']}").json()["usage"]["daily_usd"]["used"] == 7


def test_zero_decimal_and_unknown_currencies(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    rates = {"usd": Decimal(1), "jpy": Decimal("0.0067")}
    with KeybrakeThread(tmp_path / "d", fx_rates=rates) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        sc = client(kb, key)
        sc.v1.charges.create({"amount": 1000, "currency": "jpy", "source": "tok_visa"})  # ¥1000 = $6.70
        with pytest.raises(stripe.RateLimitError):
            sc.v1.charges.create({"amount": 500, "currency": "jpy"})  # $3.35 more would pass $10
        with pytest.raises(stripe.PermissionError) as info:
            sc.v1.charges.create({"amount": 100, "currency": "xyz"})
        assert code_of(info.value) == "currency_not_supported" and "XYZ" in str(info.value.user_message)
        assert kb.audit(verdict="allowed")[0]["cost_usd"] == 6.7
        assert len(fake_stripe.requests) == 1


def test_declined_card_releases_the_reservation(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    with pytest.raises(stripe.CardError):
        client(kb, key).v1.charges.create({"amount": 900, "currency": "usd", "source": "tok_chargeDeclined"})
    row = kb.audit(key_id=key["id"])[0]
    assert (row["verdict"], row["upstream_status"], row["cost_usd"]) == ("allowed", 402, 0)
    with kb.admin() as c:
        usage = c.get(f"/v1/keys/{key['id']}").json()["usage"]["daily_usd"]
    assert usage["used"] == 0 and usage["reserved"] == 0


def test_upstream_5xx_keeps_the_reservation(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    fake_stripe.next_status.append((500, {"error": {"type": "api_error", "message": "boom"}}))
    with pytest.raises(stripe.APIError):
        client(kb, key).v1.charges.create({"amount": 400, "currency": "usd"})
    row = kb.audit(key_id=key["id"])[0]
    assert row["verdict"] == "outcome_unknown" and row["upstream_status"] == 500
    with kb.admin() as c:
        assert c.get(f"/v1/keys/{key['id']}").json()["usage"]["daily_usd"]["reserved"] == 4


def test_vendor_401_becomes_credential_rejected(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    with KeybrakeThread(tmp_path / "d") as kb:
        kb.add_credential(fake_stripe.base_url, secret="sk_test_wrongsecret99999")
        key = kb.issue({"daily_usd_cap": 10})
        r = httpx.get(f"{kb.url}/stripe/v1/customers", headers={"Authorization": f"Bearer {key['key']}"})
        assert r.status_code == 502
        body = r.json()["error"]
        assert body["code"] == "upstream_credential_rejected" and "'default' was refused by stripe" in body["message"]
        assert "9999" not in r.text and "sk_test" not in r.text
        assert "wrongsecret" not in kb.logs.text()
