"""ShopifyAPI (the official Python library) through a running Keybrake against a fake shop that
executes Shopify's GraphQL shapes (tests/fakes/shopify_server)."""

from __future__ import annotations

import ast
import json
import urllib.error
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import shopify
from pyactiveresource.connection import ClientError

from keybrake.integrations.shopify import activate, deactivate
from tests.fakes.shopify_server import DEFAULT_TOKEN, FakeShopify, FakeShopifyThread
from tests.harness import KeybrakeThread
from tests.vendors.shopify_calls import ORDER, REFUND, refund_input

VERSION = "2025-07"
PRODUCT = 'mutation P { productCreate(product: {title: "Anvil"}) { product { id } userErrors { message } } }'


@pytest.fixture
def fake() -> Iterator[FakeShopify]:
    with FakeShopifyThread() as t:
        yield t.fake


@pytest.fixture
def kbr(tmp_path: Path, fake: FakeShopify) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake.base_url, name="shopify", secret=DEFAULT_TOKEN, vendor="shopify")
        yield server
        deactivate()


def issue(kb: KeybrakeThread, **policy: Any) -> dict[str, Any]:
    key = kb.issue(policy, vendor="shopify", label="test:shop-agent:run-1")
    activate(kb.url, key["key"], VERSION)
    return key


def execute(query: str, variables: dict[str, Any] | None = None, name: str | None = None) -> dict[str, Any]:
    return json.loads(shopify.GraphQL().execute(query, variables, name))  # type: ignore[no-any-return]


def refused(capsys: pytest.CaptureFixture[str], query: str, variables: Any = None, name: Any = None) -> Any:
    """(status, body) of a refused GraphQL call: ShopifyAPI prints the body (as bytes) and raises."""
    capsys.readouterr()
    with pytest.raises(urllib.error.HTTPError) as info:
        shopify.GraphQL().execute(query, variables, name)
    printed = capsys.readouterr().out.strip().splitlines()[0]
    return info.value.code, json.loads(ast.literal_eval(printed))


def graphql_posts(fake: FakeShopify) -> list[Any]:
    return [r for r in fake.requests if r.path.endswith("/graphql.json")]


def test_a_refund_is_priced_from_its_variables_and_the_token_swapped(kbr: KeybrakeThread, fake: FakeShopify) -> None:
    key = issue(kbr, daily_usd_cap=100, allowed_shopify_mutations=["refundCreate"])
    out = execute(REFUND, refund_input("12.50", "7.25"), "Refund")
    assert out["data"]["refundCreate"]["userErrors"] == []
    assert fake.orders["1001"].refunded == Decimal("19.75")
    (seen,) = graphql_posts(fake)
    assert seen.headers["x-shopify-access-token"] == DEFAULT_TOKEN and key["key"] not in json.dumps(seen.headers)
    (row,) = kbr.audit(key_id=key["id"])
    assert (row["verdict"], row["cost_usd"], row["cost_source"]) == ("allowed", 19.75, "response")
    assert row["request_summary"] == {"graphql": "mutation", "fields": ["refundCreate"], "operation": "Refund"}
    assert kbr.key(key["id"])["usage"]["daily_usd"]["used"] == 19.75


def test_a_refund_shopify_refuses_with_user_errors_costs_nothing(kbr: KeybrakeThread, fake: FakeShopify) -> None:
    key = issue(kbr, daily_usd_cap=1000)
    out = execute(REFUND, refund_input("900.00"), "Refund")
    assert out["data"]["refundCreate"]["refund"] is None and out["data"]["refundCreate"]["userErrors"]
    (row,) = kbr.audit(key_id=key["id"])
    assert (row["verdict"], row["cost_usd"]) == ("allowed", 0)
    assert kbr.key(key["id"])["usage"]["daily_usd"]["used"] == 0


