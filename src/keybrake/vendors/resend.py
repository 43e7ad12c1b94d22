"""Resend: bearer secret swap, JSON bodies, a flat rate per recipient, recipient-domain scope.

`POST /emails` costs the configured rate × the distinct addresses in `to`, `cc` and `bcc`;
`POST /emails/batch` (at most 100 emails) sums its emails and is admitted or refused whole
(docs/sdk-resend.md). Addresses are read the one strict way of `core.destinations`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from keybrake.core.destinations import domain_allowed
from keybrake.core.errors import Denial
from keybrake.core.money import MICRO
from keybrake.core.names import check_spelling, fold
from keybrake.core.params import merge, parse_json_body, query_params
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
    content_type,
    redact_fields,
    retry_after,
)
from keybrake.vendors.registry import VendorSetting, VendorSpec
from keybrake.vendors.resend_emails import Email, ResendParse, read_email
from keybrake.vendors.resend_policy import ResendPolicy, ResendPolicyIn

__all__ = ["ENFORCED", "SPEC", "Resend", "ResendParse"]

DEFAULT_RATE_USD = Decimal("0.0004")
MAX_BATCH = 100

EMAILS_SEND = parse_pattern("POST /emails")
BATCH_SEND = parse_pattern("POST /emails/batch")
FREE = tuple(
    parse_pattern(t)
    for t in (
        "GET /**",
        "PATCH /emails/*",  # reschedule
        "POST /emails/*/cancel",
        "POST /audiences",
        "DELETE /audiences/*",
        "POST /audiences/*/contacts",
        "PATCH /audiences/*/contacts/*",
        "DELETE /audiences/*/contacts/*",
        "POST /contacts",
        "PATCH /contacts/*",
        "DELETE /contacts/*",
        "POST /contacts/imports",
        # Guarded (docs/policy.md, guarded endpoints), but they move no money once a key may call them at all.
        "* /api-keys",
        "* /api-keys/**",
        "* /domains",
        "* /domains/**",
        "* /webhooks",
        "* /webhooks/**",
    )
)
# docs/policy.md, guarded endpoints: endpoints that return or mint secrets, change sending domains or webhooks,
# or send to whole audiences.
GUARDED = tuple(
    parse_pattern(t, casefold=True)
    for t in (
        "* /api-keys",
        "* /api-keys/**",
        "* /domains",
        "* /domains/**",
        "* /webhooks",
        "* /webhooks/**",
        "* /oauth/**",
        # A broadcast sends to a whole audience: creating one with `"send": true` sends at once,
        # and an update can reschedule it (found by the red-team run: only `…/send` was guarded).
        "POST|PATCH|PUT /broadcasts",
        "POST|PATCH|PUT /broadcasts/**",
        "POST /contacts/imports",
    )
)
# Endpoints whose exact spelling decides a price or a recipient check: a case variant
# (`POST /Emails`) is refused (`base.check_path_spelling`); Resend documents no alternative spelling.
MONEY_MOVING: tuple[EndpointPattern, ...] = (
    EMAILS_SEND,
    BATCH_SEND,
    parse_pattern("POST /broadcasts"),
    parse_pattern("POST /broadcasts/*/send"),
)
_SECRET = re.compile(r"^re_[A-Za-z0-9_]{8,}$")
# Email fields (resend.json SendEmailRequest, plus the SDKs' `react`) that scope, pricing,
# dedup or param_rules read, or that change who receives what.
ENFORCED = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "html",
        "text",
        "template",
        "react",
        "reply_to",
        "scheduled_at",
        "attachments",
        "headers",
        "tags",
        "topic_id",
    }
)
_FOLDED = frozenset(fold(n) for n in ENFORCED)


class Resend(VendorDefaults):
    name = "resend"
    default_base_url = "https://api.resend.com"
    upstream_hosts: tuple[str, ...] = ("api.resend.com",)
    forwarded_headers = frozenset({"idempotency-key"})
    policy_fields = CORE_POLICY_FIELDS | {"allowed_from_domains", "allowed_to_domains", "daily_send_cap"}
    guarded = GUARDED
    money_moving = MONEY_MOVING
    free = FREE
    max_body_bytes = 45 * 1024 * 1024  # Resend accepts attachments up to 40 MB after encoding
    # "Idempotency keys can be up to 256 characters" (https://resend.com/docs/dashboard/emails/idempotency-keys)
    idempotency_key_max_length = 256
    replays_retries = True  # a retry under the same key within 24 hours returns the first answer

    def __init__(self, rate_usd: Decimal = DEFAULT_RATE_USD) -> None:
        self.rate_micro = int((rate_usd * MICRO).to_integral_value(rounding="ROUND_CEILING"))

    # -- credentials ----------------------------------------------------------------------

    def validate_secret(self, secret: Any) -> ValidatedSecret:
        if not isinstance(secret, str) or not _SECRET.match(secret):
            raise ValueError("a Resend secret is an API key starting re_")
        return ValidatedSecret(secret.encode(), f"re_…{secret[-4:]}", None)

    def credential_rejected(self, status: int, doc: Any) -> bool:
        # Resend answers a wrong key with 403 invalid_api_key (docs/policy.md, settlement).
        return status == 401 or (status == 403 and isinstance(doc, dict) and doc.get("name") == "invalid_api_key")

    def request_id(self, headers: dict[str, str]) -> str | None:
        return headers.get("x-request-id") or headers.get("x-resend-request-id")

    # -- the one parse --------------------------------------------------------------------

    def parse(self, req: ProxyRequest, path: tuple[str, ...]) -> VendorRequest:
        ctype = content_type(req)
        query = query_params(req.query)
        in_query = sorted(n for n in query.tops if fold(n) in _FOLDED)
        if in_query:
            # Resend reads email fields from the JSON body only: a query copy would be checked, not sent.
            raise Denial(
                "param_ambiguous",
                f"Email field {in_query[0][:40]!r} is read from the JSON body only; remove it from the query string.",
            )
        if not req.body:
            doc: Any = None
            params = query
        else:
            if ctype != "application/json":
                raise Denial(
                    "unsupported_media_type",
                    f"Resend request bodies must be application/json (got {ctype or 'no Content-Type'}).",
                )
            doc, body_params = parse_json_body(req.body)
            params = merge(query, body_params)
            # Email fields are exact: `To`, `"bcc "` or `ｔｏ` next to (or instead of) `to` are refused,
            # in a single email and in every batch item.
            for i, item in enumerate(doc if isinstance(doc, list) else [doc]):
                if isinstance(item, dict):
                    where = f"Batch item {i}: " if isinstance(doc, list) else ""
                    check_spelling(item, ENFORCED, vendor=f"{where}Resend", literal=True)
        emails: list[Email] = []
        if EMAILS_SEND.matches(req.method, path):
            if not isinstance(doc, dict):
                raise Denial("body_invalid", "POST /emails takes one JSON object (from, to, subject, html or text).")
            emails.append(read_email(doc, ""))
        elif BATCH_SEND.matches(req.method, path):
            if not isinstance(doc, list) or not doc:
                raise Denial("body_invalid", "POST /emails/batch takes a JSON array of 1 to 100 email objects.")
            if len(doc) > MAX_BATCH:
                raise Denial("body_invalid", f"A batch holds at most {MAX_BATCH} emails (got {len(doc)}).")
            for i, item in enumerate(doc):
                if not isinstance(item, dict):
                    raise Denial("body_invalid", f"Batch item {i} is not a JSON object.")
                emails.append(read_email(item, f"[{i}]."))
        return VendorRequest(req.method, path, params, detail=ResendParse(doc, tuple(emails)))

    # -- scope ----------------------------------------------------------------------------

    def check_scope(self, policy: Policy, vreq: VendorRequest) -> ScopeResult:
        own = policy.vendor_fields(ResendPolicy.from_store)
        for i, email in enumerate(_emails(vreq)):
            where = f" (batch item {i})" if BATCH_SEND.matches(vreq.method, vreq.path) else ""
            if own.allowed_to_domains is not None:
                outside = sorted(d for d in email.to_domains if not domain_allowed(d, own.allowed_to_domains))
                if outside:
                    raise Denial(
                        "scope_violation",
                        f"Recipient domain {outside[0]!r}{where} is outside this key's allowed_to_domains; nothing "
                        "was sent. Do not retry.",
                    )
            if own.allowed_from_domains is not None and not domain_allowed(email.from_domain, own.allowed_from_domains):
                raise Denial(
                    "scope_violation",
                    f"Sender domain {email.from_domain!r}{where} is outside this key's allowed_from_domains. "
                    "Do not retry.",
                )
        return ScopeResult()

    # -- cost -----------------------------------------------------------------------------

    def estimate(self, vreq: VendorRequest, rates: Rates) -> Estimate:
        emails = _emails(vreq)
        if emails:
            recipients = sum(len(e.recipients) for e in emails)
            return Estimate("priced", self.rate_micro * recipients, "email", "usd", sends=recipients)
        if any(p.matches(vreq.method, vreq.path) for p in FREE):
            return Estimate("free", 0, "none")
        return Estimate("unpriceable", 0, "email")

    def cost(
        self, vreq: VendorRequest, estimate: Estimate, status: int, headers: dict[str, str], doc: Any, rates: Rates
    ) -> VendorCost:
        if status >= 300:
            return VendorCost(0, "none", "none")  # refused: nothing was sent
        email_id = _first_id(doc)
        if estimate.pricing == "free":
            return VendorCost(0, "none", "none", vendor_object_id=email_id)
        if estimate.pricing == "priced":
            return VendorCost(estimate.amount, "flat_rate", "email", vendor_object_id=email_id)
        return VendorCost(estimate.amount, "estimate", estimate.cost_kind, vendor_object_id=email_id)

    def reconcile(self, doc: Any, rates: Rates, related: Sequence[Any] = ()) -> VendorCost | None:
        return None  # flat-rate costs are final at the answer

    def fingerprint(self, vreq: VendorRequest) -> str | None:
        """Method, path and the canonical JSON body of a send. Resend honours Idempotency-Key on
        `POST /emails` and `POST /emails/batch` only (https://resend.com/docs/dashboard/emails/idempotency-keys):
        elsewhere None, a request repeating a key is a second action, reserved and counted as one."""
        if not (EMAILS_SEND.matches(vreq.method, vreq.path) or BATCH_SEND.matches(vreq.method, vreq.path)):
            return None
        return _request_hash(vreq)

    def dedup_fingerprint(self, vreq: VendorRequest) -> str | None:
        """The sorted recipients, from, subject and a hash of html/text/template, per email."""
        emails = _emails(vreq)
        if not emails:
            return _request_hash(vreq) if vreq.method == "POST" else None
        h = hashlib.sha256(f"{vreq.method} /{'/'.join(vreq.path)}".encode())
        for e in emails:
            h.update(b"\0" + "\1".join(sorted(e.recipients)).encode())
            h.update(f"\0{e.from_domain}\0{e.subject}\0{e.content_hash}".encode())
        return h.hexdigest()

    def redact(self, vreq: VendorRequest, doc: Any) -> list[str]:
        """API key tokens never reach the agent (docs/policy.md, guarded endpoints)."""
        if not vreq.path or vreq.path[0].lower() != "api-keys":
            return []
        return redact_fields(doc, frozenset({"token"}))

    def summary(self, vreq: VendorRequest) -> dict[str, Any]:
        emails = _emails(vreq)
        if not emails:
            return {}
        domains = sorted({d for e in emails for d in e.to_domains})
        out: dict[str, Any] = {
            "recipient_count": sum(len(e.recipients) for e in emails),
            "recipient_domains": domains[:20],
            "from_domain": sorted({e.from_domain for e in emails})[0],
        }
        if BATCH_SEND.matches(vreq.method, vreq.path):
            out["emails"] = len(emails)
        return out

    # -- errors ---------------------------------------------------------------------------

    def render_denial(self, denial: Denial, keybrake: dict[str, Any]) -> Rendered:
        return Rendered(
            {"statusCode": denial.status, "name": denial.code, "message": denial.message, "keybrake": keybrake},
            retry_after(denial),
        )


_NO_PARSE = ResendParse(None)


def _detail(vreq: VendorRequest) -> ResendParse:
    """What the one parse learnt (`Resend.parse` sets it on every request it returns; a request
    built otherwise reads as one without a body)."""
    return vreq.detail if isinstance(vreq.detail, ResendParse) else _NO_PARSE


def _emails(vreq: VendorRequest) -> tuple[Email, ...]:
    """The emails a send carries (one, or a batch's), empty for any other request."""
    return _detail(vreq).emails


def _first_id(doc: Any) -> str | None:
    if isinstance(doc, dict):
        if isinstance(doc.get("id"), str):
            return str(doc["id"])
        data = doc.get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict) and isinstance(data[0].get("id"), str):
            return str(data[0]["id"])
    return None


SPEC = VendorSpec(
    "resend",
    lambda values: Resend(values["rate_usd"]),
    (VendorSetting("KEYBRAKE_RESEND_RATE_USD", "rate_usd", "decimal", DEFAULT_RATE_USD),),
    policy_input=ResendPolicyIn,
)


def _request_hash(vreq: VendorRequest) -> str:
    """SHA-256 (hex) of the method, path and the canonical JSON body."""
    canonical = json.dumps(_detail(vreq).doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{vreq.method} /{'/'.join(vreq.path)}\0{canonical}".encode()).hexdigest()
