"""Shopify requests the tests share (the contract examples, tests/test_proxy_shopify.py): GraphQL
documents and variables as an agent writes them. Imports nothing of the contract module, so any
test may import it first."""

from __future__ import annotations

from typing import Any

TOKEN = "shpat_" + "0123456789abcdef" * 2
V = "/admin/api/2025-07"
GQL = f"{V}/graphql.json"
ORDER = "gid://shopify/Order/1001"


REFUND = (
    "mutation Refund($input: RefundInput!) { refundCreate(input: $input) "
    "{ refund { id } userErrors { field message } } }"
)


def refund_input(*amounts: str, currency: str | None = "USD") -> dict[str, Any]:
    """A `RefundInput` returning `amounts` (decimal strings) on ORDER."""
    tx = [{"amount": a, "gateway": "shopify_payments", "kind": "REFUND", "orderId": ORDER} for a in amounts]
    return {"input": {"orderId": ORDER, **({"currency": currency} if currency else {}), "transactions": tx}}


PRODUCT = 'mutation { productCreate(product: {title: "Anvil"}) { product { id } userErrors { message } } }'
GIFT_CARD = 'mutation { giftCardCreate(input: {initialValue: "25.00"}) { giftCard { id } userErrors { message } } }'
