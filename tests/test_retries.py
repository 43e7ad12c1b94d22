"""Retries are not new spend (docs/sdk-stripe.md, retries)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from tests.fakes.resend_server import DEFAULT_API_KEY as RESEND_KEY
from tests.fakes.resend_server import FakeResend, FakeResendThread
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread


def _slow_first_request(fake: FakeStripe, seconds: float) -> threading.Thread:
    """The fake answers its first request after `seconds`, later ones at once."""
    fake.delay_seconds = seconds

    def watch() -> None:
        deadline = time.monotonic() + 10
        while not fake.requests and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)
        fake.delay_seconds = 0

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_sdk_retry_after_a_timeout_is_charged_once_and_linked(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    with KeybrakeThread(tmp_path / "d", upstream_timeout_s=0.5) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=2)
        _slow_first_request(fake_stripe, 0.8)
        charge = sc.v1.charges.create({"amount": 600, "currency": "usd", "source": "tok_visa"})
        assert charge.amount == 600
        charges = [r for r in fake_stripe.requests if r.path == "/v1/charges"]
        assert len(charges) >= 2 and len({r.headers["idempotency-key"] for r in charges}) == 1
        assert len(fake_stripe.charges) == 1  # Stripe itself charged once

        rows = sorted(kb.audit(key_id=key["id"]), key=lambda r: r["id"])
        first, retries = rows[0], rows[1:]
        assert first["error_code"] == "upstream_timeout" and first["status"] == 504
        assert first["verdict"] == "allowed" and first["cost_usd"] == 6  # settled by the retry's answer
        assert first["settled_by"] == retries[-1]["id"]
        for r in retries:
            assert r["reserved_usd"] == 0 and r["cost_usd"] == 0 and r["metadata"]["retry_of"] == first["id"]
        with kb.admin() as c:
            usage = c.get(f"/v1/keys/{key['id']}").json()["usage"]["daily_usd"]
        assert usage["used"] == 6 and usage["reserved"] == 0  # the cap was charged once


@pytest.mark.parametrize("idempotency_key", [None, "order-78"])
def test_a_timeouts_retry_advice_follows_the_requests_idempotency_key(
    tmp_path: Path, fake_stripe: FakeStripe, idempotency_key: str | None
) -> None:
    """After a timeout Stripe may have charged: a retry is safe (Stripe replays it) only under the
    same Idempotency-Key; without one every signal says do not retry."""
    with KeybrakeThread(tmp_path / "d", upstream_timeout_s=0.5) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        headers = {"Authorization": f"Bearer {key['key']}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        fake_stripe.delay_seconds = 0.8
        r = httpx.post(f"{kb.url}/stripe/v1/charges", data={"amount": 100, "currency": "usd"}, headers=headers)
        fake_stripe.delay_seconds = 0
    retry = idempotency_key is not None
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    assert r.json()["error"]["keybrake"]["retryable"] is retry
    assert r.headers["stripe-should-retry"] == ("true" if retry else "false")
    assert ("retry-after" in r.headers) is retry


@pytest.mark.timing
def test_a_retry_of_a_request_still_in_flight_gets_409(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    headers = {"Authorization": f"Bearer {key['key']}", "Idempotency-Key": "order-77"}
    fake_stripe.hang = threading.Event()
    first: dict[str, httpx.Response] = {}
    t = threading.Thread(
        target=lambda: first.setdefault(
            "r",
            httpx.post(
                f"{kb.url}/stripe/v1/charges", data={"amount": 100, "currency": "usd"}, headers=headers, timeout=10
            ),
        )
    )
    t.start()
    deadline = time.monotonic() + 5
    while not fake_stripe.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    r = httpx.post(f"{kb.url}/stripe/v1/charges", data={"amount": 100, "currency": "usd"}, headers=headers)
    waited = time.monotonic() - started
    assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_in_flight"
    assert 1.5 < waited < 4  # it waited (up to 2 s) for the first request to finish, then gave up
    assert r.headers["stripe-should-retry"] == "true" and r.headers["retry-after"] == "1"
    fake_stripe.hang.set()
    t.join(10)
    assert first["r"].status_code == 200
    assert len(fake_stripe.requests) == 1


def test_same_key_different_body_is_new_spend(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    h = {"Authorization": f"Bearer {key['key']}", "Idempotency-Key": "order-1"}
    assert (
        httpx.post(f"{kb.url}/stripe/v1/charges", data={"amount": 100, "currency": "usd"}, headers=h).status_code == 200
    )
    r = httpx.post(f"{kb.url}/stripe/v1/charges", data={"amount": 200, "currency": "usd"}, headers=h)
    assert r.status_code == 400  # Stripe refuses the reuse; Keybrake reserved it as new and released it
    rows = sorted(kb.audit(key_id=key["id"]), key=lambda x: x["id"])
    assert rows[1]["reserved_usd"] == 2 and rows[1]["cost_usd"] == 0


def test_stripe_dedup_window_replays_a_repeated_charge(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """Two SDK calls with the same body (each with its own Idempotency-Key) inside the window: one charge."""
    key = kb.issue({"daily_usd_cap": 20, "dedup_window_seconds": 30})
    sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)
    params = {"amount": 700, "currency": "usd", "source": "tok_visa", "customer": "cus_1"}
    first = sc.v1.charges.create(params)  # type: ignore[arg-type]
    second = sc.v1.charges.create(params)  # type: ignore[arg-type]
    assert first.id == second.id
    assert len([r for r in fake_stripe.requests if r.path == "/v1/charges"]) == 1
    other = sc.v1.charges.create({**params, "amount": 701})  # type: ignore[arg-type]
    assert other.id != first.id
    rows = {r["verdict"]: r for r in kb.audit(key_id=key["id"])}
    assert rows["deduplicated"]["cost_usd"] == 0 and rows["deduplicated"]["dedup_of"]
    assert kb.key(key["id"])["usage"]["daily_usd"]["used"] == 14.01


def _lock_timeout() -> tuple[int, dict[str, Any], dict[str, str]]:
    """Stripe's 429 for a lock it could not take: nothing ran, nothing is kept under the key."""
    error = {
        "type": "invalid_request_error",
        "code": "lock_timeout",
        "message": "This object cannot be accessed right now because another API request or Stripe process is "
        "currently accessing it.",
    }
    return 429, {"error": error}, {"Stripe-Should-Retry": "true"}


