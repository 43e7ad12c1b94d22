"""The plan before forwarding, by tables: what a request reserves against (caps, from the one
table in core/caps.py), what it is estimated to move, and the vendor request it becomes; and the
key's state, checked on every request. No server, no store, no sockets (tests/proxy/build.py).
"""

from __future__ import annotations

import pytest

from keybrake.core.ledger import LedgerEntry
from keybrake.core.request import ProxyRequest
from keybrake.core.windows import Window
from keybrake.proxy.decisions import state_denial
from keybrake.proxy.keys import key_state
from keybrake.store.base import KeyRecord, KeyState
from tests.proxy.build import (
    CHARGE,
    KEY_ID,
    NOW,
    SMS,
    TWILIO_SID,
    USD,
    email,
    key,
    plan_of,
    request,
    twilio_send,
)

pytestmark = pytest.mark.store_free


def caps(
    k: KeyRecord, req: ProxyRequest, facts: dict[str, LedgerEntry] | None = None
) -> list[tuple[str, str, Window, int | None, int]]:
    planned, _ = plan_of(k, req, facts)
    return [(c.name, c.counter, c.window, c.limit, c.amount) for c in planned.caps]


# (why, key, request, estimate µUSD, sends, caps as (field, counter, window, limit, amount))
PLANS: list[tuple[str, KeyRecord, ProxyRequest, int, int, list[tuple[str, str, Window, int | None, int]]]] = [
    (
        "a $10 charge",
        key(daily_usd_cap=100 * USD, max_requests_per_hour=5),
        request("POST", "/stripe/v1/charges", form=CHARGE),
        10 * USD,
        0,
        [
            ("daily_usd_cap", "daily_usd", Window.DAY, 100 * USD, 10 * USD),
            ("total_usd_cap", "total_usd", Window.TOTAL, None, 10 * USD),
            ("max_requests_per_hour", "hourly_requests", Window.HOUR, 5, 1),
        ],
    ),
    (
        "a $30 charge inside param_rules and the per-call bound",
        key(
            param_rules={"currency": {"in": ["usd"]}, "amount": {"max": 5000}},
            max_usd_per_call=40 * USD,
            daily_usd_cap=100 * USD,
        ),
        request("POST", "/stripe/v1/charges", form={**CHARGE, "amount": "3000"}),
        30 * USD,
        0,
        [
            ("daily_usd_cap", "daily_usd", Window.DAY, 100 * USD, 30 * USD),
            ("total_usd_cap", "total_usd", Window.TOTAL, None, 30 * USD),
            ("max_requests_per_hour", "hourly_requests", Window.HOUR, None, 1),
        ],
    ),
    (
        "a free read under $0 caps",
        key(daily_usd_cap=0, max_usd_per_call=0),
        request("GET", "/stripe/v1/customers"),
        0,
        0,
        [
            ("daily_usd_cap", "daily_usd", Window.DAY, 0, 0),
            ("total_usd_cap", "total_usd", Window.TOTAL, None, 0),
            ("max_requests_per_hour", "hourly_requests", Window.HOUR, None, 1),
        ],
    ),
    (
        "an unpriceable call reserves its per-call bound",
        key(max_usd_per_call=7 * USD),
        request("POST", "/stripe/v1/subscriptions", form={"customer": "cus_1"}),
        7 * USD,
        0,
        [
            ("daily_usd_cap", "daily_usd", Window.DAY, None, 7 * USD),
            ("total_usd_cap", "total_usd", Window.TOTAL, None, 7 * USD),
            ("max_requests_per_hour", "hourly_requests", Window.HOUR, None, 1),
        ],
    ),
    (
        "a Resend batch of 10 at $0.0004 per recipient",
        key("resend", daily_usd_cap=USD, daily_send_cap=15),
        request("POST", "/resend/emails/batch", json_body=[email(f"u{i}@example.com") for i in range(10)]),
        4000,
        10,
        [
            ("daily_usd_cap", "daily_usd", Window.DAY, USD, 4000),
            ("total_usd_cap", "total_usd", Window.TOTAL, None, 4000),
            ("max_requests_per_hour", "hourly_requests", Window.HOUR, None, 1),
            ("daily_send_cap", "daily_sends", Window.DAY, 15, 10),
        ],
    ),
]


