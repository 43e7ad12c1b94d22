"""Shopify Admin: per-shop base URL, `X-Shopify-Access-Token`, GraphQL scoped and priced per
operation, REST refunds, captures and gift cards priced; every mutation or REST write not listed
free or priced is unpriceable (`shopify_classes`, docs/sdk-shopify.md).

The credential's secret is the shop's Admin API access token (`shpat_…`); its `base_url` is the
shop, `https://{shop}.myshopify.com` (required: there is no default shop). GraphQL is one
endpoint, so the mutation fields a request runs are its scope (`allowed_shopify_mutations`,
guarded mutations) and its price (`shopify_money`); every operation of a document must be
allowed, and the one executed is priced. Queries are free reads (introspection included: the
schema is public). Tokens in answers (`accessToken`, `access_token`) are redacted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from keybrake.core.errors import Denial
from keybrake.core.patterns import EndpointPattern, parse_pattern
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.vendors.base import (
    CORE_POLICY_FIELDS,
    Estimate,
    Rates,
    Rendered,
    ScopeResult,
    ValidatedSecret,
    VendorCost,
    VendorDefaults,
    VendorRequest,
    canonical_fingerprint,
    content_type,
    redact_fields,
    retry_after,
)
from keybrake.vendors.registry import VendorSpec
from keybrake.vendors.shopify_classes import REST_FREE_WRITES, REST_GUARDED, REST_PRICED, rest_class, rest_priced
from keybrake.vendors.shopify_classes import mutation_guarded as _guarded_name
from keybrake.vendors.shopify_money import Amount, to_micro_usd
from keybrake.vendors.shopify_policy import ShopifyPolicy, ShopifyPolicyIn
from keybrake.vendors.shopify_request import (
    GRAPHQL,
    MutationRead,
    ShopifyParse,
    check_path,
    parse_body,
    runs_a_document,
)

__all__ = ["SPEC", "Shopify", "ShopifyParse"]

_SECRET = re.compile(r"^shp(at|ca|pa|ua)_[0-9a-fA-F]{32}$")
FREE: tuple[EndpointPattern, ...] = (parse_pattern("GET /**"), *REST_FREE_WRITES)
# REST endpoints that mint or return tokens, redirect events or data to a URL, serve storefront code
# or uninstall the app (`shopify_classes.REST_GUARDED`); GraphQL's guarded mutations are checked by
# name (`check_scope`).
GUARDED = REST_GUARDED
SECRET_FIELDS = frozenset({"accessToken", "access_token"})
# "Single queries are limited to a cost of 1,000 points" (shopify.dev/docs/api/usage/limits,
# GraphQL Admin API): what one GraphQL call reserves against daily_graphql_cost_points.
MAX_QUERY_COST = 1000


@dataclass(frozen=True)
class ShopifyScope:
    """What `check_scope` decided for the estimate: the shop's currency from the key (None: unknown)."""

    shop_currency: str | None


