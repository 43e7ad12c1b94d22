"""The policy a vault key carries, and the vendor-neutral checks made against it.

Stored as JSON with money in integer micro-USD; built once per (key, policy version) and then
shared read-only. Vendor-specific meaning (what the customer of a request is, what it costs)
comes from the vendor module; this module only compares it with the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import re2

from keybrake.core.errors import Denial
from keybrake.core.money import human_usd
from keybrake.core.params import Params
from keybrake.core.patterns import EndpointPattern, parse_pattern

# Every §3 policy field, in the order the API renders them. Money fields hold micro-USD.
USD_FIELDS = ("daily_usd_cap", "total_usd_cap", "max_usd_per_call")
ALL_FIELDS = (
    "daily_usd_cap",
    "total_usd_cap",
    "max_usd_per_call",
    "max_requests_per_hour",
    "max_requests_total",
    "max_write_requests_total",
    "allowed_endpoints",
    "customer_allowlist",
    "account_allowlist",
    "param_rules",
    "allowed_to_prefixes",
    "allowed_to_domains",
    "allowed_from_domains",
    "default_calling_code",
    "max_call_seconds",
    "allowed_twiml_urls",
    "allowed_application_sids",
    "daily_send_cap",
    "dedup_window_seconds",
    "allow_self_revoke",
)


@dataclass(frozen=True)
class ParamRule:
    name: str
    in_: tuple[str, ...] | None = None
    not_in: tuple[str, ...] | None = None
    min: Decimal | None = None
    max: Decimal | None = None
    pattern: str | None = None
    required: bool = False

    def check(self, params: Params) -> None:
        nested = self.name + "."
        if any(name.startswith(nested) for name in params.values):
            # Stripe reads many parameters as a string or a hash (`destination` or
            # `destination[account]`): a rule on the name holds whatever shape the value takes.
            raise _param_denial(self.name, "is sent as a nested object; the rule admits only its plain value")
        values = params.values.get(self.name)
        if not values:
            if self.required:
                raise _param_denial(self.name, "is required by the key's param_rules")
            return
        rx = re2.compile(self.pattern) if self.pattern is not None else None
        for v in values:
            if self.in_ is not None and v not in self.in_:
                raise _param_denial(self.name, f"must be one of {list(self.in_)} (got {v[:40]!r})")
            if self.not_in is not None and v in self.not_in:
                raise _param_denial(self.name, f"may not be {v[:40]!r}")
            if self.min is not None or self.max is not None:
                try:
                    d = Decimal(v)
                    if not d.is_finite():
                        raise InvalidOperation
                except InvalidOperation:
                    raise _param_denial(self.name, "must be a decimal number") from None
                if self.min is not None and d < self.min:
                    raise _param_denial(self.name, f"must be at least {self.min} (got {v[:40]})")
                if self.max is not None and d > self.max:
                    raise _param_denial(self.name, f"must be at most {self.max} (got {v[:40]})")
            if rx is not None and not rx.fullmatch(v):
                raise _param_denial(self.name, f"must match the pattern {self.pattern!r}")


def _param_denial(name: str, why: str) -> Denial:
    return Denial(
        "param_not_allowed",
        f"Parameter {name!r} {why} (rule: param_rules.{name}). Do not retry with the same value.",
    )


@dataclass(frozen=True)
class Policy:
    daily_usd_cap: int | None = None
    total_usd_cap: int | None = None
    max_usd_per_call: int | None = None
    max_requests_per_hour: int | None = None
    allowed_endpoints: tuple[EndpointPattern, ...] | None = None
    customer_allowlist: frozenset[str] | None = None
    account_allowlist: frozenset[str] | None = None
    param_rules: tuple[ParamRule, ...] | None = None
    allowed_to_prefixes: tuple[str, ...] | None = None  # E.164 prefixes ("+1") or channels ("sip:")
    default_calling_code: str | None = None
    max_call_seconds: int | None = None
    # Twilio TwiML a call may fetch on a key with allowed_to_prefixes: https URLs, or prefixes ending in "*"
    allowed_twiml_urls: tuple[str, ...] | None = None
    allowed_application_sids: frozenset[str] | None = None  # AP… SIDs whose TwiML may run a call
    allowed_to_domains: tuple[str, ...] | None = None  # "example.com" or "*.example.com", IDNA
    allowed_from_domains: tuple[str, ...] | None = None
    daily_send_cap: int | None = None
    dedup_window_seconds: int | None = None

    @classmethod
    def from_store(cls, data: dict[str, Any]) -> Policy:
        """Build from the stored JSON (already validated at the API edge)."""

        def opt_set(name: str) -> frozenset[str] | None:
            v = data.get(name)
            return frozenset(v) if v is not None else None

        def opt_tuple(name: str) -> tuple[str, ...] | None:
            v = data.get(name)
            return tuple(v) if v is not None else None

        endpoints = data.get("allowed_endpoints")
        rules = data.get("param_rules")
        return cls(
            daily_usd_cap=data.get("daily_usd_cap"),
            total_usd_cap=data.get("total_usd_cap"),
            max_usd_per_call=data.get("max_usd_per_call"),
            max_requests_per_hour=data.get("max_requests_per_hour"),
            allowed_endpoints=tuple(parse_pattern(p) for p in endpoints) if endpoints is not None else None,
            customer_allowlist=opt_set("customer_allowlist"),
            account_allowlist=opt_set("account_allowlist"),
            param_rules=tuple(rule_from_store(k, v) for k, v in rules.items()) if rules is not None else None,
            allowed_to_prefixes=opt_tuple("allowed_to_prefixes"),
            default_calling_code=data.get("default_calling_code"),
            max_call_seconds=data.get("max_call_seconds"),
            allowed_twiml_urls=opt_tuple("allowed_twiml_urls"),
            allowed_application_sids=opt_set("allowed_application_sids"),
            allowed_to_domains=opt_tuple("allowed_to_domains"),
            allowed_from_domains=opt_tuple("allowed_from_domains"),
            daily_send_cap=data.get("daily_send_cap"),
            dedup_window_seconds=data.get("dedup_window_seconds"),
        )

    def has_usd_cap(self) -> bool:
        return self.daily_usd_cap is not None or self.total_usd_cap is not None


def rule_from_store(name: str, spec: dict[str, Any]) -> ParamRule:
    def dec(v: Any) -> Decimal | None:
        return Decimal(str(v)) if v is not None else None

    return ParamRule(
        name=name,
        in_=tuple(spec["in"]) if spec.get("in") is not None else None,
        not_in=tuple(spec["not_in"]) if spec.get("not_in") is not None else None,
        min=dec(spec.get("min")),
        max=dec(spec.get("max")),
        pattern=spec.get("pattern"),
        required=bool(spec.get("required", False)),
    )


def check_param_rules(policy: Policy, params: Params) -> None:
    for rule in policy.param_rules or ():
        rule.check(params)


def check_allowlist(
    allowlist: frozenset[str] | None, value: str | None, *, field: str, what: str, unresolved_reason: str | None
) -> None:
    """Refuse unless `value` is on the allowlist; an unresolvable value is refused too (fail closed)."""
    if allowlist is None:
        return
    if value is None:
        raise Denial(
            "scope_violation",
            f"Request refused by {field}: {unresolved_reason or f'the {what} could not be determined'}. "
            "Do not retry unchanged.",
        )
    if value not in allowlist:
        raise Denial(
            "scope_violation",
            f"Request refused by {field}: {what} {value!r} is not allowed for this key. Do not retry.",
        )


def check_max_per_call(policy: Policy, estimate_micro: int, key_id: str) -> None:
    if policy.max_usd_per_call is not None and estimate_micro > policy.max_usd_per_call:
        raise Denial(
            "amount_over_limit",
            f"Do not retry: this call would move {human_usd(estimate_micro)}, over the "
            f"max_usd_per_call of {human_usd(policy.max_usd_per_call)} for {key_id}.",
        )
