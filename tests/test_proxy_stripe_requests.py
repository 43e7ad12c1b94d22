"""The official stripe SDK and plain HTTP through a running Keybrake, against a local fake Stripe: how an
agent's key is read, bad bodies and routes, secrets kept out of answers and logs, policy changes taking
effect, audit filters, and the forwarded-header allowlist.
"""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
import stripe

from tests.fakes.stripe_server import FakeStripe
from tests.harness import REAL_SECRET, KeybrakeThread
from tests.stripe_sdk import client, code_of


@pytest.mark.parametrize(
    ("headers", "code", "status"),
    [
        ({}, "key_missing", 401),
        ({"Authorization": "Bearer nonsense"}, "key_invalid", 401),
        ({"Authorization": "Bearer vault_key_" + "A" * 49}, "key_invalid", 401),
        ({"Authorization": "Basic !!!notbase64"}, "key_invalid", 401),
        ({"Authorization": "Token abc"}, "key_invalid", 401),
        ({"Authorization": f"Bearer {REAL_SECRET}"}, "key_invalid", 401),
    ],
)
def test_missing_and_garbled_auth(
    kb: KeybrakeThread, fake_stripe: FakeStripe, headers: dict[str, str], code: str, status: int
) -> None:
    r = httpx.get(f"{kb.url}/stripe/v1/customers", headers=headers)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == code and err["type"] == "invalid_request_error" and err["message"]
    assert r.headers["stripe-should-retry"] == "false"
    assert fake_stripe.requests == []
    assert REAL_SECRET not in r.text and REAL_SECRET not in kb.logs.text()