class Shopify(VendorDefaults):
    """The Vendor protocol for the Shopify Admin API (GraphQL and REST)."""

    name = "shopify"
    default_base_url = ""  # none: every credential names its shop (an empty URL is refused before sending)
    upstream_hosts: tuple[str, ...] = ("*.myshopify.com",)
    forwarded_headers: frozenset[str] = frozenset()
    policy_fields = CORE_POLICY_FIELDS | frozenset(ShopifyPolicyIn.model_fields)
    guarded = GUARDED
    money_moving: tuple[EndpointPattern, ...] = (GRAPHQL, *REST_PRICED.values())
    free = FREE
    max_body_bytes = 20 * 1024 * 1024  # REST image uploads carry base64 attachments

    # -- credentials ----------------------------------------------------------------------

    def validate_secret(self, secret: Any) -> ValidatedSecret:
        if not isinstance(secret, str) or not _SECRET.match(secret):
            raise ValueError("a Shopify secret is an Admin API access token: shpat_ (or shpca_, shppa_) and 32 hex")
        return ValidatedSecret(secret.encode(), f"{secret[:6]}…{secret[-4:]}", None)

    def upstream_headers(self, secret: bytes) -> list[tuple[str, str]]:
        return [("x-shopify-access-token", secret.decode())]

    def request_id(self, headers: dict[str, str]) -> str | None:
        return headers.get("x-request-id")

    def policy_problem(self, policy: Mapping[str, Any]) -> tuple[str, str] | None:
        """A points cap below what one GraphQL call reserves would refuse every GraphQL call."""
        cap = policy.get("daily_graphql_cost_points")
        if isinstance(cap, int) and cap < MAX_QUERY_COST:
            return (
                "daily_graphql_cost_points",
                f"must be at least {MAX_QUERY_COST}: each GraphQL call reserves {MAX_QUERY_COST} points (the most "
                "Shopify lets one query cost) until its answer reports what it used",
            )
        return None

    # -- the one parse --------------------------------------------------------------------

    def canonical(self, method: str, path: tuple[str, ...]) -> tuple[str, ...]:
        """The path as sent, once `check_path` and the letter-case check accept it."""
        check_path(method, path)
        self.check_spelling(method, path)
        return path

    def parse(self, req: ProxyRequest, path: tuple[str, ...]) -> VendorRequest:
        params, detail = parse_body(req.method, path, content_type(req), req.query, req.body)
        return VendorRequest(req.method, path, params, detail=detail)

    # -- scope ----------------------------------------------------------------------------

    def check_scope(self, policy: Policy, vreq: VendorRequest) -> ScopeResult:
        """Every mutation field of every operation in the document: guarded ones
        (`shopify_classes.mutation_guarded`, or given a mutation document in an argument) only when
        `allowed_shopify_mutations` names them (403 endpoint_guarded), others only when it is unset
        or names them (403 scope_violation)."""
        own = policy.vendor_fields(ShopifyPolicy.from_store)
        graphql = _detail(vreq).graphql
        for op in graphql.operations if graphql is not None else ():
            if op.kind != "mutation":
                continue
            for f in op.fields:
                if f.name.startswith("__"):
                    continue  # a meta field (`__typename`) runs nothing
                named = own.allowed_mutations is not None and f.name in own.allowed_mutations
                if (_guarded_name(f.name) or runs_a_document(f.name, f.arguments)) and not named:
                    raise Denial(
                        "endpoint_guarded",
                        f"GraphQL mutation {f.name!r} is guarded (it mints tokens, sends shop data or events to a "
                        "URL, serves storefront code or runs other mutations); only a key "
                        "whose allowed_shopify_mutations names it may run it. Nothing was sent. Do not retry.",
                    )
                if own.allowed_mutations is not None and not named:
                    where = f" (operation {op.name!r})" if op.name else ""
                    raise Denial(
                        "scope_violation",
                        f"GraphQL mutation {f.name!r}{where} is not in this key's allowed_shopify_mutations; every "
                        "operation of a document must be allowed. Nothing was sent. Do not retry.",
                    )
        return ScopeResult(detail=ShopifyScope(own.shop_currency))

    # -- cost -----------------------------------------------------------------------------

    def estimate(self, vreq: VendorRequest, rates: Rates) -> Estimate:
        """The call's price class and amount; a GraphQL call also reserves MAX_QUERY_COST points."""
        detail = _detail(vreq)
        estimate = self._price(vreq, rates)
        return replace(estimate, points=MAX_QUERY_COST) if detail.graphql is not None else estimate

    def _price(self, vreq: VendorRequest, rates: Rates) -> Estimate:
        detail, currency = _detail(vreq), _shop_currency(vreq)
        if detail.graphql is not None:
            if detail.graphql.operation.kind == "query":
                return Estimate("free", 0, "none")
            moving = [m for m in detail.mutations if m.kind in ("priced", "unpriceable")]
            if not moving:
                return Estimate("free", 0, "none")
            if any(m.kind != "priced" for m in moving):
                return Estimate("unpriceable", 0, moving[0].name)
            amounts = [a for m in moving for a in m.amounts]
            return _priced(amounts, currency, rates, moving[0].name)
        rest, kind = rest_class(vreq.method, vreq.path), rest_priced(vreq.method, vreq.path) or ""
        if rest == "priced":
            if detail.rest_amounts is None:
                return Estimate("unpriceable", 0, kind)  # a key its pricer does not know, or no body
            return _priced(list(detail.rest_amounts), currency, rates, kind)
        if rest == "unpriceable":
            return Estimate("unpriceable", 0, vreq.path[-1].removesuffix(".json")[:60])
        return Estimate("free", 0, "none")

    def cost(
        self, vreq: VendorRequest, estimate: Estimate, status: int, headers: dict[str, str], doc: Any, rates: Rates
    ) -> VendorCost:
        """2xx: REST writes cost their estimate; a GraphQL mutation field costs its amounts when its
        payload came back without `userErrors` (a null payload, or a top-level `errors` answer
        without `data`, ran nothing). Points: `query_points` of the answer."""
        cost = self._cost(vreq, estimate, status, doc, rates)
        return replace(cost, points=query_points(status, doc)) if _detail(vreq).graphql is not None else cost

    def _cost(self, vreq: VendorRequest, estimate: Estimate, status: int, doc: Any, rates: Rates) -> VendorCost:
        if status >= 300 or estimate.pricing == "free":
            return VendorCost(0, "none", "none")
        detail = _detail(vreq)
        if detail.graphql is None:
            return VendorCost(estimate.amount, "response", estimate.cost_kind)
        data = doc.get("data") if isinstance(doc, dict) else None
        if doc is None:
            return VendorCost(estimate.amount, "estimate", estimate.cost_kind)  # no answer to read: keep it
        ran = [m for m in detail.mutations if m.kind in ("priced", "unpriceable") and _ran(data, m)]
        if not ran:
            return VendorCost(0, "response", "none")
        if estimate.pricing == "unpriceable":
            return VendorCost(estimate.amount, "estimate", estimate.cost_kind)
        amount = to_micro_usd([a for m in ran for a in m.amounts], _shop_currency(vreq), rates)
        return VendorCost(amount if amount is not None else estimate.amount, "response", ran[0].name)

    def reconcile(self, doc: Any, rates: Rates, related: Sequence[Any] = ()) -> VendorCost | None:
        return None  # an answer is final: Shopify has no pending state for these calls

    def summary(self, vreq: VendorRequest) -> dict[str, Any]:
        graphql = _detail(vreq).graphql
        if graphql is None:
            return {}
        op = graphql.operation
        out: dict[str, Any] = {"graphql": op.kind, "fields": sorted({f.name for f in op.fields})[:20]}
        if op.name:
            out["operation"] = op.name[:100]
        if len(graphql.operations) > 1:
            out["operations"] = len(graphql.operations)
        return out

    def fingerprint(self, vreq: VendorRequest) -> str | None:
        return None  # the Admin API takes no Idempotency-Key header

    def dedup_fingerprint(self, vreq: VendorRequest) -> str | None:
        return canonical_fingerprint(vreq) if vreq.method == "POST" else None

    def redact(self, vreq: VendorRequest, doc: Any) -> list[str]:
        """Access tokens (storefront, delegate, OAuth) never reach the agent, in any answer."""
        return redact_fields(doc, SECRET_FIELDS)

    # -- errors ---------------------------------------------------------------------------

    def render_denial(self, denial: Denial, keybrake: dict[str, Any]) -> Rendered:
        """Shopify's GraphQL error shape, `{"errors": [{"message", "extensions": {"code"}}]}`
        (shopify.dev/docs/api/admin-graphql#status-and-error-codes), for GraphQL and REST alike."""
        error = {"message": denial.message, "extensions": {"code": denial.code, "keybrake": keybrake}}
        return Rendered({"errors": [error]}, retry_after(denial))