@pytest.mark.parametrize(("why", "k", "req", "amount", "sends", "expected"), PLANS, ids=[p[0] for p in PLANS])
def test_plans(
    why: str,
    k: KeyRecord,
    req: ProxyRequest,
    amount: int,
    sends: int,
    expected: list[tuple[str, str, Window, int | None, int]],
) -> None:
    planned, _ = plan_of(k, req)
    assert (planned.estimate.amount, planned.estimate.sends) == (amount, sends)
    assert caps(k, req) == expected
    assert planned.notes["reserved_usd"] == amount
    assert planned.daily_counter == ("daily_usd" if k.policy.get("daily_usd_cap") is not None else None)


def test_a_customer_in_scope_is_recorded_and_forwarded() -> None:
    k = key(customer_allowlist=["cus_ABC123"], daily_usd_cap=100 * USD)
    planned, sent = plan_of(k, request("POST", "/stripe/v1/charges", form={**CHARGE, "customer": "cus_ABC123"}))
    assert planned.notes["customer_scope_id"] == "cus_ABC123"
    assert sent.url == "https://api.stripe.com/v1/charges" and b"customer=cus_ABC123" in sent.body
    assert ("authorization", "Bearer sk_test_fake_secret_1234567890") in sent.headers


def test_an_account_in_scope_is_forwarded() -> None:
    _, sent = plan_of(
        key(account_allowlist=["acct_123"]),
        request("GET", "/stripe/v1/customers", headers={"stripe-account": "acct_123"}),
    )
    assert ("stripe-account", "acct_123") in sent.headers


def test_forwarded_headers_are_an_allowlist() -> None:
    hs = {"x-agent-run-id": "run-1", "x-keybrake-key": "vault_key_x", "cookie": "c=1", "user-agent": "sdk/1"}
    _, sent = plan_of(key(), request("GET", "/stripe/v1/balance?expand[]=x", headers=hs))
    names = [k for k, _ in sent.headers]
    assert names == ["user-agent", "authorization", "accept-encoding"], names
    assert sent.url == "https://api.stripe.com/v1/balance?expand[]=x"


@pytest.mark.parametrize("account", [KEY_ID, TWILIO_SID])
def test_twilio_path_names_the_real_account(account: str) -> None:
    """The key's own id or the credential's real SID is accepted; the real SID is what is sent."""
    k = key("twilio", allowed_to_prefixes=["+1"], default_calling_code="+1", daily_usd_cap=5 * USD)
    planned, sent = plan_of(k, twilio_send({**SMS, "To": "(415) 555-0100"}, account=account))
    assert sent.url == f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert b"To=%28415%29+555-0100" in sent.body  # checked normalised, forwarded unchanged
    assert planned.estimate.sends == 1 and planned.estimate.amount > 0


def test_twilio_calls_get_the_policy_time_limit() -> None:
    k = key("twilio", max_call_seconds=120, daily_usd_cap=5 * USD)
    call = {"To": SMS["To"], "From": SMS["From"], "Url": "https://example.com/twiml", "TimeLimit": "3600"}
    planned, sent = plan_of(k, request("POST", f"/twilio/2010-04-01/Accounts/{KEY_ID}/Calls.json", form=call))
    assert sent.body.endswith(b"TimeLimit=120") and b"TimeLimit=3600" not in sent.body
    assert planned.estimate.amount > 0


# A key's state, read on every request: (key, the database's clock ms) → state, refusal code
STATES: list[tuple[str, KeyRecord, int, KeyState, str | None]] = [
    ("active", key(), NOW, KeyState.OK, None),
    ("revoked", key(status="revoked"), NOW, KeyState.REVOKED, "key_revoked"),
    ("expired by both clocks", key(expires_at=NOW - 1), NOW, KeyState.EXPIRED, "key_expired"),
    ("expired only by this host's clock", key(expires_at=NOW - 1), NOW - 5, KeyState.OK, None),
]


class Clocks:
    def __init__(self, db_now: int) -> None:
        self.db_now = db_now

    def now_ms(self) -> int:
        return NOW

    async def db_now_ms(self) -> int:
        return self.db_now


@pytest.mark.parametrize(("why", "k", "db_now", "state", "code"), STATES, ids=[s[0] for s in STATES])
async def test_key_states(why: str, k: KeyRecord, db_now: int, state: KeyState, code: str | None) -> None:
    assert await key_state(k, Clocks(db_now)) is state
    if code is not None:
        denial = state_denial(state, k)
        assert (denial.code, denial.verdict) == (code, f"denied_{code}")
