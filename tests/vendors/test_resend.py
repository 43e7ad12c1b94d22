"""Resend's one parse, recipient scope, flat-rate cost and error shape, as pure functions."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from keybrake.core.errors import Denial
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.vendors.base import VendorRequest
from keybrake.vendors.resend import Resend

R = Resend(Decimal("0.0004"))
JSON = ("content-type", "application/json")
RATES = {"usd": Decimal(1)}


def vreq(
    method: str, path: str, doc: Any = None, *, raw: bytes | None = None, ctype: str = "application/json"
) -> VendorRequest:
    body = raw if raw is not None else (json.dumps(doc).encode() if doc is not None else b"")
    segs = tuple(path.strip("/").split("/"))
    return R.parse(ProxyRequest(method, path.encode(), b"", (("content-type", ctype),), body, "127.0.0.1"), segs)


def email(to: Any = "a@example.com", **extra: Any) -> dict[str, Any]:
    return {"from": "Acme <bot@mail.acme.io>", "to": to, "subject": "hi", "html": "<p>hi</p>", **extra}


def test_one_email_costs_the_rate_per_distinct_recipient() -> None:
    r = vreq("POST", "/emails", email(["a@example.com", "B <b@example.com>"], cc="a@example.com", bcc=["c@x.org"]))
    est = R.estimate(r, RATES)
    assert (est.pricing, est.amount, est.sends, est.cost_kind) == ("priced", 3 * 400, 3, "email")
    assert R.summary(r) == {
        "recipient_count": 3,
        "recipient_domains": ["example.com", "x.org"],
        "from_domain": "mail.acme.io",
    }
    cost = R.cost(r, est, 200, {}, {"id": "e1"}, RATES)
    assert (cost.cost_usd, cost.cost_source, cost.cost_kind, cost.vendor_object_id) == (
        1200,
        "flat_rate",
        "email",
        "e1",
    )
    assert R.cost(r, est, 422, {}, {"name": "validation_error"}, RATES).cost_usd == 0


def test_batch_sums_its_emails() -> None:
    r = vreq("POST", "/emails/batch", [email(f"u{i}@example.com") for i in range(10)])
    est = R.estimate(r, RATES)
    assert (est.amount, est.sends) == (10 * 400, 10)
    assert R.summary(r)["emails"] == 10


def test_domain_scope_checks_every_address_of_every_email() -> None:
    policy = Policy(vendor_data={"allowed_to_domains": ["example.com"], "allowed_from_domains": ["*.acme.io"]})
    batch = [email(f"u{i}@example.com") for i in range(9)] + [email("u9@example.com", bcc=["spy@evil.io"])]
    R.check_scope(policy, vreq("POST", "/emails/batch", batch[:9]))
    with pytest.raises(Denial) as exc:
        R.check_scope(policy, vreq("POST", "/emails/batch", batch))
    assert (
        exc.value.code == "scope_violation" and "evil.io" in exc.value.message and "batch item 9" in exc.value.message
    )
    with pytest.raises(Denial) as exc:
        R.check_scope(policy, vreq("POST", "/emails", email(**{"from": "x@acme.io"})))
    assert "allowed_from_domains" in exc.value.message


@pytest.mark.parametrize(
    ("raw", "ctype", "code"),
    [
        (b"not json", "application/json", "body_invalid"),
        (b"to=a@b.c", "application/x-www-form-urlencoded", "unsupported_media_type"),
        (b'{"from": "a@b.c", "subject": "x"}', "application/json", "body_invalid"),  # no to
        (b'{"to": "a@b.c", "subject": "x"}', "application/json", "body_invalid"),  # no from
        (b'{"from": "a@b.c", "to": "a@b.c, c@d.e"}', "application/json", "param_ambiguous"),
        (b'{"from": "a@b.c", "to": "not an address"}', "application/json", "scope_violation"),
        (b'{"from": "a@b.c", "to": [], "subject": "x"}', "application/json", "body_invalid"),
        (b'{"from": "a@b.c", "to": "a@b.c", "to": "x@evil.io"}', "application/json", "body_invalid"),
        (b"[]", "application/json", "body_invalid"),
    ],
)
def test_bad_bodies_are_refused(raw: bytes, ctype: str, code: str) -> None:
    path = "/emails/batch" if raw == b"[]" else "/emails"
    with pytest.raises(Denial) as exc:
        vreq("POST", path, raw=raw, ctype=ctype)
    assert exc.value.code == code


def test_batch_over_100_is_refused() -> None:
    with pytest.raises(Denial) as exc:
        vreq("POST", "/emails/batch", [email() for _ in range(101)])
    assert exc.value.code == "body_invalid"


def test_dedup_fingerprint_ignores_order_and_header_only_changes() -> None:
    a = R.dedup_fingerprint(vreq("POST", "/emails", email(["a@example.com", "b@example.com"])))
    b = R.dedup_fingerprint(vreq("POST", "/emails", email(["b@example.com", "a@example.com"], tags=[{"name": "x"}])))
    c = R.dedup_fingerprint(vreq("POST", "/emails", email(["a@example.com", "b@example.com"], html="<p>other</p>")))
    assert a == b != c


def test_api_key_tokens_are_redacted() -> None:
    doc = {"id": "k1", "token": "re_live_secret"}
    assert R.redact(vreq("POST", "/api-keys", {"name": "x"}), doc) == ["token"]
    assert doc["token"] == "[redacted by keybrake]"
    assert R.redact(vreq("GET", "/emails/e1"), {"token": "not a key"}) == []


def test_wrong_key_answers_are_credential_rejections() -> None:
    assert R.credential_rejected(403, {"name": "invalid_api_key"})
    assert R.credential_rejected(401, {"name": "missing_api_key"})
    assert not R.credential_rejected(403, {"name": "validation_error"})


def test_denials_in_resend_shape() -> None:
    body = R.render_denial(Denial("scope_violation", "nope"), {"code": "scope_violation"}).body
    assert body == {
        "statusCode": 403,
        "name": "scope_violation",
        "message": "nope",
        "keybrake": {"code": "scope_violation"},
    }


def test_secrets() -> None:
    assert R.validate_secret("re_123456789abc").hint == "re_…9abc"
    for bad in ("sk_test_1", "re_", {"key": "re_123456789"}):
        with pytest.raises(ValueError):
            R.validate_secret(bad)


def test_other_endpoints() -> None:
    assert R.estimate(vreq("GET", "/emails/e1"), RATES).pricing == "free"
    assert R.estimate(vreq("POST", "/broadcasts", {"name": "x"}), RATES).pricing == "unpriceable"
