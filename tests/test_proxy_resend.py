"""resend-python through a running Keybrake against a fake Resend built from Resend's spec."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import resend
from resend.exceptions import ResendError

from tests.fakes.resend_server import DEFAULT_API_KEY, FakeResend
from tests.harness import KeybrakeThread

SENDER = "Acme <bot@mail.acme.io>"


@pytest.fixture
def sdk(kbr: KeybrakeThread) -> Iterator[None]:
    """resend-python's module settings pointed at the proxy, restored afterwards."""
    saved = resend.api_key, resend.api_url
    resend.api_url = f"{kbr.url}/resend"
    yield
    resend.api_key, resend.api_url = saved


def issue(kb: KeybrakeThread, **policy: Any) -> dict[str, Any]:
    key = kb.issue(policy, vendor="resend", label="test:mailer:run-1")
    resend.api_key = key["key"]
    return key


def email(to: Any, **extra: Any) -> dict[str, Any]:
    return {"from": SENDER, "to": to, "subject": "Your receipt", "html": "<p>Thanks!</p>", **extra}


def sends(fake: FakeResend) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST"]


def test_send_swaps_the_key_and_costs_the_rate_per_recipient(
    kbr: KeybrakeThread, fake_resend: FakeResend, sdk: None
) -> None:
    key = issue(kbr, daily_usd_cap=1, allowed_to_domains=["example.com"], allowed_from_domains=["*.acme.io"])
    sent = resend.Emails.send(email(["a@example.com", "Bee <b@example.com>"], cc="c@example.com"))  # type: ignore[arg-type]
    assert sent["id"] in fake_resend.emails
    (seen,) = sends(fake_resend)
    assert seen.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert key["key"] not in json.dumps([seen.headers, seen.body.decode()])
    (row,) = kbr.audit(key_id=key["id"])
    assert (row["verdict"], row["cost_usd"], row["cost_source"], row["cost_kind"]) == (
        "allowed",
        0.0012,
        "flat_rate",
        "email",
    )
    assert row["vendor_object_id"] == sent["id"]
    assert row["request_summary"] == {
        "recipient_count": 3,
        "recipient_domains": ["example.com"],
        "from_domain": "mail.acme.io",
    }
    assert "Thanks" not in json.dumps(row) and row["body_hash"]
    sends_usage = kbr.key(key["id"])["usage"]
    assert sends_usage["daily_usd"]["used"] == 0.0012


def test_a_batch_with_one_outside_recipient_is_refused_whole(
    kbr: KeybrakeThread, fake_resend: FakeResend, sdk: None
) -> None:
    issue(kbr, daily_usd_cap=1, allowed_to_domains=["example.com"])
    batch = [email(f"u{i}@example.com") for i in range(9)] + [email("u9@example.com", bcc=["spy@evil.io"])]
    with pytest.raises(ResendError) as exc:
        resend.Batch.send(batch)  # type: ignore[arg-type]
    assert exc.value.code == 403 and exc.value.error_type == "scope_violation"
    assert "evil.io" in exc.value.message
    assert not sends(fake_resend)


def test_a_batch_that_would_cross_the_send_cap_is_refused_whole(
    kbr: KeybrakeThread, fake_resend: FakeResend, sdk: None
) -> None:
    key = issue(kbr, daily_usd_cap=1, daily_send_cap=15)
    first = resend.Batch.send([email(f"u{i}@example.com") for i in range(10)])  # type: ignore[misc]  # dicts, not SendParams
    assert len(first["data"]) == 10
    with pytest.raises(ResendError) as exc:
        resend.Batch.send([email(f"v{i}@example.com") for i in range(10)])  # type: ignore[misc]  # dicts, not SendParams
    assert exc.value.code == 429 and exc.value.error_type == "send_cap_exceeded"
    assert len(fake_resend.emails) == 10
    resend.Batch.send([email(f"w{i}@example.com") for i in range(5)])  # type: ignore[misc]  # dicts, not SendParams
    assert len(fake_resend.emails) == 15
    rows = [r for r in kbr.audit(key_id=key["id"]) if r["verdict"] == "allowed"]
    assert sorted(r["cost_usd"] for r in rows) == [0.002, 0.004]  # N × $0.0004
    usage = kbr.key(key["id"])["usage"]
    assert usage["daily_sends"]["used"] == 15 and usage["daily_usd"]["used"] == 0.006


