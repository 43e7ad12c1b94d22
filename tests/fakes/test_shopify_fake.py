"""The fake Shopify shop answers in Shopify's documented shapes (tests/fakes/shopify_server)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from tests.fakes.shopify_server import DEFAULT_TOKEN, FakeShopifyThread
from tests.vendors.shopify_calls import REFUND, refund_input

GQL = "/admin/api/2025-07/graphql.json"


@pytest.fixture
def shop() -> Iterator[FakeShopifyThread]:
    with FakeShopifyThread() as t:
        yield t


def post(t: FakeShopifyThread, path: str, doc: object, token: str = DEFAULT_TOKEN) -> httpx.Response:
    return httpx.post(t.base_url + path, json=doc, headers={"X-Shopify-Access-Token": token})


def test_a_wrong_token_is_401_in_shopifys_words(shop: FakeShopifyThread) -> None:
    r = post(shop, GQL, {"query": "{ shop { name } }"}, token="shpat_" + "0" * 32)
    assert r.status_code == 401 and r.json() == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }


def test_graphql_answers_carry_data_and_cost_or_errors_only(shop: FakeShopifyThread) -> None:
    ok = post(shop, GQL, {"query": REFUND, "variables": refund_input("10.00"), "operationName": "Refund"}).json()
    assert ok["data"]["refundCreate"]["userErrors"] == [] and ok["data"]["refundCreate"]["refund"]["id"]
    assert ok["extensions"]["cost"]["actualQueryCost"] == 10
    assert shop.fake.orders["1001"].refunded == Decimal("10.00")
    invalid = post(shop, GQL, {"query": "{ shop { nope } }"}).json()
    assert "data" not in invalid and "nope" in invalid["errors"][0]["message"]


def test_a_refund_over_what_was_captured_is_a_user_error(shop: FakeShopifyThread) -> None:
    out = post(shop, GQL, {"query": REFUND, "variables": refund_input("600.00"), "operationName": "Refund"}).json()
    assert out["data"]["refundCreate"]["refund"] is None
    assert out["data"]["refundCreate"]["userErrors"][0]["field"] == ["transactions"]
    assert shop.fake.orders["1001"].refunded == 0


def test_rest_refunds(shop: FakeShopifyThread) -> None:
    body = {"refund": {"currency": "USD", "transactions": [{"amount": "5.00", "kind": "refund"}]}}
    made = post(shop, "/admin/api/2025-07/orders/1001/refunds.json", body)
    assert made.status_code == 201 and made.json()["refund"]["transactions"][0]["amount"] == "5.00"
    too_much = {"refund": {"transactions": [{"amount": "900", "kind": "refund"}]}}
    over = post(shop, "/admin/api/2025-07/orders/1001/refunds.json", too_much)
    assert over.status_code == 422 and "base" in over.json()["errors"]
    assert post(shop, "/admin/api/2025-07/orders/9/refunds.json", body).status_code == 404
