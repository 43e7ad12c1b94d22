"""The one-file test vendor (tests/vendors/example_vendor.py) through a real `keybrake serve`
against a tiny fake Acme: its setting is read, its priced call reserves and settles, its scope
refuses in its own error shape, its secret never reaches the agent, and its own policy field is
taken, rendered, enforced and described by the admin API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from keybrake.config import from_env
from keybrake.vendors import registry
from tests.fakes.base import FakeServer, FakeThread, RecordedRequest
from tests.harness import KeybrakeThread, wait_for
from tests.vendors import example_vendor

SECRET = "ak_" + "Z9" * 12


class FakeAcme(FakeServer):
    """Acme's API as example_vendor.py describes it: orders and API keys, Bearer auth."""

    name = "fake-acme"

    def __init__(self) -> None:
        super().__init__()
        self.orders: dict[str, dict[str, Any]] = {}

    def reply(self, status: int, doc: Any) -> web.Response:
        return web.json_response(doc, status=status, headers={"acme-request-id": f"req_{len(self.requests)}"})

    async def handle(self, request: web.Request, recorded: RecordedRequest) -> web.Response:
        if recorded.headers.get("authorization") != f"Bearer {SECRET}":
            return self.reply(401, {"fault": {"code": "unauthorized", "reason": "bad key"}})
        if recorded.method == "POST" and recorded.path == "/v1/orders":
            doc = json.loads(recorded.body)
            order = {"id": f"ord_{len(self.orders) + 1}", "object": "order", "customer": doc["customer"]}
            self.orders[order["id"]] = {**order, "amount_charged": doc["amount"]}
            return self.reply(201, self.orders[order["id"]])
        if recorded.method == "GET" and recorded.path.startswith("/v1/orders/"):
            found = self.orders.get(recorded.path.rsplit("/", 1)[1])
            return self.reply(200, found) if found else self.reply(404, {"fault": {"code": "not_found"}})
        if recorded.path == "/v1/api_keys":
            return self.reply(200, {"data": [{"id": "k_1", "api_secret": "as_v3ry_s3cret"}]})
        return self.reply(404, {"fault": {"code": "not_found", "reason": recorded.path}})


@pytest.fixture
def acme() -> Iterator[FakeThread[FakeAcme]]:
    example_vendor.register()
    try:
        with FakeThread(FakeAcme()) as t:
            yield t
    finally:
        registry.unregister("acme")


@pytest.fixture
def kb(tmp_path: Path, acme: FakeThread[FakeAcme]) -> Iterator[KeybrakeThread]:
    # The vendor's own setting, read from the environment like any KEYBRAKE_* variable.
    settings = from_env({"KEYBRAKE_ACME_FEE_USD": "0.25"})
    with KeybrakeThread(tmp_path / "data", vendor_settings=settings.vendor_settings) as server:
        server.add_credential(acme.base_url, name="acme", secret=SECRET, vendor="acme")
        yield server


def _post(kb: KeybrakeThread, key: str, path: str, doc: Any) -> httpx.Response:
    return httpx.post(f"{kb.url}/acme{path}", json=doc, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_a_priced_order_reserves_then_settles_and_scope_refuses_in_acmes_shape(
    kb: KeybrakeThread, acme: FakeThread[FakeAcme]
) -> None:
    assert kb.settings.vendor_setting("acme", "fee_usd") == Decimal("0.25")
    key = kb.issue({"daily_usd_cap": 50, "customer_allowlist": ["cu_ok"]}, vendor="acme", label="test:acme:1")
    order = {"customer": "cu_ok", "amount": 1250, "item": "anvil"}

    held = acme.hold()  # the order is in flight: its estimate is reserved against the cap
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(_post(kb, key["key"], "/v1/orders", order)))
    thread.start()
    try:
        wait_for(lambda: acme.fake.requests)
        usage = kb.key(key["id"])["usage"]["daily_usd"]
        assert (usage["reserved"], usage["used"]) == (12.75, 0)  # $12.50 and the $0.25 fee
    finally:
        held.set()
        thread.join(30)
    (answer,) = answers
    assert answer.status_code == 201, answer.text
    (seen,) = acme.fake.requests
    assert seen.headers["authorization"] == f"Bearer {SECRET}" and key["key"] not in json.dumps(seen.headers)
    usage = kb.key(key["id"])["usage"]["daily_usd"]
    assert (usage["reserved"], usage["used"]) == (0, 12.75)
    (row,) = kb.audit(key_id=key["id"])
    assert (row["verdict"], row["cost_usd"], row["cost_source"], row["customer_scope_id"]) == (
        "allowed",
        12.75,
        "response",
        "cu_ok",
    )
    assert row["vendor_object_id"] == answer.json()["id"]

    refused = _post(kb, key["key"], "/v1/orders", {**order, "customer": "cu_evil"})
    assert refused.status_code == 403
    assert refused.json()["fault"]["code"] == "scope_violation"
    assert len(acme.fake.requests) == 1  # nothing was sent

    free = httpx.get(
        f"{kb.url}/acme/v1/orders/{answer.json()['id']}", headers={"Authorization": f"Bearer {key['key']}"}
    )
    assert free.status_code == 200 and free.json()["amount_charged"] == 1250


