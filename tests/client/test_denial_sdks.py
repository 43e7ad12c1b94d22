"""`denial()` on the exceptions the official SDKs raise for real Keybrake refusals: each vendor's
SDK built by a `Run` factory, a real Keybrake, the vendor's fake. Each test hits a scope refusal
while the run is open, then uses the same client after the run's key was revoked on exit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from keybrake_client import Keybrake, Run, denial
from tests.harness import ADMIN_TOKEN, KeybrakeThread


def admin(server: KeybrakeThread) -> Keybrake:
    return Keybrake(server.url, ADMIN_TOKEN, timeout=10)


def caught(call: Callable[[], Any]) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("the call was not refused")


def assert_denial(exc: BaseException, code: str, kind: str, retryable: bool = False) -> None:
    d = denial(exc)
    assert d is not None, f"{type(exc).__name__} not read as a denial: {exc!r}"
    assert (d.code, d.kind, d.retryable) == (code, kind, retryable), d
    assert d.message


def scoped_then_revoked(
    kb: Keybrake,
    vendor: str,
    policy: dict[str, Any],
    make: Callable[[Run], Any],
    refused: Callable[[Any], Any],
    allowed: Callable[[Any], Any],
    scope_code: str = "scope_violation",
) -> None:
    """`refused(sdk)` is a scope denial during the run; `allowed(sdk)` passes during the run and is
    refused as revoked once the run is over."""
    with kb.run(vendor=vendor, run_id=f"run-{vendor}", policy=policy, ttl="10m") as run:
        sdk = make(run)
        assert_denial(caught(lambda: refused(sdk)), scope_code, "scope")
        allowed(sdk)
    assert_denial(caught(lambda: allowed(sdk)), "key_revoked", "revoked")


def test_stripe_scope_and_raw_http_clients(kb: KeybrakeThread) -> None:
    with admin(kb) as client:
        scoped_then_revoked(
            client,
            "stripe",
            {"daily_usd_cap": 5, "allowed_endpoints": ["GET /v1/customers"]},
            lambda run: run.stripe(max_network_retries=0),
            lambda sc: sc.v1.charges.create({"amount": 100, "currency": "usd"}),
            lambda sc: sc.v1.customers.list({"limit": 1}),
            "endpoint_not_allowed",
        )
        with client.run(vendor="stripe", run_id="raw", daily_usd_cap=5, allowed_endpoints=["GET /v1/customers"]) as run:
            url, auth = f"{kb.url}/stripe/v1/charges", {"Authorization": f"Bearer {run.key.secret}"}
            r = httpx.post(url, data={"amount": 1, "currency": "usd"}, headers=auth)
            assert_denial(caught(r.raise_for_status), "endpoint_not_allowed", "scope")
            rr = requests.post(url, data={"amount": 1, "currency": "usd"}, headers=auth, timeout=10)
            assert_denial(caught(rr.raise_for_status), "endpoint_not_allowed", "scope")
            missing = httpx.get(f"{kb.url}/stripe/v1/customers", headers={"Authorization": "Bearer nope"})
            assert_denial(caught(missing.raise_for_status), "key_invalid", "auth")


def test_twilio(kbt: KeybrakeThread) -> None:
    with admin(kbt) as client:
        scoped_then_revoked(
            client,
            "twilio",
            {"daily_usd_cap": 5, "allowed_to_prefixes": ["+1"]},
            lambda run: run.twilio(),
            lambda tw: tw.messages.create(to="+442079460958", from_="+14155550199", body="hi"),
            lambda tw: tw.messages.create(to="+14155550100", from_="+14155550199", body="hi"),
        )


@pytest.fixture
def resend_kb(tmp_path: Path) -> Iterator[KeybrakeThread]:
    import resend

    from tests.fakes.resend_server import DEFAULT_API_KEY, FakeResendThread

    saved = resend.api_key, resend.api_url
    with FakeResendThread() as fake, KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake.fake.base_url, name="resend", secret=DEFAULT_API_KEY, vendor="resend")
        yield server
    resend.api_key, resend.api_url = saved


def test_resend(resend_kb: KeybrakeThread) -> None:
    mail = {"from": "Acme <bot@mail.acme.io>", "to": ["spy@evil.io"], "subject": "s", "html": "<p>x</p>"}
    with admin(resend_kb) as client:
        scoped_then_revoked(
            client,
            "resend",
            {"daily_usd_cap": 1, "allowed_to_domains": ["example.com"]},
            lambda run: run.resend(),
            lambda rs: rs.Emails.send(mail),
            lambda rs: rs.Emails.send({**mail, "to": ["ana@example.com"]}),
        )


def test_postmark(tmp_path: Path) -> None:
    from tests.fakes.postmark_server import DEFAULT_SERVER_TOKEN, FakePostmarkThread

    with FakePostmarkThread() as fake, KeybrakeThread(tmp_path / "data") as server, admin(server) as client:
        server.add_credential(fake.fake.base_url, name="postmark", secret=DEFAULT_SERVER_TOKEN, vendor="postmark")
        scoped_then_revoked(
            client,
            "postmark",
            {"daily_usd_cap": 1, "allowed_to_domains": ["example.com"]},
            lambda run: run.postmark(),
            lambda pm: pm.emails.send(From="Acme <bot@mail.acme.io>", To="spy@evil.io", Subject="s", TextBody="t"),
            lambda pm: pm.emails.send(From="Acme <bot@mail.acme.io>", To="ana@example.com", Subject="s", TextBody="t"),
        )


def test_sendgrid(tmp_path: Path) -> None:
    from sendgrid.helpers.mail import Mail

    from tests.fakes.sendgrid_server import DEFAULT_API_KEY, FakeSendGridThread

    def mail(to: str) -> Mail:
        return Mail(from_email="bot@mail.acme.io", to_emails=[to], subject="s", html_content="<p>x</p>")

    with FakeSendGridThread() as fake, KeybrakeThread(tmp_path / "data") as server, admin(server) as client:
        server.add_credential(fake.fake.base_url, name="sendgrid", secret=DEFAULT_API_KEY, vendor="sendgrid")
        scoped_then_revoked(
            client,
            "sendgrid",
            {"daily_usd_cap": 1, "allowed_to_domains": ["example.com"]},
            lambda run: run.sendgrid(),
            lambda sg: sg.send(mail("spy@evil.io")),
            lambda sg: sg.send(mail("ana@example.com")),
        )


def test_segment(tmp_path: Path) -> None:
    from tests.fakes.segment_server import DEFAULT_WRITE_KEY, FakeSegmentThread

    with FakeSegmentThread() as fake, KeybrakeThread(tmp_path / "data") as server, admin(server) as client:
        server.add_credential(fake.fake.base_url, name="segment", secret=DEFAULT_WRITE_KEY, vendor="segment")
        scoped_then_revoked(
            client,
            "segment",
            {"daily_usd_cap": 1, "allowed_events": ["Order Completed"]},
            lambda run: run.segment(sync_mode=True, max_retries=0),
            lambda sdk: sdk.track("u1", "Refund Issued"),
            lambda sdk: sdk.track("u1", "Order Completed"),
        )


def test_shopify_rest(tmp_path: Path) -> None:
    from keybrake_client.vendors.shopify import deactivate
    from tests.fakes.shopify_server import DEFAULT_TOKEN, FakeShopifyThread

    refund = {"order_id": 1001, "currency": "USD", "transactions": [{"amount": "1.00", "kind": "refund"}]}
    with FakeShopifyThread() as fake, KeybrakeThread(tmp_path / "data") as server, admin(server) as client:
        server.add_credential(fake.fake.base_url, name="shopify", secret=DEFAULT_TOKEN, vendor="shopify")
        try:
            scoped_then_revoked(
                client,
                "shopify",
                {"daily_usd_cap": 5, "allowed_endpoints": ["GET /admin/api/*/orders/*.json"]},
                lambda run: run.shopify(),
                lambda shopify: shopify.Refund.create(refund),
                lambda shopify: shopify.Order.find(1001),
                "endpoint_not_allowed",
            )
        finally:
            deactivate()
