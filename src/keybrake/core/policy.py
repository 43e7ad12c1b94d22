"""The policy a vault key carries, and the vendor-neutral checks made against it.

Stored as JSON with money in integer micro-USD; built once per (key, policy version) and then
shared read-only. Vendor-specific meaning (what the customer of a request is, what it costs)
comes from the vendor module; this module only compares it with the policy. Fields only one
vendor understands are that vendor's (`Policy.vendor_data`, read with `vendor_fields`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, TypeVar, cast

import re2

from keybrake.core.errors import Denial
from keybrake.core.money import human_usd
from keybrake.core.params import Params
from keybrake.core.patterns import EndpointPattern, parse_pattern

# The core policy fields (every vendor's keys can take them), each with its rank: the API
# renders every field, core and vendor ones (`VendorSpec.policy_input` RANKS), in rank order.
# Money fields hold micro-USD.
USD_FIELDS = ("daily_usd_cap", "total_usd_cap", "max_usd_per_call", "approval_above_usd")
CORE_RANKS: Mapping[str, int] = MappingProxyType(
    {
        "daily_usd_cap": 10,
        "total_usd_cap": 20,
        "max_usd_per_call": 30,
        "max_requests_per_hour": 40,
        "max_requests_total": 50,
        "max_write_requests_total": 60,
        "allowed_endpoints": 70,
        "customer_allowlist": 80,  # the customer a request acts for (`ScopeResult.customer_scope_id`)
        "param_rules": 100,
        "daily_send_cap": 180,
        "dedup_window_seconds": 190,
        "allow_self_revoke": 200,
        # Human approval (docs/approvals.md): calls estimated above it, and every call matching one
        # of the patterns, wait for a person, this long at most.
        "approval_above_usd": 210,
        "approval_endpoints": 220,
        "approval_timeout_seconds": 230,
    }
)
CORE_FIELDS = tuple(CORE_RANKS)

T = TypeVar("T")


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
    """A key's policy: the core fields, and the vendor's own fields as stored (`vendor_data`),
    which the vendor reads typed through `vendor_fields`."""

    daily_usd_cap: int | None = None
    total_usd_cap: int | None = None
    max_usd_per_call: int | None = None
    max_requests_per_hour: int | None = None
    allowed_endpoints: tuple[EndpointPattern, ...] | None = None
    customer_allowlist: frozenset[str] | None = None
    param_rules: tuple[ParamRule, ...] | None = None
    daily_send_cap: int | None = None
    dedup_window_seconds: int | None = None
    approval_above_usd: int | None = None
    approval_endpoints: tuple[EndpointPattern, ...] | None = None
    approval_timeout_seconds: int | None = None
    # Not hashed (a mapping): equal policies still hash alike, by their other fields.
    vendor_data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    _parsed: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_store(cls, data: Mapping[str, Any]) -> Policy:
        """Build from the stored JSON (already validated at the API edge)."""
        endpoints = data.get("allowed_endpoints")
        held = data.get("approval_endpoints")
        rules = data.get("param_rules")
        customers = data.get("customer_allowlist")
        return cls(
            daily_usd_cap=data.get("daily_usd_cap"),
            total_usd_cap=data.get("total_usd_cap"),
            max_usd_per_call=data.get("max_usd_per_call"),
            max_requests_per_hour=data.get("max_requests_per_hour"),
            allowed_endpoints=tuple(parse_pattern(p) for p in endpoints) if endpoints is not None else None,
            customer_allowlist=frozenset(customers) if customers is not None else None,
            param_rules=tuple(rule_from_store(k, v) for k, v in rules.items()) if rules is not None else None,
            daily_send_cap=data.get("daily_send_cap"),
            dedup_window_seconds=data.get("dedup_window_seconds"),
            approval_above_usd=data.get("approval_above_usd"),
            approval_endpoints=tuple(parse_pattern(p) for p in held) if held is not None else None,
            approval_timeout_seconds=data.get("approval_timeout_seconds"),
            vendor_data=MappingProxyType({k: v for k, v in data.items() if k not in CORE_RANKS}),
        )

    def vendor_fields(self, parse: Callable[[Mapping[str, Any]], T]) -> T:
        """The vendor's own fields, parsed from `vendor_data` by `parse` (e.g. `TwilioPolicy.from_store`)
        once per policy: policies are built once per (key, policy version) and then shared."""
        parsed = self._parsed.get(parse)
        if parsed is None:
            parsed = self._parsed[parse] = parse(self.vendor_data)
        return cast(T, parsed)

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