def test_a_retry_after_an_answer_stripe_did_not_keep_reserves_like_new_spend(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    """The issue's example: $50 daily cap, a $40 charge answered 429 lock_timeout, the SDK's retry
    with the same Idempotency-Key runs for real. Twice: the second $40 must not move uncounted."""
    key = kb.issue({"daily_usd_cap": 50})
    sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=2)
    fake_stripe.next_status = [_lock_timeout()]
    first = sc.v1.charges.create({"amount": 4000, "currency": "usd", "source": "tok_visa"})
    assert first.amount == 4000
    assert kb.key(key["id"])["usage"]["daily_usd"]["used"] == 40
    fake_stripe.next_status = [_lock_timeout()]
    with pytest.raises(stripe.RateLimitError) as info:
        sc.v1.charges.create({"amount": 4000, "currency": "usd", "source": "tok_visa"})
    assert info.value.error is not None and info.value.error.code == "spend_cap_exceeded"
    # Before: the retry reserved nothing, so the first $40 was never counted and the second
    # charge went through the same way ($80 moved under a $50 cap). Now the retry was counted,
    # and the second charge is refused before it leaves.
    posts = [r for r in fake_stripe.requests if r.method == "POST" and r.path == "/v1/charges"]
    assert len(posts) == 2  # the 429, then the executed retry
    assert len(fake_stripe.charges) == 1
    usage = kb.key(key["id"])["usage"]["daily_usd"]
    assert (usage["used"], usage["reserved"]) == (40, 0)
    rows = sorted(kb.audit(key_id=key["id"]), key=lambda r: r["id"])
    assert [(r["status"], r["verdict"]) for r in rows] == [(429, "allowed"), (200, "allowed"), (429, "cap_exceeded")]
    assert rows[1]["reserved_usd"] == 40 and rows[1]["cost_usd"] == 40
    assert "retry_of" not in (rows[1]["metadata"] or {})