def test_a_mutation_outside_the_allowlist_is_refused_in_shopifys_error_shape(
    kbr: KeybrakeThread, fake: FakeShopify, capsys: pytest.CaptureFixture[str]
) -> None:
    key = issue(kbr, daily_usd_cap=100, allowed_shopify_mutations=["productCreate"])
    assert execute(PRODUCT)["data"]["productCreate"]["product"]["id"]
    aliased = REFUND.replace("refundCreate(", "productCreate: refundCreate(")  # an alias hides no field name
    status, body = refused(capsys, aliased, refund_input("5.00"), "Refund")
    assert status == 403 and body["errors"][0]["extensions"]["code"] == "scope_violation"
    assert "'refundCreate'" in body["errors"][0]["message"]
    assert fake.orders["1001"].refunded == 0 and len(graphql_posts(fake)) == 1
    verdicts = sorted(r["verdict"] for r in kbr.audit(key_id=key["id"]))
    assert verdicts == ["allowed", "denied_scope_violation"]


def test_a_document_with_several_operations_is_refused_unless_each_is_allowed(
    kbr: KeybrakeThread, fake: FakeShopify, capsys: pytest.CaptureFixture[str]
) -> None:
    issue(kbr, daily_usd_cap=100, allowed_shopify_mutations=["productCreate"])
    doc = PRODUCT + "\n" + REFUND
    status, body = refused(capsys, doc, refund_input("5.00"), "P")  # runs P, but Refund is in the document
    assert status == 403 and "operation 'Refund'" in body["errors"][0]["message"]
    assert not graphql_posts(fake)
    assert execute(PRODUCT + "\nquery Q { shop { name } }", None, "P")["data"]["productCreate"]["product"]


def test_guarded_mutations_need_naming_and_tokens_are_redacted(
    kbr: KeybrakeThread, fake: FakeShopify, capsys: pytest.CaptureFixture[str]
) -> None:
    mint = 'mutation { storefrontAccessTokenCreate(input: {title: "s"}) { storefrontAccessToken { accessToken } } }'
    issue(kbr)
    status, body = refused(capsys, mint)
    assert status == 403 and body["errors"][0]["extensions"]["code"] == "endpoint_guarded"
    assert not fake.tokens
    issue(kbr, allowed_shopify_mutations=["storefrontAccessTokenCreate"])
    out = execute(mint)
    (token,) = fake.tokens
    assert token not in json.dumps(out)
    assert out["data"]["storefrontAccessTokenCreate"]["storefrontAccessToken"]["accessToken"].startswith("[redacted")


def test_unpriceable_and_shop_currency(
    kbr: KeybrakeThread, fake: FakeShopify, capsys: pytest.CaptureFixture[str]
) -> None:
    card = 'mutation { giftCardCreate(input: {initialValue: "25.00"}) { giftCard { id } userErrors { message } } }'
    issue(kbr, daily_usd_cap=100)
    status, body = refused(capsys, card)  # in the shop's currency, which the key does not name
    assert status == 403 and body["errors"][0]["extensions"]["code"] == "unpriceable_request"
    key = issue(kbr, daily_usd_cap=100, shopify_shop_currency="USD")
    execute(card)
    assert len(fake.gift_cards) == 1
    row = next(r for r in kbr.audit(key_id=key["id"]) if r["verdict"] == "allowed")
    assert row["cost_usd"] == 25


def test_rest_refunds_are_priced_and_reads_are_free(kbr: KeybrakeThread, fake: FakeShopify) -> None:
    key = issue(kbr, daily_usd_cap=30)
    assert shopify.Shop.current().name == "Fake Shop"
    refund = shopify.Refund.create(
        {"order_id": 1001, "currency": "USD", "transactions": [{"amount": "20.00", "kind": "refund"}]}
    )
    assert refund.errors.full_messages() == [] and fake.orders["1001"].refunded == Decimal("20.00")
    with pytest.raises(ClientError) as info:  # $20 more would pass the $30 cap
        shopify.Refund.create(
            {"order_id": 1001, "currency": "USD", "transactions": [{"amount": "20.00", "kind": "refund"}]}
        )
    assert info.value.response.code == 429
    assert json.loads(info.value.response.body)["errors"][0]["extensions"]["code"] == "spend_cap_exceeded"
    assert fake.orders["1001"].refunded == Decimal("20.00")
    rows = sorted((r["verdict"], r["cost_usd"]) for r in kbr.audit(key_id=key["id"]))
    assert rows == [("allowed", 0), ("allowed", 20), ("cap_exceeded", 0)]