def test_key_from_basic_password_and_x_keybrake_key(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue()
    basic = base64.b64encode(f"{key['id']}:{key['key']}".encode()).decode()
    assert httpx.get(f"{kb.url}/stripe/v1/customers", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert httpx.get(f"{kb.url}/v1/customers", headers={"X-Keybrake-Key": key["key"]}).status_code == 200
    other = kb.issue()
    r = httpx.get(
        f"{kb.url}/stripe/v1/customers",
        headers={"Authorization": f"Bearer {key['key']}", "X-Keybrake-Key": other["key"]},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "key_ambiguous"
    assert len(fake_stripe.requests) == 2
    assert "x-keybrake-key" not in fake_stripe.requests[-1].headers


def test_admin_token_on_the_proxy_is_not_forwarded(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    r = httpx.get(f"{kb.url}/stripe/v1/customers", headers=kb.admin().headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_invalid"
    assert fake_stripe.requests == []


@pytest.mark.parametrize(
    ("content", "ctype", "extra", "code", "status"),
    [
        (
            b"amount=100&currency=usd",
            "application/x-www-form-urlencoded",
            {"Content-Encoding": "gzip"},
            "unsupported_media_type",
            415,
        ),
        (b"x=" + b"a" * (1024 * 1024 + 10), "application/x-www-form-urlencoded", {}, "body_too_large", 413),
        (
            b"amount=1&currency=usd",
            "application/x-www-form-urlencoded",
            {"X-Agent-Run-Id": "bad id!"},
            "header_invalid",
            400,
        ),
    ],
)
def test_bad_bodies_get_clear_errors_and_nothing_is_forwarded(
    kb: KeybrakeThread,
    fake_stripe: FakeStripe,
    content: bytes,
    ctype: str,
    extra: dict[str, str],
    code: str,
    status: int,
) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    r = httpx.post(
        f"{kb.url}/stripe/v1/charges",
        content=content,
        headers={"Authorization": f"Bearer {key['key']}", "Content-Type": ctype, **extra},
    )
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert fake_stripe.requests == []
    row = kb.audit(key_id=key["id"])[0]
    assert row["verdict"] == f"denied_{code}" and row["status"] == status


def test_vendor_prefix_mismatch_and_unprefixed_routing(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue()
    r = httpx.get(f"{kb.url}/v1/balance", headers={"Authorization": f"Bearer {key['key']}"})
    assert r.status_code == 200 and fake_stripe.requests[-1].path == "/v1/balance"
    r = httpx.request("HEAD", f"{kb.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {key['key']}"})
    assert r.status_code == 405


def test_secrets_never_appear_in_answers_or_logs(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 5})
    sc = client(kb, key)
    sc.v1.charges.create({"amount": 100, "currency": "usd", "source": "tok_visa"})
    with pytest.raises(stripe.RateLimitError):
        sc.v1.charges.create({"amount": 1000, "currency": "usd"})
    with kb.admin() as c:
        texts = [c.get("/v1/audit").text, c.get("/v1/keys").text, c.get("/v1/credentials").text]
    logs = kb.logs.text()
    for text in [*texts, logs]:
        assert REAL_SECRET not in text and key["key"] not in text
        assert "test-admin-token" not in text


def test_patch_takes_effect_on_the_next_request_both_ways(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"allowed_endpoints": ["GET /v1/customers"], "daily_usd_cap": 100})
    sc = client(kb, key)
    sc.v1.customers.list()
    with pytest.raises(stripe.PermissionError):
        sc.v1.charges.create({"amount": 100, "currency": "usd"})
    with kb.admin() as c:
        r = c.patch(
            f"/v1/keys/{key['id']}", json={"policy": {"allowed_endpoints": ["GET /v1/customers", "POST /v1/charges"]}}
        )
        assert r.status_code == 200
    sc.v1.charges.create({"amount": 100, "currency": "usd", "source": "tok_visa"})  # widened: allowed now
    with kb.admin() as c:
        c.patch(f"/v1/keys/{key['id']}", json={"policy": {"daily_usd_cap": 1}})
    with pytest.raises(stripe.RateLimitError):
        sc.v1.charges.create({"amount": 100, "currency": "usd"})  # narrowed: $1 already used
    with kb.admin() as c:
        c.patch(f"/v1/keys/{key['id']}", json={"policy": {"allowed_endpoints": ["POST /v1/charges"]}})
    with pytest.raises(stripe.PermissionError):
        sc.v1.customers.list()
    assert [r.path for r in fake_stripe.requests] == ["/v1/customers", "/v1/charges"]


def test_expiry_extended_by_patch_is_honoured(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    now = [1_800_000_000_000]
    with KeybrakeThread(tmp_path / "d", clock=lambda: now[0]) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue(expires_in="60s")
        client(kb, key).v1.customers.list()
        with kb.admin() as c:
            assert c.patch(f"/v1/keys/{key['id']}", json={"expires_in": "1h"}).status_code == 200
        now[0] += 120_000
        client(kb, key).v1.customers.list()
        assert len(fake_stripe.requests) == 2


def test_audit_filters_and_pagination(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    now = [1_800_000_000_000]
    with KeybrakeThread(tmp_path / "d", clock=lambda: now[0]) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue(metadata={"agent_run_id": "run-7"})
        for _ in range(25):
            now[0] += 1000
            client(kb, key).v1.customers.list()
        with kb.admin() as c:
            seen, cursor = [], None
            while True:
                params: dict[str, str | int] = {
                    "limit": 10,
                    "agent_run_id": "run-7",
                    **({"cursor": cursor} if cursor else {}),
                }
                page = c.get("/v1/audit", params=params).json()
                seen += [r["id"] for r in page["data"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert len(seen) == 25 and len(set(seen)) == 25 and seen == sorted(seen, reverse=True)
            window = c.get(
                "/v1/audit", params={"since": (1_800_000_000_000 + 5000) // 1000, "until": "2027-01-15T08:00:10.000Z"}
            ).json()["data"]
            assert [r["ts"] for r in window] == [f"2027-01-15T08:00:{s:02d}.000Z" for s in range(9, 4, -1)]
            assert c.get(f"/v1/audit/{seen[0]}").json()["agent_run_id"] == "run-7"
            assert c.get("/v1/audit", params={"verdict": "denied"}).json()["data"] == []
            assert c.get("/v1/audit", params={"since": "yesterday"}).status_code == 400


def test_a_zero_per_call_bound_refuses_unpriceable_calls(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    # regression: an unpriceable call was reserved at $0 and forwarded under max_usd_per_call=0
    key = kb.issue({"daily_usd_cap": 0, "max_usd_per_call": 0})
    with pytest.raises(stripe.PermissionError) as info:
        client(kb, key).v1.subscriptions.create({"customer": "cus_1", "items": [{"price": "price_1"}]})
    assert code_of(info.value) == "unpriceable_request"
    client(kb, key).v1.customers.list()  # free calls still work under $0 caps
    assert [r.path for r in fake_stripe.requests] == ["/v1/customers"]


def test_forwarded_headers_are_an_allowlist(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue()
    r = httpx.get(
        f"{kb.url}/stripe/v1/balance",
        headers={
            "Authorization": f"Bearer {key['key']}",
            "Cookie": "session=abc",
            "X-Forwarded-For": "10.0.0.1",
            "X-Custom": "1",
            "Stripe-Version": "2026-10-28.endive",
            "Accept-Encoding": "gzip",
            "User-Agent": "agent/1",
            "X-Agent-Run-Id": "run-1",
            "X-Triggering-Event-Id": "evt-1",
            "X-Keybrake-Note": "n",
        },
    )
    assert r.status_code == 200
    seen = fake_stripe.requests[-1].headers
    assert seen["stripe-version"] == "2026-10-28.endive" and seen["user-agent"] == "agent/1"
    assert seen["accept-encoding"] == "identity" and seen["authorization"] == f"Bearer {REAL_SECRET}"
    for dropped in (
        "cookie",
        "x-forwarded-for",
        "x-custom",
        "x-agent-run-id",
        "x-triggering-event-id",
        "x-keybrake-note",
    ):
        assert dropped not in seen
