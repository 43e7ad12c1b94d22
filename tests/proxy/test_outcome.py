"""The outcome after the vendor's answer, by tables: plan + answer → settlement, cost, redaction,
the agent's response and the audit fields (proxy/outcome.py). No server, no store, no sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keybrake.core.request import ProxyRequest
from keybrake.core.upstream import UpstreamForbidden, UpstreamOutcomeUnknown, UpstreamResponse, UpstreamUnreachable
from keybrake.proxy.outcome import NOTHING_SENT, REFUSED_BY_VENDOR, Outcome, outcome, transport_failure
from keybrake.store.base import EarlierRequest, KeyRecord, Settlement
from keybrake.vendors.base import REDACTED
from tests.proxy.build import CHARGE, RATES, SECRETS, SENDER, TWILIO_SID, USD, VENDORS, key, plan_of, request

pytestmark = pytest.mark.store_free

STRIPE_CHARGE = (key(daily_usd_cap=100 * USD), request("POST", "/stripe/v1/charges", form=CHARGE))
RESEND_SEND = (
    key("resend", daily_usd_cap=USD),
    request("POST", "/resend/emails", json_body={"from": SENDER, "to": "a@example.com", "subject": "s", "html": "h"}),
)
JSON = [("content-type", "application/json"), ("request-id", "req_1")]


def answer(status: int, doc: Any = None, headers: list[tuple[str, str]] | None = None) -> UpstreamResponse:
    body = json.dumps(doc).encode() if doc is not None else b""
    return UpstreamResponse(status, [*JSON, *(headers or [])], body, elapsed_ms=12.5)


def run(
    case: tuple[KeyRecord, ProxyRequest], resp: UpstreamResponse, retry_of: EarlierRequest | None = None
) -> Outcome:
    k, req = case
    planned, _ = plan_of(k, req)
    vendor = VENDORS[k.vendor]
    reserved = planned.estimate.amount if retry_of is None else 0
    return outcome(vendor, planned.vreq, planned.estimate, reserved, retry_of, k.credential, resp, RATES)


CHARGED = {"id": "ch_1", "object": "charge", "amount": 1000, "currency": "usd", "status": "succeeded", "captured": True}
# (why, request, answer, settlement verdict, cost µUSD, keep the reservation, counted as forwarded, billed)
SETTLEMENTS: list[tuple[str, tuple[KeyRecord, ProxyRequest], UpstreamResponse, str, int, bool, bool, bool]] = [
    ("Stripe 200: the charged amount", STRIPE_CHARGE, answer(200, CHARGED), "allowed", 10 * USD, False, True, True),
    (
        "Stripe 400: nothing moved",
        STRIPE_CHARGE,
        answer(400, {"error": {"type": "invalid_request_error"}}),
        "allowed",
        0,
        False,
        True,
        False,
    ),
    (
        "Stripe 402 card error: released",
        STRIPE_CHARGE,
        answer(402, {"error": {"type": "card_error", "code": "card_declined"}}),
        "allowed",
        0,
        False,
        True,
        False,
    ),
    (
        "Stripe 500: outcome unknown, kept",
        STRIPE_CHARGE,
        answer(500, {"error": {"type": "api_error"}}),
        "outcome_unknown",
        10 * USD,
        True,
        True,
        False,
    ),
    ("Stripe 503 without a body", STRIPE_CHARGE, answer(503), "outcome_unknown", 10 * USD, True, True, False),
    (
        "Stripe replayed answer: free",
        STRIPE_CHARGE,
        answer(200, CHARGED, [("idempotent-replayed", "true")]),
        "allowed",
        0,
        False,
        True,
        True,
    ),
    ("Resend 200: the flat rate", RESEND_SEND, answer(200, {"id": "em_1"}), "allowed", 400, False, True, True),
    (
        "Resend 422: nothing sent",
        RESEND_SEND,
        answer(422, {"name": "validation_error"}),
        "allowed",
        0,
        False,
        True,
        False,
    ),
    ("Resend 502: outcome unknown", RESEND_SEND, answer(502), "outcome_unknown", 400, True, True, False),
]


@pytest.mark.parametrize(
    ("why", "case", "resp", "verdict", "cost", "keep", "forwarded", "billed"),
    SETTLEMENTS,
    ids=[s[0] for s in SETTLEMENTS],
)
def test_settlements(
    why: str,
    case: tuple[KeyRecord, ProxyRequest],
    resp: UpstreamResponse,
    verdict: str,
    cost: int,
    keep: bool,
    forwarded: bool,
    billed: bool,
) -> None:
    got = run(case, resp)
    s = got.settlement
    assert (s.verdict, s.cost_usd, s.keep_reservation, s.forwarded, s.billed) == (
        verdict,
        cost,
        keep,
        forwarded,
        billed,
    )
    assert got.refusal is None and got.status == resp.status and got.notes["status"] == resp.status
    assert got.notes["upstream_status"] == resp.status
    assert ("reason" in got.notes) == (resp.status >= 500)


def test_a_2xx_teaches_the_ledger_and_names_the_object() -> None:
    got = run(STRIPE_CHARGE, answer(200, CHARGED))
    assert got.notes["vendor_object_id"] == "ch_1" and got.notes["vendor_request_id"] == "req_1"
    assert [e.object_id for e in got.ledger] == ["ch_1"]
    replayed = run(STRIPE_CHARGE, answer(200, CHARGED, [("idempotent-replayed", "true")]))
    assert replayed.ledger == []  # a replay is the object as it was: it teaches nothing


@pytest.mark.parametrize(
    ("case", "resp"),
    [
        (
            STRIPE_CHARGE,
            answer(401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key sk_test_x"}}),
        ),
        (RESEND_SEND, answer(401, {"name": "missing_api_key"})),
        (RESEND_SEND, answer(403, {"name": "invalid_api_key", "message": "API key is invalid"})),
    ],
)
def test_a_vendor_refusing_the_operators_credential(
    case: tuple[KeyRecord, ProxyRequest], resp: UpstreamResponse
) -> None:
    got = run(case, resp)
    assert got.refusal is not None and got.refusal.code == "upstream_credential_rejected" and got.credential_rejected
    assert got.settlement == REFUSED_BY_VENDOR and got.body == b""  # the vendor's text (it may echo the key) is dropped
    assert "'main'" in got.refusal.message and got.notes["upstream_status"] == resp.status


# (why, key, request, answer document, redacted field names, secret that must not reach the agent)
REDACTIONS: list[tuple[str, KeyRecord, ProxyRequest, Any, list[str], str]] = [
    (
        "Twilio account fetch",
        key("twilio", allowed_endpoints=[f"GET /2010-04-01/Accounts/{TWILIO_SID}.json"]),
        request("GET", f"/twilio/2010-04-01/Accounts/{TWILIO_SID}.json"),
        {"sid": "AC1", "auth_token": "tok_secret_value", "subresource_uris": {}},
        ["auth_token"],
        "tok_secret_value",
    ),
    (
        "Resend API key created",
        key("resend", allowed_endpoints=["POST /api-keys"]),
        request("POST", "/resend/api-keys", json_body={"name": "x"}),
        {"id": "key_1", "token": "re_secret_value"},
        ["token"],
        "re_secret_value",
    ),
    (
        "Stripe webhook signing secret",
        key(allowed_endpoints=["GET /v1/webhook_endpoints"]),
        request("GET", "/stripe/v1/webhook_endpoints"),
        {"object": "list", "data": [{"object": "webhook_endpoint", "id": "we_1", "secret": "whsec_secret_value"}]},
        ["secret"],
        "whsec_secret_value",
    ),
]


@pytest.mark.parametrize(("why", "k", "req", "doc", "fields", "secret"), REDACTIONS, ids=[r[0] for r in REDACTIONS])
def test_redaction(why: str, k: KeyRecord, req: ProxyRequest, doc: Any, fields: list[str], secret: str) -> None:
    got = run((k, req), answer(200, doc))
    assert got.notes["redacted_fields"] == fields
    assert secret.encode() not in got.body and REDACTED.encode() in got.body


def test_a_vendor_403_passes_through_without_key_text() -> None:
    leaked = f"Forbidden for {SECRETS['stripe'].decode()}"
    got = run(STRIPE_CHARGE, answer(403, {"error": {"type": "invalid_request_error", "message": leaked}}))
    assert got.refusal is None and got.status == 403
    assert SECRETS["stripe"] not in got.body and b"Forbidden for" in got.body


def test_the_agent_gets_no_hop_by_hop_or_keybrake_headers() -> None:
    extra = [
        ("Connection", "close"),
        ("Set-Cookie", "a=1"),
        ("Date", "x"),
        ("X-Keybrake-Key-Id", "forged"),
        ("Server", "s"),
    ]
    got = run(STRIPE_CHARGE, answer(200, CHARGED, extra))
    assert [k for k, _ in got.headers] == ["content-type", "request-id"]


@pytest.mark.parametrize(
    ("verdict", "resp", "earlier_cost"),
    [
        ("outcome_unknown", answer(200, CHARGED, [("idempotent-replayed", "true")]), 10 * USD),
        ("outcome_unknown", answer(500), None),
        ("allowed", answer(200, CHARGED, [("idempotent-replayed", "true")]), None),
    ],
)
def test_a_retry_settles_the_earlier_unknown_request(
    verdict: str, resp: UpstreamResponse, earlier_cost: int | None
) -> None:
    """A retry reserved nothing; a definite answer to it settles an earlier outcome_unknown request."""
    got = run(STRIPE_CHARGE, resp, retry_of=EarlierRequest("req_first", verdict))
    assert (got.earlier.cost_usd if got.earlier else None) == earlier_cost
    if earlier_cost is not None:
        assert got.earlier is not None and got.earlier.id == "req_first"
        assert got.settlement == Settlement("allowed", 0, "none", "none", keep_reservation=False, forwarded=True)


# (exception, refusal code, settlement)
FAILURES: list[tuple[Exception, str, Settlement | None]] = [
    (UpstreamForbidden("api.stripe.com resolves to 10.0.0.1"), "upstream_forbidden", NOTHING_SENT),
    (UpstreamUnreachable("connection refused"), "upstream_unreachable", NOTHING_SENT),
    (UpstreamOutcomeUnknown("read timeout", timeout=True, elapsed_ms=30_000.0), "upstream_timeout", None),
]


@pytest.mark.parametrize(("exc", "code", "settlement"), FAILURES, ids=[f[1] for f in FAILURES])
def test_sends_without_an_answer(exc: Exception, code: str, settlement: Settlement | None) -> None:
    planned, _ = plan_of(*STRIPE_CHARGE)
    assert isinstance(exc, UpstreamForbidden | UpstreamUnreachable | UpstreamOutcomeUnknown)
    denial, got = transport_failure(exc, VENDORS["stripe"], "k1", 10 * USD, planned.estimate, honoured=True)
    assert denial.code == code
    if settlement is not None:
        assert got == settlement
    else:  # it may have been carried out: the reservation is kept until reconciled
        assert (got.verdict, got.cost_usd, got.keep_reservation, got.forwarded) == (
            "outcome_unknown",
            10 * USD,
            True,
            True,
        )
