"""Shopify's vendor module, decision by decision: paths, the GraphQL read, scope, prices, settlement."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from keybrake.core.errors import Denial
from keybrake.core.policy import Policy
from keybrake.vendors.base import Estimate, VendorRequest
from keybrake.vendors.shopify import Shopify
from tests.vendors.contract import Call, js
from tests.vendors.shopify_calls import GQL, REFUND, V, refund_input

S = Shopify()
RATES = {"usd": Decimal(1), "eur": Decimal("1.10")}
CAPTURE = (
    'mutation C($a: Money!) { orderCapture(input: {id: "o", parentTransactionId: "t", amount: $a, currency: EUR}) '
    "{ transaction { id } } }"
)
CAPTURE_LITERAL = 'mutation C { orderCapture(input: {id: "o", amount: 4.5, currency: EUR}) { transaction { id } } }'


def gql(query: str, variables: Any = None, name: str | None = None, **extra: Any) -> Call:
    return js("POST", GQL, {"query": query, "variables": variables, "operationName": name, **extra})


def scoped(call: Call, policy: Policy = Policy()) -> VendorRequest:
    vreq = S.parse(call.request(), S.canonical(call.method, call.segments))
    return vreq.scoped(S.check_scope(policy, vreq))


def decide(call: Call, policy: Policy = Policy()) -> Estimate:
    return S.estimate(scoped(call, policy), RATES)


def refused(call: Call, policy: Policy = Policy()) -> Denial:
    with pytest.raises(Denial) as info:
        decide(call, policy)
    return info.value


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (Call("POST", "/admin/api/graphql.json", b"{}", "application/json"), "path_invalid"),
        (Call("POST", "/admin/graphql.json", b"{}", "application/json"), "path_invalid"),
        (Call("POST", f"{V}/GraphQL.json", b"{}", "application/json"), "path_invalid"),
        (Call("POST", f"{V}/graphql", b"{}", "application/json"), "path_invalid"),
        (Call("GET", f"{V}/graphql.json", query=b"query=%7Bshop%7Bname%7D%7D"), "method_not_supported"),
        (Call("POST", f"{V}/orders/1/refunds", b"{}", "application/json"), "path_invalid"),
        (Call("GET", "/api/2025-07/shop.json"), "path_invalid"),
        (Call("GET", "/admin/api/latest/shop.json"), "path_invalid"),
    ],
)
def test_paths_keybrake_cannot_classify_are_refused(call: Call, code: str) -> None:
    assert refused(call).code == code


@pytest.mark.parametrize(
    ("query", "variables", "name", "why"),
    [
        ("mutation { ...F }", None, None, "is not defined"),
        ("mutation { ...F } fragment F on Mutation { ...F }", None, None, "spreads itself"),
        ("fragment F on Mutation { a } fragment F on Mutation { b } mutation { ...F }", None, None, "twice"),
        ("query A { shop { name } } mutation A { x }", None, "A", "names two operations alike"),
        ("{ shop { name } } mutation M { x }", None, "M", "anonymous"),
        ("query A { shop { name } } mutation M { x }", None, None, "name the one to run"),
        ("query A { shop { name } }", None, "B", "names no operation"),
        ("subscription { orders { id } }", None, None, "subscriptions"),
        ("mutation { refundCreate(input: {orderId: 1, orderId: 2}) { refund { id } } }", None, None, "twice"),
        ("mutation { a: productCreate { id } a: refundCreate { id } }", None, None, "two different fields"),
        ("mutation { refundCreate(input: ", None, None, "does not parse"),
        ("type Q { a: Int }", None, None, "no type system"),
        ("{ shop { name } }", [1], None, "`variables` must be a JSON object"),
    ],
)
def test_documents_that_cannot_be_read_with_certainty_are_refused(
    query: str, variables: Any, name: Any, why: str
) -> None:
    denial = refused(gql(query, variables, name))
    assert denial.code == "body_invalid" and why in denial.message, denial.message


def test_persisted_queries_and_unknown_members_are_refused() -> None:
    persisted = js("POST", GQL, {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab"}}})
    assert "persisted" in refused(persisted).message
    assert "Unknown GraphQL request member" in refused(gql("{ shop { name } }", queryId="x")).message
    assert refused(Call("POST", GQL, b"[]", "application/json")).code == "body_invalid"
    assert refused(Call("POST", GQL, b"{}", "text/plain")).code == "unsupported_media_type"
    on_query = Call("POST", GQL, json.dumps({"query": "{ shop { name } }"}).encode(), "application/json", b"query=x")
    assert refused(on_query).code == "param_ambiguous"


def test_queries_are_free_and_introspection_is_a_query() -> None:
    assert decide(gql("{ shop { name } }")).pricing == "free"
    assert decide(gql("{ __schema { mutationType { fields { name } } } }")).pricing == "free"
    assert decide(Call("POST", GQL, b"{ shop { name } }", "application/graphql")).pricing == "free"


def test_amounts_are_read_from_literals_variables_and_defaults_in_one_shape() -> None:
    assert decide(gql(CAPTURE, {"a": "10.00"}, "C")).amount == 11_000_000  # EUR at 1.10
    assert decide(gql(CAPTURE.replace("$a: Money!", '$a: Money = "2.00"'), {}, "C")).amount == 2_200_000
    assert decide(gql(CAPTURE_LITERAL, None, "C")).amount == 4_950_000
    assert decide(gql(REFUND, refund_input("1.005", "2"), "Refund")).amount == 3_005_000
    float_amount = refused(gql(CAPTURE, {"a": 10.5}, "C"))
    assert float_amount.code == "body_invalid" and "decimal string" in float_amount.message
    assert refused(gql(CAPTURE_LITERAL.replace("4.5", "-1"), None, "C")).code == "body_invalid"
    assert refused(gql(CAPTURE, {"a": "1e3"}, "C")).code == "body_invalid"
    assert refused(gql(CAPTURE.replace("EUR", "CHF"), {"a": "1"}, "C")).code == "currency_not_supported"
    assert decide(gql(REFUND, refund_input("0.01"), "Refund")).pricing == "priced"
    one = refund_input("7.00")
    one["input"]["transactions"] = one["input"]["transactions"][0]  # coerced to a list of one, as Shopify does
    assert decide(gql(REFUND, one, "Refund")).amount == 7_000_000


def test_an_alias_never_hides_a_field_and_a_repeat_runs_once() -> None:
    twice = "mutation R($input: RefundInput!) { a: refundCreate(input: $input) { refund { id } } " \
        "a: refundCreate(input: $input) { refund { id } } }"  # fmt: skip
    assert decide(gql(twice, refund_input("5.00"), "R")).amount == 5_000_000
    two = twice.replace("a: refundCreate(input: $input) { refund { id } } }", "b: refundCreate(input: $input) { id } }")
    assert decide(gql(two, refund_input("5.00"), "R")).amount == 10_000_000
    typename = 'mutation { __typename productCreate(product: {title: "A"}) { product { id } } }'
    assert decide(gql(typename), Policy(vendor_data={"allowed_shopify_mutations": ["productCreate"]})).pricing == "free"
    hidden = 'mutation { productCreate: draftOrderComplete(id: "d") { draftOrder { id } } }'
    only_products = Policy(vendor_data={"allowed_shopify_mutations": ["productCreate"]})
    assert refused(gql(hidden), only_products).code == "scope_violation"
    skipped = REFUND.replace("refundCreate(input: $input)", "refundCreate(input: $input) @skip(if: true)")
    assert decide(gql(skipped, refund_input("5.00"), "Refund")).amount == 5_000_000  # directives are not evaluated


def test_shop_currency_prices_what_shopify_reads_in_the_shops_currency() -> None:
    card = gql('mutation { giftCardCreate(input: {initialValue: "25"}) { giftCard { id } } }')
    assert decide(card).pricing == "unpriceable"
    eur = Policy(vendor_data={"shopify_shop_currency": "EUR"})
    assert (decide(card, eur).pricing, decide(card, eur).amount) == ("priced", 27_500_000)
    no_currency = gql(REFUND, refund_input("10.00", currency=None), "Refund")
    assert decide(no_currency).pricing == "unpriceable" and decide(no_currency, eur).amount == 11_000_000


def test_money_words_make_a_mutation_unpriceable_and_releases_free() -> None:
    for name in (
        "draftOrderComplete",
        "discountCodeBasicCreate",
        "orderMarkAsPaid",
        "appSubscriptionCreate",
        "priceRuleCreate",
        "fulfillmentCreateV2",
    ):
        assert decide(gql(f"mutation {{ {name}(id: 1) {{ userErrors {{ message }} }} }}")).pricing == "unpriceable"
    for name in ("discountCodeDelete", "productCreate", "customerUpdate"):
        assert decide(gql(f"mutation {{ {name}(id: 1) {{ userErrors {{ message }} }} }}")).pricing == "free"


def test_guarded_mutations_run_only_when_named() -> None:
    for name in ("delegateAccessTokenCreate", "webhookSubscriptionCreate", "pubSubWebhookSubscriptionUpdate"):
        call = gql(f"mutation {{ {name}(input: {{}}) {{ userErrors {{ message }} }} }}")
        assert refused(call).code == "endpoint_guarded"
        assert decide(call, Policy(vendor_data={"allowed_shopify_mutations": [name]})).pricing == "free"


def test_rest_refunds_and_gift_cards_are_priced_other_money_writes_unpriceable() -> None:
    body = {"refund": {"currency": "EUR", "transactions": [{"amount": "10.00"}, {"amount": 5}]}}
    assert decide(js("POST", f"{V}/orders/1/refunds.json", body)).amount == 16_500_000
    assert decide(js("POST", f"{V}/gift_cards.json", {"gift_card": {"initial_value": "10"}})).pricing == "unpriceable"
    assert decide(js("POST", f"{V}/orders/1/transactions.json", {"transaction": {}})).pricing == "unpriceable"
    assert decide(js("POST", f"{V}/orders/1/refunds/calculate.json", body)).pricing == "free"
    assert decide(Call("GET", f"{V}/orders/1.json")).pricing == "free"
    assert refused(js("POST", f"{V}/orders/1/refunds.json", {"refund": []})).code == "body_invalid"


def settle(call: Call, doc: Any, status: int = 200, policy: Policy = Policy()) -> tuple[int, str]:
    vreq = scoped(call, policy)
    c = S.cost(vreq, S.estimate(vreq, RATES), status, {}, doc, RATES)
    return c.cost_usd, c.cost_source


def test_a_mutation_costs_what_ran_according_to_the_answer() -> None:
    two = (
        "mutation R($input: RefundInput!) { a: refundCreate(input: $input) { refund { id } } "
        "b: refundCreate(input: $input) { userErrors { message } } }"
    )
    call = gql(two, refund_input("4.00"), "R")
    assert settle(call, {"data": {"a": {"refund": {"id": "r"}}, "b": {"userErrors": []}}}) == (8_000_000, "response")
    partly = {"data": {"a": {"refund": {"id": "r"}}, "b": {"userErrors": [{"message": "no"}]}}}
    assert settle(call, partly)[0] == 4_000_000
    assert settle(call, {"data": {"a": None, "b": None}, "errors": [{"message": "x"}]})[0] == 0
    assert settle(call, {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]})[0] == 0
    assert settle(call, None) == (8_000_000, "estimate")  # no answer to read: the estimate stands
    assert settle(call, {"errors": [{"message": "x"}]}, status=403)[0] == 0


def test_oauth_writes_are_guarded_and_the_scopes_read_is_free() -> None:
    exchange, scopes = ("admin", "oauth", "access_token"), ("admin", "oauth", "access_scopes.json")
    assert any(g.matches("POST", exchange) for g in S.guarded)
    assert not any(g.matches("GET", scopes) for g in S.guarded)
    assert decide(Call("GET", "/admin/oauth/access_scopes.json")).pricing == "free"


def test_tokens_are_redacted_from_every_answer() -> None:
    doc = {"storefront_access_token": {"access_token": "abc", "title": "t"}, "data": {"x": {"accessToken": "def"}}}
    assert S.redact(scoped(Call("GET", f"{V}/shop.json")), doc) == ["accessToken", "access_token"]
    assert "abc" not in json.dumps(doc) and "def" not in json.dumps(doc)
