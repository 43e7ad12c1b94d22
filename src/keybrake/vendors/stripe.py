"""Stripe: bearer secret swap, form-encoded v1 bodies, money moved parsed from the answer.

Cost parsing uses only fields stable across Stripe API versions (`amount`, `amount_received`,
`amount_capturable`, `currency`, `status`, `customer`), since agents may send any
`Stripe-Version` (docs/policy.md, what a call costs).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from keybrake.core.errors import Denial
from keybrake.core.ledger import LedgerEntry
from keybrake.core.names import check_spelling
from keybrake.core.params import Params, merge, parse_form, parse_json_body, query_params
from keybrake.core.patterns import EndpointPattern, parse_pattern
from keybrake.core.policy import Policy, check_allowlist
from keybrake.core.request import ProxyRequest
from keybrake.vendors import stripe_money, stripe_objects, stripe_summary
from keybrake.vendors.base import (
    CORE_POLICY_FIELDS,
    REDACTED,
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
)
from keybrake.vendors.registry import VendorSpec
from keybrake.vendors.stripe_endpoints import (
    CREDIT_NOTE_CREATE,
    ENFORCED,
    FREE,
    MONEY_MOVING,
    PAYMENT_INTENT_CREATE,
    PRICED,
    REFUND_CREATE,
)
from keybrake.vendors.stripe_policy import StripePolicy, StripePolicyIn

__all__ = ["ENFORCED", "SPEC", "Stripe"]

_SECRET = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]{8,}$")
_ACCT = re.compile(r"^acct_[A-Za-z0-9]+$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


class Stripe(VendorDefaults):
    name = "stripe"
    default_base_url = "https://api.stripe.com"
    upstream_hosts: tuple[str, ...] = ("api.stripe.com",)
    forwarded_headers = frozenset(
        {
            "idempotency-key",
            "stripe-version",
            "stripe-account",
            "stripe-context",
            "x-stripe-client-user-agent",
            "x-stripe-client-telemetry",
        }
    )
    policy_fields = CORE_POLICY_FIELDS | {"account_allowlist", "customer_allowlist"}
    max_body_bytes = 1024 * 1024
    # "Idempotency keys are up to 255 characters long"; Stripe saves a result only once the
    # endpoint began executing: 2xx and 402 card errors are replayed, while a 429, a 409 lock
    # conflict or a validation 400 saves nothing and the retry runs for real
    # (https://docs.stripe.com/api/idempotent_requests).
    idempotency_key_max_length = 255
    idempotency_cached_statuses = frozenset({402})
    replays_retries = True  # a retry under the same key gets the first result, or runs once if none was saved
    money_moving = MONEY_MOVING
    free = FREE
    # docs/policy.md, guarded endpoints: endpoints that return or mint secrets, or redirect money or events.
    guarded: tuple[EndpointPattern, ...] = tuple(
        parse_pattern(t, casefold=True)
        for t in (
            "POST /v1/webhook_endpoints",
            "* /v1/webhook_endpoints/**",
            "POST /v1/accounts",
            "POST /v1/accounts/*",
            "DELETE /v1/accounts/*",
            "* /v1/accounts/*/**",
            "POST /v1/ephemeral_keys",
            "* /v1/apps/secrets/**",
        )
    )

    # -- credentials ----------------------------------------------------------------------

    def validate_secret(self, secret: Any) -> ValidatedSecret:
        if not isinstance(secret, str) or not _SECRET.match(secret):
            raise ValueError(
                "a Stripe secret must be a secret or restricted key: sk_test_, sk_live_, rk_test_ or rk_live_ "
                "followed by at least 8 letters, digits or '_' (the whole key from the Stripe dashboard, not a "
                "placeholder)"
            )
        prefix = "_".join(secret.split("_")[:2]) + "_"
        return ValidatedSecret(secret.encode(), f"{prefix}…{secret[-4:]}", secret.split("_")[1] == "live")

    def request_id(self, headers: dict[str, str]) -> str | None:
        return headers.get("request-id")

    # -- the one parse --------------------------------------------------------------------

    def parse(self, req: ProxyRequest, path: tuple[str, ...]) -> VendorRequest:
        ctype = content_type(req)
        is_v2 = bool(path) and path[0] == "v2"
        if req.body:
            wanted = "application/json" if is_v2 else "application/x-www-form-urlencoded"
            if ctype != wanted:
                raise Denial(
                    "unsupported_media_type",
                    f"Stripe {'v2' if is_v2 else 'v1'} request bodies must be {wanted} "
                    f"(got {ctype or 'no Content-Type'}).",
                )
        if is_v2 and req.body:
            _, body_params = parse_json_body(req.body)
            params = merge(query_params(req.query), body_params)
        else:
            params = parse_form(req.query, req.body)
        check_spelling(params.tops, ENFORCED, vendor="Stripe", literal=False)
        for name in ENFORCED:
            params.scalar(name)  # each is read as one value: a list shape is refused here, once
        if "idempotency_key" in params.tops:
            raise Denial(
                "param_not_allowed",
                "Parameter 'idempotency_key' is not a Stripe parameter; send it as the Idempotency-Key header instead.",
            )
        ctx = req.header_all("stripe-context")
        acct = req.header_all("stripe-account")
        if len(ctx) > 1 or len(acct) > 1:
            raise Denial("param_ambiguous", "Send Stripe-Context and Stripe-Account at most once each.")
        account = ctx[0] if ctx else None
        if acct:
            if account is not None and account != acct[0]:
                raise Denial(
                    "param_ambiguous",
                    "Stripe-Context and Stripe-Account name different accounts; send one of them.",
                )
            account = acct[0]
        if account is None:
            account = next((s for s in path if _ACCT.match(s)), None)
        return VendorRequest(req.method, path, params, account)

    # -- scope ----------------------------------------------------------------------------

    def precheck(self, policy: Policy, vreq: VendorRequest) -> None:
        """The account context and a customer the request itself names: no lookup needed."""
        accounts = policy.vendor_fields(StripePolicy.from_store).account_allowlist
        if accounts is not None:
            account = vreq.account_context
            if account is None and "self" in accounts:
                account = "self"
            check_allowlist(
                accounts,
                account,
                field="account_allowlist",
                what="Stripe account",
                unresolved_reason="the request has no account context (Stripe-Account or Stripe-Context "
                "header) and 'self' is not on the list",
            )
        customer = self._direct_customer(vreq)
        if policy.customer_allowlist is not None and customer is not None:
            check_allowlist(
                policy.customer_allowlist, customer, field="customer_allowlist", what="customer", unresolved_reason=None
            )

    def check_scope(self, policy: Policy, vreq: VendorRequest) -> ScopeResult:
        """Customer scope, with the facts looked up for the object the request names.

        A denial never tells the agent facts about an object it may not see: whether the object
        has no customer, another customer, or could not be looked up, the message is the same
        (the audit row keeps the detail for the operator).
        """
        self.precheck(policy, vreq)
        customer = self._direct_customer(vreq)
        ref = stripe_objects.referenced_object(vreq)
        if ref is None:
            if policy.customer_allowlist is not None and customer is None:
                check_allowlist(
                    policy.customer_allowlist,
                    None,
                    field="customer_allowlist",
                    what="customer",
                    unresolved_reason="the request does not name its customer (add the customer parameter, or use "
                    "a /v1/customers/cus_… endpoint)",
                )
            return ScopeResult(customer_scope_id=customer)
        # The object's own customer decides, whatever `customer` the request also names (a
        # `customer` parameter is checked too, in precheck, but cannot vouch for another's object).
        fact = stripe_money.facts(vreq).get(ref)
        owner = fact.customer if fact else None
        if policy.customer_allowlist is not None and owner not in policy.customer_allowlist:
            why = "it could not be looked up" if fact is None else f"its customer is {owner or 'none'}"
            raise Denial(
                "scope_violation",
                f"Request refused by customer_allowlist: {ref} is not known to belong to a customer this key may "
                "use. Do not retry unchanged.",
                detail=f"{ref}: {why}",
            )
        return ScopeResult(customer_scope_id=owner or customer)

    # -- objects the request depends on (ledger / pre-flight) ------------------------------

    def objects_needed(self, vreq: VendorRequest, need_customer: bool) -> list[str]:
        ref = stripe_objects.referenced_object(vreq)
        if ref is None:
            return []
        if stripe_objects.object_priced(vreq) is not None:
            return [ref]
        if need_customer:
            return [ref]  # the object's own customer, whatever `customer` the request names
        return []

    def object_ref(self, vreq: VendorRequest) -> str | None:
        """The object a write names (path or parameter): a confirm must not race the update that
        changes its amount, nor a capture the confirm that authorises it."""
        return stripe_objects.referenced_object(vreq) if vreq.method != "GET" else None

    def lookup(
        self, object_id: str, account_context: str | None, secret: bytes
    ) -> tuple[str, list[tuple[str, str]]] | None:
        path = stripe_objects.lookup_path(object_id)
        if path is None:
            return None
        account = account_context
        return path, [("stripe-account", account)] if account and account.startswith("acct_") else []

    def ledger_entries(self, doc: Any, account_context: str | None) -> list[LedgerEntry]:
        return stripe_objects.ledger_entries(doc, account_context)

    # -- cost -----------------------------------------------------------------------------

    def estimate(self, vreq: VendorRequest, rates: Rates) -> Estimate:
        method, path, params = vreq.method, vreq.path, vreq.params
        by_object = stripe_objects.object_priced(vreq)
        if by_object is not None and stripe_objects.referenced_object(vreq) is not None:
            # The named object's currency decides, whatever `currency` the request claims.
            return self._from_object(vreq, by_object[0], by_object[1], rates)
        for pattern, kind in PRICED:
            if pattern.matches(method, path):
                if kind == "charge" and params.scalar("capture") == "false":
                    kind = "authorization"
                return self._priced(params, kind, rates)
        if PAYMENT_INTENT_CREATE.matches(method, path):
            # Free only when it certainly does not confirm: any other `confirm` value is priced.
            if params.scalar("confirm") not in (None, "false"):
                kind = (
                    "authorization" if params.scalar("capture_method") in ("manual", "manual_preferred") else "charge"
                )
                return self._priced(params, kind, rates)
            return Estimate("free", 0, "none")
        if REFUND_CREATE.matches(method, path):
            # Without a currency parameter the refund's currency is the charge's: not knowable here.
            if params.has("amount") and params.has("currency"):
                return self._priced(params, "refund", rates)
            return Estimate("unpriceable", 0, "refund")
        if CREDIT_NOTE_CREATE.matches(method, path) and not params.has("refund_amount"):
            return Estimate("free", 0, "none")
        if any(p.matches(method, path) for p in FREE):
            return Estimate("free", 0, "none")
        return Estimate("unpriceable", 0, _unpriceable_kind(path))

    def _from_object(self, vreq: VendorRequest, kind: str, param: str | None, rates: Rates) -> Estimate:
        """Reserve from the named object's facts: its amount (or the parameter), less what Keybrake counted.

        Refunds are new money (counted per call): the `amount` given, else the charge's
        refundable remainder. Everything else is counted once per object.
        """
        ref = stripe_objects.referenced_object(vreq)
        fact = stripe_money.facts(vreq).get(ref) if ref else None
        if fact is None or fact.currency is None or fact.amount is None:
            return Estimate("unpriceable", 0, kind)
        raw = vreq.params.scalar(param) if param else None
        if raw is not None and not stripe_money.AMOUNT.match(raw):
            raise Denial(
                "body_invalid",
                f"Parameter {param!r} must be a non-negative integer of at most 12 digits in minor units.",
            )
        base = int(raw) if raw is not None else fact.amount
        if kind == "refund":
            due = base if raw is not None else max(0, fact.amount - (fact.refunded or 0))
        else:
            due = max(0, base - fact.amount_counted)
        return Estimate(
            "priced", stripe_money.to_usd(due, fact.currency, rates, reserve=True), kind, fact.currency, minor=due
        )

    def _priced(self, params: Params, kind: str, rates: Rates) -> Estimate:
        amount = params.scalar("amount")
        currency = params.scalar("currency")
        if amount is None or not stripe_money.AMOUNT.match(amount):
            raise Denial(
                "body_invalid",
                "Parameter 'amount' must be a non-negative integer of at most 12 digits in the currency's smallest "
                f"unit (got {'nothing' if amount is None else repr(amount[:20])}).",
            )
        if currency is None or not _CURRENCY.match(currency):
            raise Denial("body_invalid", "Parameter 'currency' must be a three-letter ISO code.")
        micro = stripe_money.to_usd(int(amount), currency.lower(), rates, reserve=True)
        return Estimate("priced", micro, kind, currency.lower(), minor=int(amount))

    def cost(
        self, vreq: VendorRequest, estimate: Estimate, status: int, headers: dict[str, str], doc: Any, rates: Rates
    ) -> VendorCost:
        """What an answer says the call moved (see `stripe_money.cost`)."""
        return stripe_money.cost(vreq, estimate, status, headers, doc, rates)

    def reconcile(self, doc: Any, rates: Rates, related: Sequence[Any] = ()) -> VendorCost | None:
        """A PaymentIntent left in requires_action, once final (see `stripe_money.reconcile`)."""
        return stripe_money.reconcile(doc, rates, related)

    def fingerprint(self, vreq: VendorRequest) -> str | None:
        # Stripe honours Idempotency-Key on POST: a retry with the same key and body is free.
        return canonical_fingerprint(vreq) if vreq.method == "POST" else None

    def dedup_fingerprint(self, vreq: VendorRequest) -> str | None:
        # Method, path, account context and the sorted canonical body (docs/sdk-stripe.md, retries).
        return canonical_fingerprint(vreq) if vreq.method == "POST" else None

    def redact(self, vreq: VendorRequest, doc: Any) -> list[str]:
        """Webhook endpoint signing secrets never reach the agent, whatever the endpoint."""
        found: list[str] = []
        for obj in _objects(doc):
            if obj.get("object") == "webhook_endpoint" and isinstance(obj.get("secret"), str):
                obj["secret"] = REDACTED
                found.append("secret")
        return sorted(set(found))

    @staticmethod
    def _direct_customer(vreq: VendorRequest) -> str | None:
        customer = vreq.params.scalar("customer")
        return customer or next((s for s in vreq.path if s.startswith("cus_")), None)

    def summary(self, vreq: VendorRequest) -> dict[str, Any]:
        return stripe_summary.summary(vreq)

    # -- errors ---------------------------------------------------------------------------

    def render_denial(self, denial: Denial, keybrake: dict[str, Any]) -> Rendered:
        retry = denial.retryable
        headers = {"Stripe-Should-Retry": "true" if retry else "false"}
        if retry:
            headers["Retry-After"] = "1"
        return Rendered(
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": denial.code,
                    "message": denial.message,
                    "keybrake": keybrake,
                }
            },
            headers,
        )


def _objects(doc: Any) -> list[dict[str, Any]]:
    """An answer's object, or the items of a list answer."""
    if not isinstance(doc, dict):
        return []
    items = doc.get("data") if doc.get("object") in ("list", "search_result") else None
    if isinstance(items, list):
        return [i for i in items if isinstance(i, dict)]
    return [doc]


def _unpriceable_kind(path: tuple[str, ...]) -> str:
    joined = "/".join(path)
    if "refund" in joined:
        return "refund"
    if "capture" in joined:
        return "capture"
    return "charge"


SPEC = VendorSpec("stripe", lambda values: Stripe(), policy_input=StripePolicyIn)
