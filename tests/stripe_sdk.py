"""The official stripe SDK pointed at a running Keybrake, for the proxy tests (tests/test_proxy_stripe*.py)."""

from __future__ import annotations

import json
from typing import Any

import stripe

from tests.fakes.stripe_server import FakeStripe
from tests.harness import REAL_SECRET, KeybrakeThread


def client(kb: KeybrakeThread, key: dict[str, Any], **kw: Any) -> stripe.StripeClient:
    return stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0, **kw)


def async_client(kb: KeybrakeThread, key: dict[str, Any]) -> tuple[stripe.StripeClient, stripe.HTTPXClient]:
    http = stripe.HTTPXClient()
    sc = stripe.StripeClient(
        key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0, http_client=http
    )
    return sc, http


def code_of(exc: stripe.StripeError) -> str | None:
    """The Keybrake code. stripe-python sets `.code` only for 400/402/404; `.error` always has it."""
    assert exc.error is not None
    return exc.error.code


def assert_secret_only(fake: FakeStripe, vault_key: str) -> None:
    assert fake.requests, "nothing reached the fake Stripe"
    for r in fake.requests:
        assert r.headers["authorization"] == f"Bearer {REAL_SECRET}"
        assert vault_key not in json.dumps({**r.headers, "body": r.body.decode()})
        assert not any(
            h.startswith("x-keybrake") or h in ("x-agent-run-id", "x-triggering-event-id") for h in r.headers
        )
