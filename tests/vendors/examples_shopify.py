"""Shopify's contract examples (tests/vendors/contract.py, `VendorExamples`): GraphQL requests as
ShopifyAPI's `GraphQL().execute` sends them, and REST writes as its resources send them.

Imported by tests/vendors/contract.py (import that module, not this one: this one needs it first)."""

from __future__ import annotations

from typing import Any

from keybrake.core.policy import Policy
from tests.vendors.contract import Call, PolicyFieldExample, VendorExamples, js
from tests.vendors.shopify_calls import GQL, PRODUCT, REFUND, TOKEN, V, refund_input


def graphql(query: str, variables: dict[str, Any] | None = None, operation_name: str | None = None) -> Call:
    """A GraphQL request as ShopifyAPI's `GraphQL().execute(query, variables, operation_name)` sends it."""
    return js("POST", GQL, {"query": query, "variables": variables, "operationName": operation_name})


SHOPIFY = VendorExamples(
    secret=TOKEN,
    bad_secret="sk_test_abcdefgh12345678",
    spellings=((graphql(PRODUCT), ("admin", "api", "2025-07", "graphql.json")),),
    case_variant=js("POST", f"{V}/orders/1001/Refunds.json", {"refund": {"currency": "USD"}}),
    never_matches=None,
    matches="POST /admin/api/*/graphql.json",
    guarded=(Call("POST", f"{V}/webhooks.json"), Call("GET", f"{V}/STOREFRONT_ACCESS_TOKENS.json")),
    free=graphql("{ shop { name currencyCode } }"),
    priced=graphql(REFUND, refund_input("12.50", "7.25"), "Refund"),
    priced_usd=19_750_000,
    unpriceable=graphql('mutation { draftOrderComplete(id: "gid://shopify/DraftOrder/1") { draftOrder { id } } }'),
    scope=Policy(vendor_data={"allowed_shopify_mutations": ["productCreate"]}),
    in_scope=graphql(PRODUCT),
    out_of_scope=graphql(REFUND, refund_input("1.00"), "Refund"),
    secret_answer=(
        graphql('mutation { storefrontAccessTokenCreate(input: {title: "s"}) { storefrontAccessToken { id } } }'),
        {"data": {"storefrontAccessTokenCreate": {"storefrontAccessToken": {"accessToken": "shpss_s3cret"}}}},
        ("shpss_s3cret",),
    ),
    error_code_at=("errors", 0, "extensions", "code"),
    error_message_at=("errors", 0, "message"),
    policy_fields=(
        PolicyFieldExample(
            "allowed_shopify_mutations",
            ["productCreate"],
            ["refund-create"],
            "is not a GraphQL mutation field name",
            graphql(REFUND, refund_input("1.00"), "Refund"),
        ),
        PolicyFieldExample(
            "shopify_shop_currency",
            "USD",
            "usd",
            "is not an upper-case ISO 4217 currency code",
            None,  # it decides a price, not a scope: tests/test_proxy_shopify.py
        ),
        PolicyFieldExample(
            "daily_graphql_cost_points",
            5000,
            0,
            "greater than or equal to 1",
            None,  # it sets a cap, not a scope: tests/test_proxy_shopify_points.py
        ),
    ),
)
