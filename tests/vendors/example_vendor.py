"""A vendor defined in one file: "acme", a small fictional HTTPS API, registered from here alone.

It is the proof that the vendor seam is whole (docs/vendors.md, adding a vendor): nothing else
in Keybrake names it, yet `register()` makes it read its own setting from the environment, be
built and served by `keybrake serve`, and pass the contract tests Stripe, Twilio and Resend pass.

Acme's API: Bearer auth with `ak_` keys; `POST /v1/orders` (JSON `{"customer", "amount"}`, the
amount in US cents) charges the order plus a flat fee (`KEYBRAKE_ACME_FEE_USD`) and answers
`{"id", "object": "order", "customer", "amount_charged"}`; an order may name the `region` that
fulfils it ("us-east", "eu-west", …); `GET` is free; `/v1/api_keys` mints keys (guarded) whose
answers carry `api_secret`; errors are `{"fault": {"code", "reason"}}`.

Acme's own policy field, `allowed_acme_regions` (`AcmePolicyIn`, declared by its `VendorSpec`):
the regions a key's orders may name; an order naming another region, or none, is refused
(`scope_violation`) before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, field_validator

from keybrake.core.errors import Denial
from keybrake.core.money import MICRO
from keybrake.core.params import parse_json_body, query_params
from keybrake.core.patterns import EndpointPattern, parse_pattern
from keybrake.core.policy import Policy, check_allowlist
from keybrake.core.request import ProxyRequest
from keybrake.vendors import registry
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
from keybrake.vendors.registry import VendorSetting, VendorSpec
from tests.vendors.contract import Call, PolicyFieldExample, VendorExamples, js

ORDERS_CREATE = parse_pattern("POST /v1/orders")
FREE: tuple[EndpointPattern, ...] = (parse_pattern("GET /**"),)
_SECRET = re.compile(r"^ak_[A-Za-z0-9]{16,}$")
_MAX_CENTS = 10**9  # amounts beyond ten million dollars are refused, not priced
_REGION = re.compile(r"^[a-z]{2}-[a-z]{2,12}$")


class AcmePolicyIn(BaseModel):
    """Acme's policy field as the admin API takes it; `RANKS`: where it renders among all fields."""

    RANKS: ClassVar[Mapping[str, int]] = {"allowed_acme_regions": 85}

    allowed_acme_regions: list[str] | None = None

    @field_validator("allowed_acme_regions")
    @classmethod
    def _regions(cls, v: list[str] | None) -> list[str] | None:
        for region in v or []:
            if not _REGION.match(region):
                raise ValueError(f"{region[:40]!r} is not an Acme region such as 'us-east' or 'eu-west'")
        return v


def allowed_regions(data: Mapping[str, Any]) -> frozenset[str] | None:
    """`allowed_acme_regions` as the checks read it, from the stored policy (None: not set)."""
    regions = data.get("allowed_acme_regions")
    return frozenset(regions) if regions is not None else None


