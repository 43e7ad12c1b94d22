"""`denial()`'s table against the server's: every code the proxy can answer is classified, with
the server's status and retry advice, and read back from every built-in vendor's error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.errors import ASK_AGAIN, CODES, OUTCOME_UNKNOWN, RETRYABLE, STATUS, CapHit, Denial
from keybrake.core.jsonfmt import dumps
from keybrake.vendors import build_vendors
from keybrake.vendors.twilio_errors import twilio_code
from keybrake_client.denial import ASK_AGAIN as CLIENT_ASK_AGAIN
from keybrake_client.denial import CODES as CLIENT_CODES
from keybrake_client.denial import OUTCOME_UNKNOWN as CLIENT_OUTCOME_UNKNOWN
from keybrake_client.denial import TWILIO_CODES, classify, denial, from_body

pytestmark = pytest.mark.store_free  # no store of its own: runs once, in the first pass

VENDORS = build_vendors()
BUILTIN = sorted(VENDORS)
SERVER_CODES = [code for code, _ in CODES]


def test_the_client_classifies_exactly_the_server_codes_in_order() -> None:
    # A code added to the server without a classification here fails this test.
    assert list(CLIENT_CODES) == SERVER_CODES
    # The codes whose retry advice depends on the request (the vendor replays a retry under the
    # idempotency key the request carried) are the same on both sides.
    assert CLIENT_OUTCOME_UNKNOWN == OUTCOME_UNKNOWN
    # A held call's advice on asking again is the server's too.
    assert CLIENT_ASK_AGAIN == ASK_AGAIN


@given(st.sampled_from(SERVER_CODES))
def test_each_code_keeps_the_server_status_and_retry_advice(code: str) -> None:
    d = classify(code, "m")
    assert d is not None, f"{code} is not classified by keybrake_client.denial"
    assert d.status == STATUS[code]
    assert d.retryable == (code in RETRYABLE)
    assert TWILIO_CODES[twilio_code(code)] == code


def test_kinds_of_the_codes_agents_branch_on() -> None:
    expected = {
        "spend_cap_exceeded": ("cap", False),
        "request_cap_exceeded": ("cap", False),
        "send_cap_exceeded": ("cap", False),
        "endpoint_not_allowed": ("scope", False),
        "scope_violation": ("scope", False),
        "key_revoked": ("revoked", False),
        "key_expired": ("expired", False),
        "idempotency_in_flight": ("transient", True),
        "enforcement_unavailable": ("transient", True),
        "upstream_unreachable": ("transient", True),
    }
    for code, (kind, retryable) in expected.items():
        d = classify(code)
        assert d is not None and (d.kind, d.retryable) == (kind, retryable), code


def test_an_unknown_code_is_no_denial() -> None:
    assert classify("card_declined") is None
    assert from_body({"error": {"type": "card_error", "code": "card_declined", "message": "declined"}}) is None
    assert from_body({"code": 20003, "message": "Authenticate", "status": 401}) is None  # Twilio's own
    assert denial(ValueError("x")) is None


@settings(max_examples=150)
@given(st.sampled_from(SERVER_CODES), st.sampled_from(BUILTIN), st.text(max_size=40))
def test_every_vendor_shape_reads_back(code: str, vendor: str, message: str) -> None:
    cap = CapHit("key", "vk_1", "daily_usd_cap", 10_000_000, 9_000_000, 2_000_000, None, True)
    den = Denial(code, message, cap=cap if code == "spend_cap_exceeded" else None)
    keybrake: dict[str, Any] = {"key_id": "vk_1"}
    if den.cap is not None:
        keybrake["cap"] = den.cap.as_json()
    body = json.loads(dumps(VENDORS[vendor].render_denial(den, keybrake).body))  # as the proxy sends it
    got = from_body(body)
    assert got is not None, f"{vendor}: {body}"
    assert (got.code, got.message, got.status) == (code, message, STATUS[code])
    if code == "spend_cap_exceeded":
        assert got.cap is not None and got.cap["name"] == "daily_usd_cap"


@pytest.mark.parametrize("code", ["too_many_connections", "header_too_large"])
def test_listener_codes(code: str) -> None:
    d = from_body({"error": {"type": "keybrake_error", "code": code, "message": "busy"}})
    assert d is not None and d.retryable == (code == "too_many_connections")
