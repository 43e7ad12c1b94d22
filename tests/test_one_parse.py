"""One parse: one name, one value, one shape — regressions through raw HTTP against a running
Keybrake and the fake vendors (which read parameters as the vendors do, see
tests/fakes/reference_parsers.py). The kind is generated in tests/vendors/test_one_parse_props_*.py;
the refusals alone are tables in tests/proxy/test_decide_parse.py."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread

FORM = "application/x-www-form-urlencoded"


def _post(kb: KeybrakeThread, key: dict[str, Any], path: str, body: bytes, query: str = "") -> httpx.Response:
    url = f"{kb.url}/stripe{path}" + (f"?{query}" if query else "")
    return httpx.post(url, content=body, headers={"Authorization": f"Bearer {key['key']}", "Content-Type": FORM})


def _denied(kb: KeybrakeThread, key: dict[str, Any], r: httpx.Response, code: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code
    assert kb.audit(key_id=key["id"])[0]["verdict"] == f"denied_{code}"


def test_the_plain_shape_still_charges_what_was_reserved(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 10, "max_usd_per_call": 5, "allowed_endpoints": ["POST /v1/charges"]})
    r = _post(kb, key, "/v1/charges", b"amount=100&currency=usd&source=tok_visa")
    assert r.status_code == 200 and r.json()["amount"] == 100
    assert kb.audit(key_id=key["id"])[0]["cost_usd"] == 1


def test_a_get_body_is_not_scope_evidence(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"customer_allowlist": ["cus_A"], "allowed_endpoints": ["GET /v1/charges"]})
    bearer = {"Authorization": f"Bearer {key['key']}"}
    r = httpx.request(
        "GET", f"{kb.url}/stripe/v1/charges", content=b"customer=cus_A", headers={**bearer, "Content-Type": FORM}
    )
    _denied(kb, key, r, "body_invalid")
    assert fake_stripe.requests == []
    deleted = httpx.request("DELETE", f"{kb.url}/stripe/v1/customers/cus_A", content=b"x=1", headers=bearer)
    assert deleted.status_code == 400 and fake_stripe.requests == []
    ok = httpx.get(f"{kb.url}/stripe/v1/charges", params={"customer": "cus_A"}, headers=bearer)
    assert ok.status_code == 200 and len(fake_stripe.requests) == 1  # the query string is the way