def test_guarded_endpoints_and_redaction(kb: KeybrakeThread, acme: FakeThread[FakeAcme]) -> None:
    plain = kb.issue({"daily_usd_cap": 1}, vendor="acme")
    r = httpx.get(f"{kb.url}/acme/v1/api_keys", headers={"Authorization": f"Bearer {plain['key']}"})
    assert (r.status_code, r.json()["fault"]["code"]) == (403, "endpoint_guarded")
    named = kb.issue({"daily_usd_cap": 1, "allowed_endpoints": ["GET /v1/api_keys"]}, vendor="acme")
    r = httpx.get(f"{kb.url}/acme/v1/api_keys", headers={"Authorization": f"Bearer {named['key']}"})
    assert r.status_code == 200
    assert "as_v3ry_s3cret" not in r.text and r.json()["data"][0]["api_secret"] == "[redacted by keybrake]"


def test_acmes_own_policy_field_is_taken_rendered_enforced_and_described(
    kb: KeybrakeThread, acme: FakeThread[FakeAcme]
) -> None:
    # Acme registered its field after keybrake.admin was imported: the app composed it when built.
    spec = httpx.get(f"{kb.admin_url}/openapi.json", timeout=30).json()["components"]["schemas"]
    for model in ("PolicyIn", "Policy"):
        assert {"type": "array", "items": {"type": "string"}} in spec[model]["properties"]["allowed_acme_regions"][
            "anyOf"
        ]
    key = kb.issue({"daily_usd_cap": 50, "allowed_acme_regions": ["eu-west"]}, vendor="acme")
    assert key["policy"]["allowed_acme_regions"] == ["eu-west"]
    assert kb.key(key["id"])["policy"]["allowed_acme_regions"] == ["eu-west"]
    with kb.admin() as c:
        bad = c.post("/v1/keys", json={"vendor": "acme", "policy": {"allowed_acme_regions": ["EU West"]}})
        assert (bad.status_code, bad.json()["error"]["field"]) == (422, "policy.allowed_acme_regions"), bad.text
        assert "is not an Acme region such as 'us-east' or 'eu-west'" in bad.json()["error"]["message"]
        # Another vendor's keys do not take it.
        other = c.post("/v1/keys", json={"vendor": "stripe", "policy": {"allowed_acme_regions": ["eu-west"]}})
        assert (other.status_code, other.json()["error"]["field"]) == (422, "policy.allowed_acme_regions")

    order = {"customer": "cu_ok", "amount": 100, "region": "us-east"}
    for doc in (order, {"customer": "cu_ok", "amount": 100}):  # another region, or none
        refused = _post(kb, key["key"], "/v1/orders", doc)
        assert refused.status_code == 403, refused.text
        assert refused.json()["fault"]["code"] == "scope_violation"
        assert "allowed_acme_regions" in refused.json()["fault"]["reason"]
    assert acme.fake.requests == []  # refused before any upstream call
    assert _post(kb, key["key"], "/v1/orders", {**order, "region": "eu-west"}).status_code == 201

    with kb.admin() as c:  # a merge patch is validated by the same composed model
        widened = c.patch(f"/v1/keys/{key['id']}", json={"policy": {"allowed_acme_regions": ["eu-west", "us-east"]}})
        assert widened.status_code == 200, widened.text
        assert widened.json()["policy"]["allowed_acme_regions"] == ["eu-west", "us-east"]
        bad = c.patch(f"/v1/keys/{key['id']}", json={"policy": {"allowed_acme_regions": ["?"]}})
        assert (bad.status_code, bad.json()["error"]["field"]) == (422, "policy.allowed_acme_regions"), bad.text
    assert _post(kb, key["key"], "/v1/orders", order).status_code == 201
    assert len(acme.fake.requests) == 2