def test_concurrent_refunds_never_overshoot_the_cap(kbr: KeybrakeThread, fake: FakeShopify) -> None:
    key = kbr.issue({"daily_usd_cap": 100}, vendor="shopify", label="test:shop-agent:run-1")

    def one(i: int) -> int:
        activate(kbr.url, key["key"], VERSION)  # ShopifyAPI's headers are per thread
        try:
            execute(REFUND, refund_input("10.00"), "Refund")
            return 200
        except urllib.error.HTTPError as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(one, range(30)))
    assert sorted(statuses) == [200] * 10 + [429] * 20
    assert fake.orders["1001"].refunded == Decimal("100.00") and len(graphql_posts(fake)) == 10
    rows = kbr.audit(key_id=key["id"])
    assert len(rows) == 30  # one audit row per call
    assert sorted(r["verdict"] for r in rows) == ["allowed"] * 10 + ["cap_exceeded"] * 20
    assert kbr.key(key["id"])["usage"]["daily_usd"]["used"] == 100


def test_revoke_takes_effect_on_the_next_request(
    kbr: KeybrakeThread, fake: FakeShopify, capsys: pytest.CaptureFixture[str]
) -> None:
    key = issue(kbr, daily_usd_cap=100)
    execute("{ shop { name } }")
    with kbr.admin() as c:
        assert c.delete(f"/v1/keys/{key['id']}", params={"reason": "incident 7"}).status_code == 200
    status, body = refused(capsys, REFUND, refund_input("1.00"), "Refund")
    assert status == 401 and body["errors"][0]["extensions"]["code"] == "key_revoked"
    assert "incident 7" in body["errors"][0]["message"]
    assert len(graphql_posts(fake)) == 1 and fake.orders["1001"].refunded == 0


def test_a_credential_must_name_a_shop(kbr: KeybrakeThread, capsys: pytest.CaptureFixture[str]) -> None:
    with kbr.admin() as c:
        for url in ("https://evil.example.com", "https://myshopify.com.evil.example"):
            body = {"vendor": "shopify", "name": "x", "secret": DEFAULT_TOKEN, "base_url": url}
            r = c.post("/v1/credentials", json=body)
            assert r.status_code == 422 and "base_url" in r.text, r.text
        body = {"vendor": "shopify", "name": "x", "secret": DEFAULT_TOKEN, "base_url": "https://fake.myshopify.com"}
        assert c.post("/v1/credentials", json=body).status_code == 201
        refused_secret = c.post("/v1/credentials", json={**body, "name": "y", "secret": "sk_test_abcdefgh12345678"})
        assert refused_secret.status_code == 422
        no_shop = {"vendor": "shopify", "name": "no-shop", "secret": DEFAULT_TOKEN}
        assert c.post("/v1/credentials", json=no_shop).status_code == 201
    key = kbr.issue({}, vendor="shopify", credential="no-shop", label="test:shop-agent:run-1")
    activate(kbr.url, key["key"], VERSION)
    status, body = refused(capsys, "{ shop { name } }")  # there is no default shop to send the token to
    assert status == 502 and body["errors"][0]["extensions"]["code"] == "upstream_forbidden"


def test_the_order_in_examples_is_the_fakes(fake: FakeShopify) -> None:
    assert fake.order(ORDER) is fake.orders["1001"]