def test_bad_bodies_and_auth_are_refused_before_sending(
    kbr: KeybrakeThread, fake_resend: FakeResend, sdk: None
) -> None:
    key = issue(kbr, daily_usd_cap=1)
    url = f"{kbr.url}/resend/emails"
    bearer = {"Authorization": f"Bearer {key['key']}"}
    not_json = httpx.post(url, content=b"to=a@example.com", headers={**bearer, "content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["name"] == "body_invalid"
    form = httpx.post(url, data={"to": "a@example.com"}, headers=bearer)
    assert form.status_code == 415 and form.json()["name"] == "unsupported_media_type"
    two_in_one = httpx.post(url, json=email("a@example.com, b@example.com"), headers=bearer)
    assert two_in_one.status_code == 400 and two_in_one.json()["name"] == "param_ambiguous"
    no_to = httpx.post(url, json={"from": SENDER, "subject": "x", "html": "y"}, headers=bearer)
    assert no_to.status_code == 400 and "'to'" in no_to.json()["message"]
    real_key = httpx.post(url, json=email("a@example.com"), headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"})
    assert real_key.status_code == 401 and real_key.json()["name"] == "key_invalid"
    missing = httpx.post(url, json=email("a@example.com"))
    assert missing.status_code == 401 and missing.json()["name"] == "key_missing"
    assert missing.json()["statusCode"] == 401 and missing.json()["keybrake"]["code"] == "key_missing"
    assert not sends(fake_resend)


def test_dedup_and_idempotent_retries(kbr: KeybrakeThread, fake_resend: FakeResend, sdk: None) -> None:
    key = issue(kbr, daily_usd_cap=1, dedup_window_seconds=60)
    first = resend.Emails.send(email(["a@example.com", "b@example.com"]))  # type: ignore[arg-type]
    again = resend.Emails.send(email(["b@example.com", "a@example.com"]))  # type: ignore[arg-type]
    assert again["id"] == first["id"]
    assert again["http_headers"]["x-keybrake-deduplicated"] == "true"
    assert len(fake_resend.emails) == 1

    # With an Idempotency-Key, a retry is forwarded (Resend replays it) and costs nothing new.
    opts: Any = {"idempotency_key": "order-77-receipt"}
    one = resend.Emails.send(email("c@example.com"), opts)  # type: ignore[arg-type]
    two = resend.Emails.send(email("c@example.com"), opts)  # type: ignore[arg-type]
    assert one["id"] == two["id"] and len(fake_resend.emails) == 2
    assert sends(fake_resend)[-1].headers["idempotency-key"] == "order-77-receipt"
    rows = kbr.audit(key_id=key["id"])
    retry = next(r for r in rows if r["metadata"] and "retry_of" in r["metadata"])
    assert retry["cost_usd"] == 0
    assert kbr.key(key["id"])["usage"]["daily_usd"]["used"] == 0.0012  # 2 + 1 recipients


def test_rejected_credential_and_guarded_api_keys(tmp_path: Path, fake_resend: FakeResend, sdk: None) -> None:
    with KeybrakeThread(tmp_path / "other") as kb:
        kb.add_credential(fake_resend.base_url, name="stale", secret="re_revokedAtResend0000", vendor="resend")
        key = kb.issue({"daily_usd_cap": 1}, vendor="resend")
        r = httpx.post(
            f"{kb.url}/resend/emails", json=email("a@example.com"), headers={"Authorization": f"Bearer {key['key']}"}
        )
        assert r.status_code == 502 and r.json()["name"] == "upstream_credential_rejected"
        assert "API key is invalid" not in r.text
        guarded = httpx.post(
            f"{kb.url}/resend/api-keys", json={"name": "x"}, headers={"Authorization": f"Bearer {key['key']}"}
        )
        assert guarded.status_code == 403 and guarded.json()["name"] == "endpoint_guarded"


def test_api_key_tokens_are_redacted(kbr: KeybrakeThread, fake_resend: FakeResend) -> None:
    key = kbr.issue({"daily_usd_cap": 1, "allowed_endpoints": ["POST /api-keys"]}, vendor="resend")
    r = httpx.post(f"{kbr.url}/resend/api-keys", json={"name": "x"}, headers={"Authorization": f"Bearer {key['key']}"})
    assert r.status_code == 201 and r.json()["token"] == "[redacted by keybrake]"
    (row,) = kbr.audit(key_id=key["id"])
    assert row["redacted_fields"] == ["token"]


def test_a_stripe_key_cannot_send_email(kbr: KeybrakeThread, fake_resend: FakeResend) -> None:
    kbr.add_credential("http://127.0.0.1:9", name="stripe")
    key = kbr.issue({"daily_usd_cap": 1}, credential="stripe")
    r = httpx.post(
        f"{kbr.url}/resend/emails", json=email("a@example.com"), headers={"Authorization": f"Bearer {key['key']}"}
    )
    assert r.status_code == 403 and r.json()["name"] == "vendor_mismatch"
    assert not sends(fake_resend)
