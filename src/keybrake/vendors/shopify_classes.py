"""Which class a Shopify Admin mutation or REST write is in, by name or endpoint (docs/sdk-shopify.md,
"What a call costs"). Pure.

Each GraphQL mutation field is **guarded** (mints tokens, sends the shop's events or data to a URL,
serves code on the storefront, or runs other mutations), **priced** (its amount is in its
arguments, `shopify_money.PRICED_MUTATIONS`), **free** (it belongs to one of `FREE_FAMILIES`,
catalogue and content that move no money, or it only removes a money object) or **unpriceable**:
every other mutation, known to move money or not known at all (the Stripe rule: what Keybrake
cannot price is unpriceable, never free). Names follow Shopify's Admin GraphQL reference
(shopify.dev/docs/api/admin-graphql, "Mutations").

REST writes follow the same rule: the priced and guarded endpoints, the free writes in
`REST_FREE_WRITES` (the REST twins of the free families), and every other write is unpriceable.
"""

from __future__ import annotations

from keybrake.core.patterns import EndpointPattern, parse_pattern

# Names holding one of these (any case) are guarded: tokens, event/data redirects to a URL
# (webhook subscriptions incl. EventBridge and Pub/Sub, carrier and fulfilment service callbacks,
# web/server pixels), storefront code (script tags).
GUARDED_WORDS = (
    "accesstoken",
    "webhooksubscription",
    "pixel",
    "carrierservice",
    "fulfillmentservice",
    "scripttag",
)
# Mutations that run a mutation document given as an argument (once per line of an uploaded file):
# guarded AND unpriceable, whatever the inner mutation is.
RUNS_A_DOCUMENT = frozenset({"bulkOperationRunMutation"})
# Free families: a mutation whose name is one of these prefixes followed by an upper-case letter
# (`productCreate`, `metafieldsSet`, `tagsAdd`), unless it holds one of `NOT_FREE_WORDS`.
FREE_FAMILIES = (
    "product",
    "productVariant",
    "productVariants",
    "collection",
    "customer",
    "metafield",
    "metafields",
    "metafieldDefinition",
    "standardMetafieldDefinition",
    "metaobject",
    "metaobjectDefinition",
    "inventory",
    "location",
    "tags",
    "file",
    "stagedUploads",
    "publication",
    "publishable",
    "translations",
    "menu",
    "page",
    "article",
    "blog",
    "comment",
    "urlRedirect",
    "savedSearch",
)
FREE_MUTATIONS = frozenset({"orderUpdate", "bulkOperationRunQuery", "bulkOperationCancel"})
NOT_FREE_WORDS = ("paymentmethod", "storecredit", "taxexemption", "accountactivationurl", "giftcard", "billing")
# Names holding a money word and ending in a releasing suffix only remove or deactivate (free).
MONEY_WORDS = (
    "refund",
    "capture",
    "payment",
    "billing",
    "charge",
    "purchase",
    "transaction",
    "giftcard",
    "storecredit",
    "discount",
    "mandate",
    "markaspaid",
    "appsubscription",
    "appusagerecord",
    "pricerule",
)
RELEASING_SUFFIXES = ("Delete", "Deactivate", "Remove")
CLASSES = ("guarded", "priced", "unpriceable", "free")


def mutation_guarded(name: str) -> bool:
    """Whether a mutation field runs only when the key's `allowed_shopify_mutations` names it."""
    return name in RUNS_A_DOCUMENT or any(w in name.lower() for w in GUARDED_WORDS)


def mutation_class(name: str, priced: frozenset[str] | set[str]) -> str:
    """ "guarded", "priced", "unpriceable" or "free" for a mutation field name (see the module);
    `priced` names the mutations whose amounts Keybrake reads. A guarded mutation that runs a
    mutation document is "unpriceable" (it is also guarded: `mutation_guarded`)."""
    folded = name.lower()
    if name.startswith("__"):
        return "free"  # a meta field (`__typename`) runs nothing
    if name in RUNS_A_DOCUMENT:
        return "unpriceable"
    if any(w in folded for w in GUARDED_WORDS):
        return "guarded"
    if name in priced:
        return "priced"
    if any(w in folded for w in MONEY_WORDS):
        return "free" if name.endswith(RELEASING_SUFFIXES) else "unpriceable"
    if name in FREE_MUTATIONS or (_in_family(name) and not any(w in folded for w in NOT_FREE_WORDS)):
        return "free"
    return "unpriceable"


def _in_family(name: str) -> bool:
    return any(
        name.startswith(prefix) and len(name) > len(prefix) and name[len(prefix)].isupper() for prefix in FREE_FAMILIES
    )