class Acme(VendorDefaults):
    """The Vendor protocol for Acme; VendorDefaults supplies the rest (identity spellings, Bearer auth)."""

    name = "acme"
    default_base_url = "https://api.acme.example"
    upstream_hosts: tuple[str, ...] = ("api.acme.example",)
    forwarded_headers = frozenset({"idempotency-key"})
    policy_fields = CORE_POLICY_FIELDS | {"customer_allowlist", "allowed_acme_regions"}
    money_moving: tuple[EndpointPattern, ...] = (ORDERS_CREATE,)
    free: tuple[EndpointPattern, ...] = FREE
    guarded: tuple[EndpointPattern, ...] = (
        parse_pattern("* /v1/api_keys", casefold=True),
        parse_pattern("* /v1/api_keys/**", casefold=True),
    )
    max_body_bytes = 64 * 1024

    def __init__(self, fee_usd: Decimal) -> None:
        self.fee_micro = int(fee_usd * MICRO)

    def validate_secret(self, secret: Any) -> ValidatedSecret:
        if not isinstance(secret, str) or not _SECRET.match(secret):
            raise ValueError("an Acme secret is an API key: ak_ and at least 16 letters or digits")
        return ValidatedSecret(secret.encode(), f"ak_…{secret[-4:]}", None)

    def parse(self, req: ProxyRequest, path: tuple[str, ...]) -> VendorRequest:
        if not req.body:
            return VendorRequest(req.method, path, query_params(req.query))
        if content_type(req) != "application/json":
            raise Denial("unsupported_media_type", "Acme request bodies must be application/json.")
        _, params = parse_json_body(req.body)
        return VendorRequest(req.method, path, params)

    def precheck(self, policy: Policy, vreq: VendorRequest) -> None:
        customer = vreq.params.scalar("customer")
        if policy.customer_allowlist is not None and customer is not None:
            check_allowlist(
                policy.customer_allowlist, customer, field="customer_allowlist", what="customer", unresolved_reason=None
            )
        region = vreq.params.scalar("region")
        if region is not None:  # any request naming a region, not only an order
            check_allowlist(
                policy.vendor_fields(allowed_regions),
                region,
                field="allowed_acme_regions",
                what="region",
                unresolved_reason=None,
            )

    def check_scope(self, policy: Policy, vreq: VendorRequest) -> ScopeResult:
        customer = vreq.params.scalar("customer")
        if ORDERS_CREATE.matches(vreq.method, vreq.path):
            check_allowlist(
                policy.customer_allowlist,
                customer,
                field="customer_allowlist",
                what="customer",
                unresolved_reason="the order names no customer",
            )
            check_allowlist(
                policy.vendor_fields(allowed_regions),
                vreq.params.scalar("region"),
                field="allowed_acme_regions",
                what="region",
                unresolved_reason="the order names no region",
            )
        return ScopeResult(customer_scope_id=customer)

    def estimate(self, vreq: VendorRequest, rates: Rates) -> Estimate:
        if ORDERS_CREATE.matches(vreq.method, vreq.path):
            cents = _cents(vreq.params.scalar("amount"))
            if cents is None:
                raise Denial("body_invalid", "An order's amount is a whole number of US cents.")
            return Estimate("priced", cents * 10_000 + self.fee_micro, "order", "usd", minor=cents)
        if any(p.matches(vreq.method, vreq.path) for p in FREE):
            return Estimate("free", 0, "none")
        return Estimate("unpriceable", 0, "order")

    def cost(
        self, vreq: VendorRequest, estimate: Estimate, status: int, headers: dict[str, str], doc: Any, rates: Rates
    ) -> VendorCost:
        oid = doc.get("id") if isinstance(doc, dict) and isinstance(doc.get("id"), str) else None
        if status >= 300 or estimate.pricing == "free":
            return VendorCost(0, "none", "none", vendor_object_id=oid)
        charged = _cents(doc.get("amount_charged")) if isinstance(doc, dict) else None
        if charged is None:
            return VendorCost(estimate.amount, "estimate", estimate.cost_kind, vendor_object_id=oid)
        return VendorCost(charged * 10_000 + self.fee_micro, "response", "order", vendor_object_id=oid)

    def reconcile(self, doc: Any, rates: Rates, related: Any = ()) -> VendorCost | None:
        return None  # an order's answer is final

    def summary(self, vreq: VendorRequest) -> dict[str, Any]:
        customer = vreq.params.scalar("customer")
        return {"customer": customer} if customer else {}

    def fingerprint(self, vreq: VendorRequest) -> str | None:
        return canonical_fingerprint(vreq)

    def dedup_fingerprint(self, vreq: VendorRequest) -> str | None:
        return canonical_fingerprint(vreq) if vreq.method == "POST" else None

    def redact(self, vreq: VendorRequest, doc: Any) -> list[str]:
        return redact_fields(doc, frozenset({"api_secret"}))

    def request_id(self, headers: dict[str, str]) -> str | None:
        return headers.get("acme-request-id")

    def render_denial(self, denial: Denial, keybrake: dict[str, Any]) -> Rendered:
        return Rendered(
            {"fault": {"code": denial.code, "reason": denial.message, "keybrake": keybrake}}, retry_after(denial)
        )


def _cents(value: Any) -> int | None:
    """A whole, non-negative number of cents (a JSON number or digits), else None."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_CENTS:
        return None
    return value


SPEC = VendorSpec(
    "acme",
    lambda values: Acme(values["fee_usd"]),
    (VendorSetting("KEYBRAKE_ACME_FEE_USD", "fee_usd", "decimal", Decimal("0.30")),),
    policy_input=AcmePolicyIn,
)


def register() -> None:
    """Make Keybrake know Acme (undo with `registry.unregister("acme")`)."""
    registry.register(SPEC)


# --- Contract examples (tests/vendors/contract.py), for the tests only. The vendor above needs
# none of this: to copy it out of the tree, drop this block and the `tests.vendors.contract`
# import, or move both into your own test file (docs/vendors.md, adding a vendor).
ORDER = {"customer": "cu_ok", "amount": 1250, "item": "anvil"}
EXAMPLES = VendorExamples(
    secret="ak_" + "a1" * 10,
    bad_secret="sk_test_abcdefgh12345678",
    spellings=((js("POST", "/v1/orders", ORDER), ("v1", "orders")),),
    case_variant=js("POST", "/v1/Orders", ORDER),
    never_matches=None,
    matches="POST /v1/orders",
    guarded=(Call("POST", "/v1/api_keys"), Call("GET", "/v1/API_KEYS/k_1")),
    free=Call("GET", "/v1/orders/ord_1"),
    priced=js("POST", "/v1/orders", ORDER),
    priced_usd=12_800_000,  # $12.50 and the $0.30 fee
    unpriceable=Call("POST", "/v1/orders/ord_1/cancel"),
    scope=Policy(customer_allowlist=frozenset({"cu_ok"})),
    in_scope=js("POST", "/v1/orders", ORDER),
    out_of_scope=js("POST", "/v1/orders", {**ORDER, "customer": "cu_evil"}),
    secret_answer=(Call("GET", "/v1/api_keys"), {"data": [{"id": "k_1", "api_secret": "as_s3cret"}]}, ("as_s3cret",)),
    error_code_at=("fault", "code"),
    error_message_at=("fault", "reason"),
    policy_fields=(
        PolicyFieldExample(
            "allowed_acme_regions",
            ["eu-west"],
            ["EU West"],
            "is not an Acme region such as 'us-east' or 'eu-west'",
            js("POST", "/v1/orders", {**ORDER, "region": "us-east"}),
        ),
    ),
)
