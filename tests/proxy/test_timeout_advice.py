"""The advice after a send whose outcome is unknown (504 `upstream_timeout`): the vendor may have
acted, so a retry is safe only where the vendor replays a retry sent under the same idempotency key
(Stripe, Resend, a file-defined vendor that names an idempotency header) and the request carried
one. The server's advice is per request, in every signal it gives — `keybrake.retryable` in the
body, Stripe's `Stripe-Should-Retry`, `Retry-After` — and the client's `denial()` reads back the
same answer from the vendor's error shape (docs/errors.md)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.upstream import UpstreamOutcomeUnknown
from keybrake.proxy.outcome import transport_failure
from keybrake.proxy.render import denial_response
from keybrake.vendors import build_vendors
from keybrake.vendors.base import Estimate, Vendor
from keybrake.vendors.configured.vendor import ConfiguredVendor
from keybrake_client import denial
from tests.vendors.test_configured_vendor import vendor as configured

pytestmark = pytest.mark.store_free

BUILTIN = build_vendors()
# The vendors whose API replays a retry sent under the same idempotency key (never a second action).
REPLAYING = {"stripe", "resend"}
FILE_DEFINED = {
    "mailco+idem": configured(request={"idempotency_header": "X-Idem-Key"}),
    "mailco": configured(),
}
VENDORS: dict[str, Vendor] = {**BUILTIN, **FILE_DEFINED}
# The file-defined vendor's error template carries no Keybrake code the client can read back.
CLIENT_READS = set(BUILTIN)


def test_the_vendors_that_replay_retries_are_the_ones_documented() -> None:
    assert {n for n, v in BUILTIN.items() if v.replays_retries} == REPLAYING
    assert isinstance(FILE_DEFINED["mailco+idem"], ConfiguredVendor)
    assert FILE_DEFINED["mailco+idem"].replays_retries and not FILE_DEFINED["mailco"].replays_retries


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(sorted(VENDORS)),
    key=st.one_of(st.none(), st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=40)),
)
def test_a_timeout_is_retryable_only_where_a_retry_is_replayed(name: str, key: str | None) -> None:
    v = VENDORS[name]
    exc = UpstreamOutcomeUnknown("read timeout", timeout=True, elapsed_ms=30_000.0)
    refusal, settlement = transport_failure(exc, v, key, 500, Estimate("priced", 500, "charge"), honoured=True)
    expected = key is not None and (name in REPLAYING or name == "mailco+idem")
    assert refusal.code == "upstream_timeout" and settlement.keep_reservation
    assert refusal.retryable is expected
    # The message says the same thing in words.
    assert ("is safe" in refusal.message) is expected and ("may act twice" in refusal.message) is not expected

    resp = denial_response(refusal, v, request_id="kbr_x", key_id="vk_x", now_ms=0)
    headers = {k: val for k, val in resp.headers}
    assert resp.status == 504
    assert _keybrake(name, httpx.Response(504, content=resp.body).json())["retryable"] is expected
    if name == "stripe":
        assert headers["stripe-should-retry"] == ("true" if expected else "false")
    assert ("retry-after" in headers) is expected

    if name in CLIENT_READS:  # the client reads the same advice from the vendor's error shape
        sent = {v.idempotency_header: key} if key is not None else {}
        request = httpx.Request("POST", f"http://127.0.0.1:1/{name}/v1/x", headers=sent)
        answer = httpx.Response(504, headers=resp.headers, content=resp.body, request=request)
        d = denial(httpx.HTTPStatusError("timeout", request=request, response=answer))
        assert d is not None and d.code == "upstream_timeout" and d.retryable is expected, (name, d)


def _keybrake(name: str, body: Any) -> dict[str, Any]:
    """The `keybrake` object in the vendor's error shape (Twilio's `details` holds its members)."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("keybrake"), dict):
                found.append(node["keybrake"])
            elif "keybrake_code" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body)
    assert found, (name, body)
    return found[0]
