"""Builders for the pure hot-path tables: keys, requests, and one call of every decision in order."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from keybrake.core.errors import Denial
from keybrake.core.ledger import LedgerEntry
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.core.upstream import UpstreamRequest
from keybrake.proxy.decide import Plan, Refusal, RowNotes, admit, parse, plan, route, upstream_request, with_facts
from keybrake.store.base import KeyRecord
from keybrake.vendors import build_vendors

VENDORS = build_vendors()
RATES = {"usd": Decimal(1), "eur": Decimal("1.10")}
PEPPER = b"p" * 32
NOW = 1_800_000_000_000
KEY_ID = "vk_table0000000000000001"
TWILIO_SID = "AC" + "5ca1ab1e" * 4
SECRETS = {
    "stripe": b"sk_test_fake_secret_1234567890",
    "twilio": json.dumps({"account_sid": TWILIO_SID, "auth_token": "a11ce" + "0" * 22 + "b0b00"}).encode(),
    "resend": b"re_FakeResendKey0123456789abcdefghi",
}
BASE_URLS = {"stripe": "https://api.stripe.com", "twilio": "https://api.twilio.com", "resend": "https://api.resend.com"}


def key(vendor: str = "stripe", status: str = "active", expires_at: int = NOW + 3_600_000, **policy: Any) -> KeyRecord:
    """A vault key of `vendor` whose stored policy is `policy` (USD fields in micro-USD)."""
    return KeyRecord(
        id=KEY_ID,
        vendor=vendor,
        credential="main",
        label=None,
        metadata={},
        policy=policy,
        policy_version=1,
        status=status,
        created_at=NOW - 1000,
        expires_at=expires_at,
        revoked_at=NOW - 10 if status == "revoked" else None,
        revoke_reason=None,
        issued_by=None,
    )


def request(
    method: str,
    path: str,
    *,
    form: dict[str, str] | list[tuple[str, str]] | None = None,
    json_body: Any = None,
    body: bytes = b"",
    ctype: str | None = None,
    headers: dict[str, str] | None = None,
) -> ProxyRequest:
    """A proxied request as the listener hands it over (lower-case header names)."""
    if form is not None:
        body, ctype = urlencode(form).encode(), "application/x-www-form-urlencoded"
    elif json_body is not None:
        body, ctype = json.dumps(json_body).encode(), "application/json"
    raw_path, _, query = path.partition("?")
    hs = [("authorization", "Bearer vault_key_x")]
    if ctype:
        hs.append(("content-type", ctype))
    if body:
        hs.append(("content-length", str(len(body))))
    hs += [(k.lower(), v) for k, v in (headers or {}).items()]
    return ProxyRequest(method, raw_path.encode(), query.encode(), tuple(hs), body, "127.0.0.1")


def decide(
    k: KeyRecord, req: ProxyRequest, facts: dict[str, LedgerEntry] | None = None
) -> tuple[Denial | tuple[Plan, UpstreamRequest], RowNotes]:
    """Every decision before forwarding, in the shell's order, with the row notes gathered so far.

    `facts` stand in for the ledger or a vendor lookup (proxy/facts.py); without them the
    decisions see what an empty ledger and a lookup that found nothing leave them.
    """
    notes: RowNotes = {}
    where = route(req, k, VENDORS)
    notes.update(where.notes)
    if isinstance(where, Refusal):
        return where.denial, notes
    parsed = parse(req, where, None, PEPPER)
    notes.update(parsed.notes)
    if isinstance(parsed, Refusal):
        return parsed.denial, notes
    policy = Policy.from_store(k.policy)
    admitted = admit(policy, where.vendor, parsed.vreq)
    notes.update(admitted.notes)
    if isinstance(admitted, Refusal):
        return admitted.denial, notes
    vreq = with_facts(parsed.vreq, facts) if facts else parsed.vreq
    planned = plan(policy, k, where.vendor, vreq, facts or {}, RATES)
    notes.update(planned.notes)
    if isinstance(planned, Refusal):
        return planned.denial, notes
    sent = upstream_request(req, where, planned.vreq, SECRETS[k.vendor], BASE_URLS[k.vendor], k.id)
    if isinstance(sent, Refusal):
        return sent.denial, notes
    return (planned, sent), notes


def refusal_of(k: KeyRecord, req: ProxyRequest, facts: dict[str, LedgerEntry] | None = None) -> Denial:
    """The refusal the decisions give `req` (fails the test when it would be forwarded)."""
    got, _ = decide(k, req, facts)
    assert isinstance(got, Denial), f"expected a refusal, got a plan to send {got[1].method} {got[1].url}"
    return got


def plan_of(
    k: KeyRecord, req: ProxyRequest, facts: dict[str, LedgerEntry] | None = None
) -> tuple[Plan, UpstreamRequest]:
    """The plan and the vendor request for `req` (fails the test when it is refused)."""
    got, _ = decide(k, req, facts)
    assert not isinstance(got, Denial), f"refused: {got.code}: {got.message}"
    return got


USD = 1_000_000  # µUSD per dollar
CHARGE = {"amount": "1000", "currency": "usd", "source": "tok_visa"}
SENDER = "Acme <bot@mail.acme.io>"
SMS = {"To": "+14155550100", "From": "+14155550199", "Body": "hi"}


def email(to: Any, **extra: Any) -> dict[str, Any]:
    """A Resend email to `to` from SENDER."""
    return {"from": SENDER, "to": to, "subject": "Your receipt", "html": "<p>Thanks!</p>", **extra}


def twilio_send(body: dict[str, str], account: str = KEY_ID) -> ProxyRequest:
    """A Twilio message send with form `body`, naming `account` in the path (the key's id by default)."""
    return request("POST", f"/twilio/2010-04-01/Accounts/{account}/Messages.json", form=body)
