"""Shopify's own policy fields (docs/sdk-shopify.md): how the admin API takes them (`ShopifyPolicyIn`)
and the parsed form the checks read (`ShopifyPolicy`).

- `allowed_shopify_mutations`: the GraphQL mutation field names a key may run (exact names as in
  Shopify's schema, e.g. "refundCreate"). Not set: every mutation but the guarded ones. Guarded
  mutations (tokens, webhook subscriptions, pixels, carrier and fulfilment services, script tags,
  bulk mutations: `shopify_classes`) run only when named here.
- `shopify_shop_currency`: the shop's currency (ISO 4217, e.g. "USD"), which prices amounts that
  Shopify reads in the shop's currency (`giftCardCreate`'s `initialValue`, a refund or capture
  without `currency`). Not set: such calls are unpriceable.
- `daily_graphql_cost_points`: the GraphQL cost points (Shopify's `extensions.cost`) a key may use
  per UTC day. Each GraphQL call reserves `MAX_QUERY_COST` (the most Shopify lets one query cost)
  and settles to the answer's `actualQueryCost`; the cap itself is a core cap
  (`core.caps.KEY_CAPS`, counter `daily_graphql_points`) reading this field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator

_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,99}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class ShopifyPolicyIn(BaseModel):
    """Shopify's policy fields as the admin API takes them; `RANKS`: where each renders among all fields."""

    RANKS: ClassVar[Mapping[str, int]] = {
        "allowed_shopify_mutations": 75,
        "shopify_shop_currency": 95,
        "daily_graphql_cost_points": 185,
    }

    allowed_shopify_mutations: list[str] | None = Field(default=None, max_length=500)
    shopify_shop_currency: str | None = None
    daily_graphql_cost_points: int | None = Field(default=None, ge=1, le=10**12)

    @field_validator("allowed_shopify_mutations")
    @classmethod
    def _names(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            if not _NAME.match(name):
                raise ValueError(f"{name[:60]!r} is not a GraphQL mutation field name such as 'refundCreate'")
        return sorted(set(v)) if v is not None else None

    @field_validator("shopify_shop_currency")
    @classmethod
    def _currency(cls, v: str | None) -> str | None:
        if v is not None and not _CURRENCY.match(v):
            raise ValueError(f"{v[:20]!r} is not an upper-case ISO 4217 currency code such as 'USD'")
        return v


@dataclass(frozen=True)
class ShopifyPolicy:
    """Shopify's policy fields as the checks read them (None: not set)."""

    allowed_mutations: frozenset[str] | None = None
    shop_currency: str | None = None

    @classmethod
    def from_store(cls, data: Mapping[str, Any]) -> ShopifyPolicy:
        """From the stored policy JSON (validated at the API edge by `ShopifyPolicyIn`)."""
        names = data.get("allowed_shopify_mutations")
        return cls(frozenset(names) if names is not None else None, data.get("shopify_shop_currency"))