def _patterns(*texts: str, casefold: bool = False) -> tuple[EndpointPattern, ...]:
    return tuple(parse_pattern(t, casefold=casefold) for t in texts)


# REST endpoints that mint or return tokens, redirect events or data to a URL, serve code on the
# storefront, or uninstall the app (any letter case).
REST_GUARDED = _patterns(
    "POST|PUT|PATCH|DELETE /admin/oauth/**",  # token exchange; GET access_scopes.json is a free read
    "* /admin/api/*/webhooks.json",
    "* /admin/api/*/webhooks/**",
    "* /admin/api/*/storefront_access_tokens.json",
    "* /admin/api/*/storefront_access_tokens/**",
    "* /admin/api/*/api_permissions/**",
    "* /admin/api/*/carrier_services.json",
    "* /admin/api/*/carrier_services/**",
    "* /admin/api/*/fulfillment_services.json",
    "* /admin/api/*/fulfillment_services/**",
    "* /admin/api/*/script_tags.json",
    "* /admin/api/*/script_tags/**",
    casefold=True,
)
REST_REFUND = parse_pattern("POST /admin/api/*/orders/*/refunds.json")
REST_GIFT_CARD = parse_pattern("POST /admin/api/*/gift_cards.json")
REST_TRANSACTION = parse_pattern("POST /admin/api/*/orders/*/transactions.json")
REST_PRICED = {"refund": REST_REFUND, "gift_card": REST_GIFT_CARD, "transaction": REST_TRANSACTION}
# REST writes that move no money: the twins of the free GraphQL families.
REST_FREE_WRITES = _patterns(
    "POST /admin/api/*/orders/*/refunds/calculate.json",
    "PUT /admin/api/*/orders/*.json",
    "POST|PUT|DELETE /admin/api/*/products.json",
    "POST|PUT|DELETE /admin/api/*/products/**",
    "POST|PUT|DELETE /admin/api/*/variants/**",
    "POST|PUT|DELETE /admin/api/*/custom_collections.json",
    "POST|PUT|DELETE /admin/api/*/custom_collections/**",
    "POST|PUT|DELETE /admin/api/*/smart_collections.json",
    "POST|PUT|DELETE /admin/api/*/smart_collections/**",
    "POST|PUT|DELETE /admin/api/*/collects.json",
    "POST|PUT|DELETE /admin/api/*/collects/**",
    "POST|PUT|DELETE /admin/api/*/customers.json",
    "PUT|DELETE /admin/api/*/customers/*.json",
    "POST|PUT|DELETE /admin/api/*/customers/*/addresses.json",
    "POST|PUT|DELETE /admin/api/*/customers/*/addresses/**",
    "POST|PUT|DELETE /admin/api/*/customer_saved_searches.json",
    "POST|PUT|DELETE /admin/api/*/customer_saved_searches/**",
    "POST|PUT|DELETE /admin/api/*/metafields.json",
    "POST|PUT|DELETE /admin/api/*/metafields/**",
    "POST|PUT|DELETE /admin/api/*/*/*/metafields.json",
    "POST|PUT|DELETE /admin/api/*/*/*/metafields/**",
    "POST /admin/api/*/inventory_levels/*.json",
    "DELETE /admin/api/*/inventory_levels.json",
    "PUT /admin/api/*/inventory_items/*.json",
    "POST|PUT|DELETE /admin/api/*/pages.json",
    "POST|PUT|DELETE /admin/api/*/pages/**",
    "POST|PUT|DELETE /admin/api/*/blogs.json",
    "POST|PUT|DELETE /admin/api/*/blogs/**",
    "POST|PUT|DELETE /admin/api/*/comments/**",
    "POST|PUT|DELETE /admin/api/*/redirects.json",
    "POST|PUT|DELETE /admin/api/*/redirects/**",
)


def rest_class(method: str, path: tuple[str, ...]) -> str:
    """ "free", "guarded", "priced" or "unpriceable" for a REST call (see the module): reads are
    free; a guarded endpoint is "guarded" (free once the key's `allowed_endpoints` names it)."""
    if any(g.matches(method, path) for g in REST_GUARDED):
        return "guarded"
    if method in ("GET", "HEAD", "OPTIONS"):
        return "free"
    if rest_priced(method, path) is not None:
        return "priced"
    if any(p.matches(method, path) for p in REST_FREE_WRITES):
        return "free"
    return "unpriceable"


def rest_priced(method: str, path: tuple[str, ...]) -> str | None:
    """The kind of a priced REST write ("refund", "gift_card", "transaction"); None for others."""
    return next((kind for kind, p in REST_PRICED.items() if p.matches(method, path)), None)