def test_a_retry_after_a_card_decline_is_a_retry(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """Stripe keeps a 402 under the key and replays it: the repeat reserves nothing."""
    key = kb.issue({"daily_usd_cap": 50})
    h = {"Authorization": f"Bearer {key['key']}", "Idempotency-Key": "decline-1"}
    body = {"amount": 4000, "currency": "usd", "source": "tok_chargeDeclined"}
    assert httpx.post(f"{kb.url}/stripe/v1/charges", data=body, headers=h).status_code == 402
    again = httpx.post(f"{kb.url}/stripe/v1/charges", data=body, headers=h)
    assert again.status_code == 402 and again.headers["idempotent-replayed"] == "true"
    rows = sorted(kb.audit(key_id=key["id"]), key=lambda r: r["id"])
    assert rows[1]["reserved_usd"] == 0 and rows[1]["metadata"]["retry_of"] == rows[0]["id"]


def test_idempotency_keys_are_whole_single_and_bounded(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 50})
    url, body = f"{kb.url}/stripe/v1/charges", "amount=100&currency=usd&source=tok_visa"
    auth = ("Authorization", f"Bearer {key['key']}")
    ctype = ("Content-Type", "application/x-www-form-urlencoded")
    two = httpx.post(url, content=body, headers=[auth, ctype, ("Idempotency-Key", "a"), ("Idempotency-Key", "b")])
    assert two.status_code == 400 and two.json()["error"]["code"] == "header_invalid"
    long = httpx.post(url, content=body, headers=[auth, ctype, ("Idempotency-Key", "k" * 256)])
    assert long.status_code == 400 and "255" in long.json()["error"]["message"]
    assert fake_stripe.requests == []
    # 255 characters is Stripe's limit and is taken whole
    assert httpx.post(url, content=body, headers=[auth, ctype, ("Idempotency-Key", "k" * 255)]).status_code == 200
    row = kb.audit(key_id=key["id"], verdict="allowed")[0]
    assert row["idempotency_key"] == "k" * 255


@pytest.mark.parametrize("raw", ["clé-1".encode(), b"k\xff", b"a\tb", "键".encode()])
def test_a_non_ascii_idempotency_key_is_refused_naming_the_header(
    kb: KeybrakeThread, fake_stripe: FakeStripe, raw: bytes
) -> None:
    """Red team k12: header bytes are read as latin-1, so a UTF-8 key was stored garbled and an
    `idempotency_key_prefix` filter (UTF-8) missed it — a way to hide from audit filters. Such
    keys (and control characters) are refused: 400 header_invalid, nothing sent, the row audited."""
    key = kb.issue({"daily_usd_cap": 50})
    r = httpx.post(
        f"{kb.url}/stripe/v1/charges",
        content=b"amount=100&currency=usd&source=tok_visa",
        headers=[
            (b"Authorization", f"Bearer {key['key']}".encode()),
            (b"Content-Type", b"application/x-www-form-urlencoded"),
            (b"Idempotency-Key", raw),
        ],
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "header_invalid"
    assert "Idempotency-Key" in r.json()["error"]["message"] and "ASCII" in r.json()["error"]["message"]
    assert fake_stripe.requests == []
    assert [row["verdict"] for row in kb.audit(key_id=key["id"])] == ["denied_header_invalid"]
    # printable ASCII, spaces included, is taken whole
    ok = httpx.post(
        f"{kb.url}/stripe/v1/charges",
        content=b"amount=100&currency=usd&source=tok_visa",
        headers={"Authorization": f"Bearer {key['key']}", "Content-Type": "application/x-www-form-urlencoded",
                 "Idempotency-Key": "order 42 ~!"},
    )  # fmt: skip
    assert ok.status_code == 200
    assert kb.audit(key_id=key["id"], idempotency_key_prefix="order 42")[0]["idempotency_key"] == "order 42 ~!"


@pytest.fixture
def resend_kb(tmp_path: Path) -> Iterator[tuple[KeybrakeThread, FakeResend]]:
    with FakeResendThread() as fake, KeybrakeThread(tmp_path / "r") as kb:
        kb.add_credential(fake.base_url, name="resend", secret=RESEND_KEY, vendor="resend")
        yield kb, fake.fake


def test_resend_keys_differing_in_the_256th_character_are_two_sends(
    resend_kb: tuple[KeybrakeThread, FakeResend],
) -> None:
    kb, fake = resend_kb
    key = kb.issue({"daily_send_cap": 1}, vendor="resend", label="test:mailer:run-1")
    email = {"from": "bot@mail.acme.io", "to": "ann@example.com", "subject": "hi", "text": "hello"}
    base = "x" * 255

    def send(idem: str) -> httpx.Response:
        return httpx.post(
            f"{kb.url}/resend/emails",
            json=email,
            headers={"Authorization": f"Bearer {key['key']}", "Idempotency-Key": idem},
        )

    assert send(base + "a").status_code == 200
    second = send(base + "b")  # a different key: a new email at Resend, so a new send here
    assert second.status_code == 429 and second.json()["name"] == "send_cap_exceeded"
    assert send(base + "a").status_code == 200  # the same key whole: a retry, replayed by Resend
    too_long = send(base + "ab")
    assert too_long.status_code == 400 and too_long.json()["name"] == "header_invalid"
    assert len([r for r in fake.requests if r.method == "POST"]) == 2
    assert kb.key(key["id"])["usage"]["daily_sends"]["used"] == 1
