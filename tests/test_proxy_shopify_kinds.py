"""The red team's Shopify findings, through a running Keybrake with ShopifyAPI against the fake shop:
money that moved with $0 reserved under a $10 cap (an order cancelled with a refund, a refund to
store credit, a bulk mutation) and guarded mutations that redirect the shop's data to a URL. Each
call is refused before it reaches the shop, or runs priced (docs/sdk-shopify.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import shopify

from tests.fakes.shopify_server import DEFAULT_TOKEN, FakeShopify, FakeShopifyThread
from tests.harness import KeybrakeThread
from tests.test_proxy_shopify import graphql_posts, issue, refused
from tests.vendors.shopify_calls import ORDER, REFUND

CANCEL = (
    'mutation {{ orderCancel(orderId: "{order}", reason: CUSTOMER, restock: false, {args}) '
    "{{ job {{ id }} orderCancelUserErrors {{ message }} }} }}"
)
CREDIT = {"storeCreditRefund": {"amount": {"amount": "5000.00", "currencyCode": "USD"}}}
BULK_REFUND = "mutation r($input: RefundInput!) { refundCreate(input: $input) { refund { id } } }"
BULK = (
    'mutation { bulkOperationRunMutation(mutation: %s, stagedUploadPath: "tmp/1/b.jsonl") { userErrors { message } } }'
)


@pytest.fixture
def fake() -> Iterator[FakeShopify]:
    with FakeShopifyThread() as t:
        yield t.fake


@pytest.fixture
def kbr(tmp_path: Path, fake: FakeShopify) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake.base_url, name="shopify", secret=DEFAULT_TOKEN, vendor="shopify")
        yield server


def code(body: Any) -> str:
    return str(body["errors"][0]["extensions"]["code"])


@pytest.mark.parametrize("args", ["refund: true", "refundMethod: {originalPaymentMethodsRefund: true}"])
def test_an_order_cancelled_with_a_refund_is_unpriceable(
    kbr: KeybrakeThread, fake: FakeShopify, capsys: pytest.CaptureFixture[str], args: str
) -> None:
    issue(kbr, daily_usd_cap=10, shopify_shop_currency="USD")
    status, body = refused(capsys, CANCEL.format(order=ORDER, args=args))
    assert (status, code(body)) == (403, "unpriceable_request")
    assert graphql_posts(fake) == [] and fake.orders["1001"].refunded == 0


def test_an_unpriceable_cancel_runs_when_the_per_call_cap_is_reserved(kbr: KeybrakeThread, fake: FakeShopify) -> None:
    key = issue(kbr, daily_usd_cap=1000, max_usd_per_call=600)
    out = json.loads(shopify.GraphQL().execute(CANCEL.format(order=ORDER, args="refund: true")))
    assert out["data"]["orderCancel"]["orderCancelUserErrors"] == []
    assert fake.orders["1001"].refunded == Decimal("500.00")
    (row,) = kbr.audit(key_id=key["id"])  # an unpriceable call reserves and costs the per-call cap
    assert (row["verdict"], row["cost_usd"], row["cost_source"], row["cost_kind"]) == (
        "allowed",
        600,
        "estimate",
        "orderCancel",
    )


def test_a_refund_to_store_credit_is_priced(
    kbr: KeybrakeThread, fake: FakeShopify, capsys: pytest.CaptureFixture[str]
) -> None:
    key = issue(kbr, daily_usd_cap=10, shopify_shop_currency="USD")
    over = {"input": {"orderId": ORDER, "allowOverRefunding": True, "refundMethods": [CREDIT]}}
    status, body = refused(capsys, REFUND, over, "Refund")
    assert (status, code(body)) == (429, "spend_cap_exceeded")
    assert graphql_posts(fake) == [] and fake.store_credit == 0
    credit = {"storeCreditRefund": {"amount": {"amount": "5.00", "currencyCode": "USD"}}}
    five = {"input": {"orderId": ORDER, "refundMethods": [credit]}}
    out = json.loads(shopify.GraphQL().execute(REFUND, five, "Refund"))
    assert out["data"]["refundCreate"]["userErrors"] == [] and fake.store_credit == Decimal("5.00")
    allowed = [r for r in kbr.audit(key_id=key["id"]) if r["verdict"] == "allowed"]
    assert [(r["cost_usd"], r["cost_source"], r["cost_kind"]) for r in allowed] == [(5, "response", "refundCreate")]


def test_an_unknown_refund_input_key_is_unpriceable(
    kbr: KeybrakeThread, fake: FakeShopify, capsys: pytest.CaptureFixture[str]
) -> None:
    issue(kbr, daily_usd_cap=10, shopify_shop_currency="USD")
    unknown = {"input": {"orderId": ORDER, "currency": "USD", "storeCreditRefunds": [{"amount": "5000.00"}]}}
    status, body = refused(capsys, REFUND, unknown, "Refund")
    assert (status, code(body)) == (403, "unpriceable_request") and graphql_posts(fake) == []


def test_a_bulk_mutation_is_guarded_and_unpriceable(
    kbr: KeybrakeThread, fake: FakeShopify, capsys: pytest.CaptureFixture[str]
) -> None:
    issue(kbr, daily_usd_cap=10, shopify_shop_currency="USD")
    status, body = refused(capsys, BULK % json.dumps(BULK_REFUND))
    assert (status, code(body)) == (403, "endpoint_guarded")
    issue(kbr, daily_usd_cap=10, allowed_shopify_mutations=["bulkOperationRunMutation"])
    status, body = refused(capsys, BULK % json.dumps(BULK_REFUND))
    assert (status, code(body)) == (403, "unpriceable_request")
    assert graphql_posts(fake) == []


@pytest.mark.parametrize(
    "query",
    [
        'mutation { carrierServiceCreate(input: {name: "x", callbackUrl: "https://e.ex"}) { userErrors { field } } }',
        'mutation { fulfillmentServiceCreate(name: "x", callbackUrl: "https://e.example") { userErrors { field } } }',
        'mutation { scriptTagCreate(input: {src: "https://e.example/a.js"}) { userErrors { field } } }',
    ],
)
def test_mutations_that_send_shop_data_to_a_url_are_guarded(
    kbr: KeybrakeThread, fake: FakeShopify, capsys: pytest.CaptureFixture[str], query: str
) -> None:
    issue(kbr, daily_usd_cap=10)
    status, body = refused(capsys, query)
    assert (status, code(body)) == (403, "endpoint_guarded") and graphql_posts(fake) == []


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("carrier_services.json", {"carrier_service": {"callback_url": "https://evil.example"}}, "endpoint_guarded"),
        (
            "fulfillment_services.json",
            {"fulfillment_service": {"callback_url": "https://e.example"}},
            "endpoint_guarded",
        ),
        ("script_tags.json", {"script_tag": {"src": "https://evil.example/a.js"}}, "endpoint_guarded"),
        ("orders/1001/fulfillments.json", {"fulfillment": {}}, "unpriceable_request"),
        ("fulfillments.json", {"fulfillment": {}}, "unpriceable_request"),
        ("orders/1001/refunds.json", {"refund": {"currency": "USD", "store_credit": "5000"}}, "unpriceable_request"),
    ],
)
def test_rest_writes_are_classed_like_their_graphql_twins(
    kbr: KeybrakeThread, fake: FakeShopify, path: str, body: Any, expected: str
) -> None:
    key = kbr.issue({"daily_usd_cap": 10}, vendor="shopify", label="test:shop-agent:run-1")
    r = httpx.post(
        f"{kbr.url}/shopify/admin/api/2025-07/{path}", json=body, headers={"Authorization": f"Bearer {key['key']}"}
    )
    assert (r.status_code, code(r.json())) == (403, expected), r.text
    assert fake.requests == []
