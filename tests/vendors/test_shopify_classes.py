"""Shopify's classes by kind (docs/sdk-shopify.md, "What a call costs"): free only by a listed family,
every other mutation or REST write unpriceable, guarded redirects and mutation-running mutations,
and a REST endpoint classed like its GraphQL twin (table-driven)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from keybrake.core.policy import Policy
from keybrake.vendors.shopify_classes import rest_class
from keybrake.vendors.shopify_money import mutation_class
from tests.vendors.contract import Call, js
from tests.vendors.shopify_calls import ORDER, REFUND, V
from tests.vendors.test_shopify import S, decide, gql, refused

USD = Policy(vendor_data={"shopify_shop_currency": "USD"})


def field(name: str, args: str = "(id: 1)") -> Call:
    return gql(f"mutation {{ {name}{args} {{ userErrors {{ message }} }} }}")


@pytest.mark.parametrize(
    "name",
    ["orderCancel", "orderClose", "returnCreate", "subscriptionBillingAttemptCreate",
     "customerPaymentMethodRemoteCreate", "storeCreditAccountCredit", "customerAddTaxExemptions",
     "orderEditCommit", "sellingPlanGroupCreate", "xyzUnknown",
     "marketCreate", "themeCreate", "appUninstall", "flowTriggerReceive", "customerGenerateAccountActivationUrl"],
)  # fmt: skip
def test_a_mutation_outside_the_free_families_is_unpriceable(name: str) -> None:
    assert mutation_class(name) == "unpriceable"
    assert decide(field(name), USD).pricing == "unpriceable"  # the core refuses it without max_usd_per_call


@pytest.mark.parametrize(
    "name",
    ["productCreate", "productVariantsBulkUpdate", "collectionAddProducts", "customerUpdate", "metafieldsSet",
     "metaobjectUpsert", "inventorySetQuantities", "locationAdd", "tagsAdd", "tagsRemove", "fileCreate",
     "publishablePublish", "translationsRegister", "menuCreate", "pageCreate", "articleUpdate", "blogCreate",
     "urlRedirectCreate", "savedSearchCreate", "stagedUploadsCreate", "orderUpdate", "bulkOperationRunQuery",
     "discountCodeDelete", "giftCardDeactivate", "__typename"],
)  # fmt: skip
def test_the_listed_free_families_are_free(name: str) -> None:
    assert mutation_class(name) == "free"
    if not name.startswith("__"):
        assert decide(field(name)).pricing == "free"


@pytest.mark.parametrize(
    "name",
    ["carrierServiceCreate", "carrierServiceUpdate", "fulfillmentServiceCreate", "fulfillmentServiceUpdate",
     "scriptTagCreate", "scriptTagUpdate", "webhookSubscriptionCreate", "eventBridgeWebhookSubscriptionCreate",
     "pubSubWebhookSubscriptionCreate", "webPixelCreate", "storefrontAccessTokenCreate"],
)  # fmt: skip
def test_mutations_sending_shop_data_to_a_url_are_guarded(name: str) -> None:
    assert mutation_class(name) == "guarded"
    assert refused(field(name)).code == "endpoint_guarded"
    assert decide(field(name), Policy(vendor_data={"allowed_shopify_mutations": [name]})).pricing == "free"


INNER = json.dumps("mutation r($input: RefundInput!) { refundCreate(input: $input) { refund { id } } }")


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("bulkOperationRunMutation", f'(mutation: {INNER}, stagedUploadPath: "tmp/1/b.jsonl")'),
        ("bulkOperationRunMutation", '(mutation: "{ shop { name } }", stagedUploadPath: "p")'),
        ("productCreate", f"(product: {{title: {INNER}}})"),  # any field given a mutation document
        ("flowTriggerReceive", f"(payload: {{doc: [{INNER}]}})"),
    ],
)
def test_a_mutation_hidden_in_a_string_is_guarded_and_unpriceable(name: str, args: str) -> None:
    assert refused(field(name, args)).code == "endpoint_guarded"
    allowed = Policy(vendor_data={"allowed_shopify_mutations": [name]})
    assert decide(field(name, args), allowed).pricing == "unpriceable"


def test_a_string_that_only_mentions_mutation_is_not_a_document() -> None:
    assert decide(field("productCreate", '(product: {title: "a mutation of the anvil"})')).pricing == "free"


def store_credit(amount: str, currency: str = "USD", **extra: Any) -> dict[str, Any]:
    method = {"storeCreditRefund": {"amount": {"amount": amount, "currencyCode": currency}}, **extra}
    return {"input": {"orderId": ORDER, "currency": "USD", "refundMethods": [method]}}


def test_store_credit_refunds_are_priced_with_transactions() -> None:
    both = store_credit("5000.00", "EUR")
    both["input"]["transactions"] = [{"amount": "2.00", "gateway": "g", "kind": "REFUND", "orderId": ORDER}]
    rates = decide(gql(REFUND, both, "Refund"))
    assert (rates.pricing, rates.amount) == ("priced", 5_502_000_000)  # 5000 EUR at 1.10 + $2
    assert refused(gql(REFUND, store_credit("1.00", "CHF"), "Refund")).code == "currency_not_supported"
    no_currency = store_credit("1.00")
    del no_currency["input"]["refundMethods"][0]["storeCreditRefund"]["amount"]["currencyCode"]
    assert refused(gql(REFUND, no_currency, "Refund")).code == "body_invalid"


@pytest.mark.parametrize(
    "variables",
    [
        store_credit("1.00", other={"amount": "5000"}),  # an unknown refund method
        {"input": {"orderId": ORDER, "currency": "USD", "storeCredit": "5000"}},
        {"input": {"orderId": ORDER, "transactions": [{"amount": "1", "kind": "REFUND", "tip": "5000"}]}},
    ],
)
def test_a_priced_mutation_with_a_key_its_pricer_does_not_know_is_unpriceable(variables: Any) -> None:
    assert decide(gql(REFUND, variables, "Refund"), USD).pricing == "unpriceable"


def test_rest_unknown_keys_and_bodiless_money_writes_are_unpriceable() -> None:
    extra = {"refund": {"currency": "USD", "transactions": [{"amount": "1"}], "store_credit": {"amount": "5000"}}}
    assert decide(js("POST", f"{V}/orders/1/refunds.json", extra), USD).pricing == "unpriceable"
    assert decide(Call("POST", f"{V}/orders/1/refunds.json"), USD).pricing == "unpriceable"
    capture = {"transaction": {"kind": "capture", "amount": "10.00", "currency": "EUR"}}
    assert decide(js("POST", f"{V}/orders/1/transactions.json", capture)).amount == 11_000_000
    whole = {"transaction": {"kind": "capture"}}
    assert decide(js("POST", f"{V}/orders/1/transactions.json", whole), USD).pricing == "unpriceable"


# GraphQL mutation → its REST twin (method, path under /admin/api/{version}/, body): the same class.
PARITY = [
    ("refundCreate", "POST", "orders/1/refunds.json", {"refund": {"transactions": [{"amount": "1"}]}}),
    ("giftCardCreate", "POST", "gift_cards.json", {"gift_card": {"initial_value": "1"}}),
    ("orderCapture", "POST", "orders/1/transactions.json", {"transaction": {"kind": "capture", "amount": "1"}}),
    ("orderCancel", "POST", "orders/1/cancel.json", {}),
    ("orderClose", "POST", "orders/1/close.json", {}),
    ("orderMarkAsPaid", "POST", "orders/1/transactions.json", {"transaction": {"kind": "sale"}}),
    ("draftOrderComplete", "PUT", "draft_orders/1/complete.json", {}),
    ("fulfillmentCreate", "POST", "fulfillments.json", {"fulfillment": {}}),
    ("fulfillmentCreateV2", "POST", "orders/1/fulfillments.json", {"fulfillment": {}}),
    ("priceRuleCreate", "POST", "price_rules.json", {"price_rule": {}}),
    ("discountCodeBasicCreate", "POST", "price_rules/1/discount_codes.json", {"discount_code": {}}),
    ("appSubscriptionCreate", "POST", "recurring_application_charges.json", {}),
    ("appPurchaseOneTimeCreate", "POST", "application_charges.json", {}),
    ("webhookSubscriptionCreate", "POST", "webhooks.json", {}),
    ("storefrontAccessTokenCreate", "POST", "storefront_access_tokens.json", {}),
    ("carrierServiceCreate", "POST", "carrier_services.json", {}),
    ("carrierServiceUpdate", "PUT", "carrier_services/1.json", {}),
    ("fulfillmentServiceCreate", "POST", "fulfillment_services.json", {}),
    ("scriptTagCreate", "POST", "script_tags.json", {}),
    ("scriptTagDelete", "DELETE", "script_tags/1.json", {}),
    ("productCreate", "POST", "products.json", {"product": {}}),
    ("productVariantsBulkUpdate", "PUT", "variants/1.json", {"variant": {}}),
    ("collectionCreate", "POST", "custom_collections.json", {}),
    ("customerUpdate", "PUT", "customers/1.json", {"customer": {}}),
    ("customerGenerateAccountActivationUrl", "POST", "customers/1/account_activation_url.json", {}),
    ("metafieldsSet", "POST", "products/1/metafields.json", {"metafield": {}}),
    ("inventorySetQuantities", "POST", "inventory_levels/set.json", {}),
    ("pageCreate", "POST", "pages.json", {"page": {}}),
    ("urlRedirectCreate", "POST", "redirects.json", {"redirect": {}}),
    ("orderUpdate", "PUT", "orders/1.json", {"order": {}}),
    ("themeCreate", "POST", "themes.json", {"theme": {}}),
]
# giftCardCredit's REST twin (adjustments.json) takes a signed amount: REST is stricter there.
STRICTER_REST = {"giftCardCredit": ("POST", "gift_cards/1/adjustments.json", {"adjustment": {"amount": "1"}})}


@pytest.mark.parametrize(("name", "method", "path", "body"), PARITY)
def test_a_rest_write_is_classed_like_its_graphql_twin(name: str, method: str, path: str, body: Any) -> None:
    segs = tuple(f"{V}/{path}".strip("/").split("/"))
    if mutation_class(name) == "guarded":
        assert rest_class(method, segs) == "guarded" and any(g.matches(method, segs) for g in S.guarded)
    else:
        assert decide(js(method, f"{V}/{path}", body), USD).pricing == mutation_class(name)


def test_where_rest_is_stricter_it_is_unpriceable_not_free() -> None:
    for name, (method, path, body) in STRICTER_REST.items():
        assert mutation_class(name) == "priced"
        assert decide(js(method, f"{V}/{path}", body), USD).pricing == "unpriceable"


def test_rest_reads_are_free_and_an_unlisted_write_is_unpriceable() -> None:
    assert decide(Call("GET", f"{V}/orders/1/fulfillments.json")).pricing == "free"
    assert decide(js("POST", f"{V}/some_new_resource.json", {"x": 1})).pricing == "unpriceable"
    assert decide(js("POST", f"{V}/orders/1/refunds/calculate.json", {"refund": {}})).amount == Decimal(0)