_NO_PARSE = ShopifyParse()


def _detail(vreq: VendorRequest) -> ShopifyParse:
    return vreq.detail if isinstance(vreq.detail, ShopifyParse) else _NO_PARSE


def _shop_currency(vreq: VendorRequest) -> str | None:
    return vreq.scope.shop_currency if isinstance(vreq.scope, ShopifyScope) else None


def _priced(amounts: list[Amount], currency: str | None, rates: Rates, kind: str) -> Estimate:
    micro = to_micro_usd(amounts, currency, rates)
    if micro is None:
        return Estimate("unpriceable", 0, kind)
    currencies = {(a.currency or currency or "").lower() for a in amounts}  # every one known once priced
    return Estimate("priced", micro, kind, currencies.pop() if len(currencies) == 1 else None)


def query_points(status: int, doc: Any) -> int | None:
    """The cost points a GraphQL answer says the call used: `extensions.cost.actualQueryCost`
    (shopify.dev/docs/api/usage/limits); 0 for a refusal (status ≥ 300: nothing ran) and for a
    cost of null (a throttled call runs nothing); None (keep the reserved bound) when a 2xx
    answer reports no cost."""
    if status >= 300:
        return 0
    ext = doc.get("extensions") if isinstance(doc, dict) else None
    cost = ext.get("cost") if isinstance(ext, dict) else None
    if not isinstance(cost, dict) or "actualQueryCost" not in cost:
        return None
    actual = cost["actualQueryCost"]
    if actual is None:
        return 0
    if isinstance(actual, bool) or not isinstance(actual, int | float) or not 0 <= actual <= MAX_QUERY_COST:
        return None  # not a cost Shopify can report: keep the bound
    return int(-(-actual // 1))  # whole points, rounded up


def _ran(data: Any, m: MutationRead) -> bool:
    """Whether the answer says mutation field `m` ran: its payload is there, without userErrors."""
    if not isinstance(data, dict):
        return False
    payload = data.get(m.key)
    if payload is None:
        return False
    errors = payload.get("userErrors") if isinstance(payload, dict) else None
    return not (isinstance(errors, list) and errors)


SPEC = VendorSpec("shopify", lambda values: Shopify(), policy_input=ShopifyPolicyIn)
