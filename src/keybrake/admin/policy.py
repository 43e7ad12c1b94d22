"""Key policy inputs of the admin API (docs/policy.md): `PolicyIn` and its `ParamRuleIn`, plus the
field types and strict base every admin input shares. Unknown fields are errors (422 naming the
field), never ignored.

`PolicyIn` is composed of the core fields (`CorePolicyIn`) and each registered vendor's own
(`VendorSpec.policy_input`, with their validators) when the admin app is built (`policy_input`),
not when this module is imported: the admin API names no vendor.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import re2
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from keybrake.core.approvals import MAX_APPROVAL_WAIT_S
from keybrake.core.money import MoneyError, parse_usd
from keybrake.core.patterns import PatternError, parse_pattern
from keybrake.core.policy import CORE_RANKS
from keybrake.vendors import registry
from keybrake.vendors.registry import VendorSpec

# Names used by the hosted product, refused with a pointer to Keybrake's field (docs/api.md).
ALIASES = {
    "agent_run_label": "label",
    "max_amount_per_call_usd": "policy.max_usd_per_call",
    "merchant_allowlist": "policy.customer_allowlist",
    "label_contains": "label_prefix",
}


def _money(v: Any) -> int:
    try:
        return parse_usd(v)
    except MoneyError as exc:
        raise ValueError(f"must be an amount in US dollars: {exc}") from None


Money = Annotated[
    int,
    BeforeValidator(_money),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}],
            "description": "US dollars, at most 6 decimals",
        }
    ),
]
Count = Annotated[int, Field(ge=0, le=10**12, strict=True)]


def _refuse_aliases(data: Any) -> Any:
    if isinstance(data, dict):
        for alias, real in ALIASES.items():
            if alias in data:
                raise ValueError(f"'{alias}' is the hosted product's name; Keybrake calls it '{real}'")
    return data


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ParamRuleIn(Strict):
    in_: list[str] | None = Field(default=None, alias="in")
    not_in: list[str] | None = None
    min: Annotated[str, BeforeValidator(lambda v: _decimal_str(v))] | None = None
    max: Annotated[str, BeforeValidator(lambda v: _decimal_str(v))] | None = None
    pattern: str | None = Field(default=None, max_length=256)
    required: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    @field_validator("pattern")
    @classmethod
    def _re2(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re2.compile(v)
            except re2.error as exc:
                raise ValueError(f"is not a valid RE2 pattern: {exc}") from None
        return v

    def to_store(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in (
            ("in", self.in_),
            ("not_in", self.not_in),
            ("min", self.min),
            ("max", self.max),
            ("pattern", self.pattern),
            ("required", self.required),
        ):
            if value is not None:
                out[name] = value
        return out


def _decimal_str(v: Any) -> str:
    from decimal import Decimal, InvalidOperation

    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValueError("must be a number")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise ValueError("must be a number") from None
    if not d.is_finite():
        raise ValueError("must be finite")
    return str(d)


_PARAM_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


class PolicyBase(Strict):
    """What every key policy input does, whatever fields it is composed of: refuse the hosted
    product's names, check endpoint patterns and parameter rule names, store what is set."""

    _aliases = model_validator(mode="before")(_refuse_aliases)

    @field_validator("allowed_endpoints", "approval_endpoints", check_fields=False)
    @classmethod
    def _patterns(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for i, text in enumerate(v):
                try:
                    parse_pattern(text)
                except PatternError as exc:
                    raise ValueError(f"entry {i} ({text!r}): {exc}") from None
        return v

    @field_validator("param_rules", check_fields=False)
    @classmethod
    def _rule_names(cls, v: dict[str, ParamRuleIn] | None) -> dict[str, ParamRuleIn] | None:
        for name in v or {}:
            if not _PARAM_NAME.match(name):
                raise ValueError(f"{name!r} is not a dotted parameter path such as 'metadata.order_id'")
        return v

    def to_store(self) -> dict[str, Any]:
        """Only the fields that are set; money in micro-USD."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "param_rules":
                value = {k: r.to_store() for k, r in value.items()}
            out[name] = value
        return out


class CorePolicyIn(PolicyBase):
    """The core policy fields (core/policy.py CORE_RANKS), which every vendor's keys can take."""

    daily_usd_cap: Money | None = None
    total_usd_cap: Money | None = None
    max_usd_per_call: Money | None = None
    max_requests_per_hour: Count | None = None
    max_requests_total: Count | None = None
    max_write_requests_total: Count | None = None
    allowed_endpoints: list[str] | None = Field(default=None, max_length=500)
    customer_allowlist: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = None
    param_rules: dict[str, ParamRuleIn] | None = None
    daily_send_cap: Count | None = None
    # Replay bodies are held (encrypted) for the window: at most a day.
    dedup_window_seconds: Annotated[int, Field(ge=1, le=86400, strict=True)] | None = None
    allow_self_revoke: bool | None = None
    # Human approval (docs/approvals.md): calls estimated above this, or matching these patterns,
    # wait for a person; this long at most (bounded by KEYBRAKE_APPROVAL_MAX_WAIT).
    approval_above_usd: Money | None = None
    approval_endpoints: list[str] | None = Field(default=None, max_length=500)
    approval_timeout_seconds: Annotated[int, Field(ge=1, le=MAX_APPROVAL_WAIT_S, strict=True)] | None = None


def compose_policy_input(vendor_inputs: Sequence[type[BaseModel]]) -> type[PolicyBase]:
    """`PolicyIn`: the core fields and every vendor's own (`VendorSpec.policy_input`), with their
    validators, in rank order (core/policy.py CORE_RANKS, each vendor model's `RANKS`).

    Two models may declare one field only when both mark it shared with the same kind (their
    `SHARED` class variable, field → kind, e.g. "email_domain": the same validation), as a vendor
    defined by a file does for Resend's `allowed_to_domains`; the first declaration is used.
    Raises ValueError when two models declare one field otherwise, or a vendor field has no rank.
    """
    ranks: dict[str, int] = dict(CORE_RANKS)
    fields: dict[str, FieldInfo] = dict(CorePolicyIn.model_fields)
    shared: dict[str, str | None] = {}
    validators: dict[str, Any] = {}
    for model in vendor_inputs:
        declared: Mapping[str, int] = getattr(model, "RANKS", {})
        kinds: Mapping[str, str] = getattr(model, "SHARED", {})
        again: set[str] = set()
        for name, info in model.model_fields.items():
            if name in fields:
                if name in shared and shared[name] is not None and shared[name] == kinds.get(name):
                    again.add(name)
                    continue
                raise ValueError(f"policy field {name!r} is declared twice ({model.__name__})")
            if name not in declared:
                raise ValueError(f"policy field {name!r} of {model.__name__} has no rank (RANKS)")
            fields[name], ranks[name], shared[name] = info, declared[name], kinds.get(name)
        for attr, found in model.__pydantic_decorators__.field_validators.items():
            # The vendor's own validators, re-declared on the composed model (its messages unchanged).
            func = getattr(found.func, "__func__", found.func)
            own = [f for f in found.info.fields if f not in again]
            if own:
                validators[f"{model.__name__}_{attr}"] = field_validator(*own, mode=found.info.mode)(func)
    order = sorted(fields, key=ranks.__getitem__)
    composed: type[PolicyBase] = create_model(  # type: ignore[call-overload]
        "PolicyIn",
        __base__=PolicyBase,
        __module__=__name__,
        __validators__=validators,
        **{name: (fields[name].annotation, fields[name]) for name in order},
    )
    return composed


@functools.cache
def policy_input_of(vendor_inputs: tuple[type[BaseModel], ...]) -> type[PolicyBase]:
    """`compose_policy_input(vendor_inputs)`, composed once per tuple of vendor models."""
    return compose_policy_input(vendor_inputs)


def vendor_inputs(specs: Sequence[VendorSpec] | None = None) -> tuple[type[BaseModel], ...]:
    """The policy input models of `specs` (None: the vendors registered now), in their order."""
    return tuple(s.policy_input for s in (registry.specs() if specs is None else specs) if s.policy_input is not None)


def policy_input(specs: Sequence[VendorSpec] | None = None) -> type[PolicyBase]:
    """`PolicyIn` for the vendors `specs` (None: those registered now), composed on first use and
    cached per set of vendor policy models. The admin app composes it when it is built (`build_admin_app`, from
    the vendors its Runtime built), so a vendor registered before that brings its policy fields.
    Raises ValueError as `compose_policy_input` does."""
    return policy_input_of(vendor_inputs(specs))


def all_fields(specs: Sequence[VendorSpec] | None = None) -> tuple[str, ...]:
    """Every policy field of `policy_input(specs)`, in the order the API renders them."""
    return tuple(policy_input(specs).model_fields)
