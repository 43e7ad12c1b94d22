"""Key policy inputs of the admin API (docs/policy.md): `PolicyIn` and its `ParamRuleIn`, plus the
field types and strict base every admin input shares. Unknown fields are errors (422 naming the
field), never ignored.

`PolicyIn` is composed of the core fields (`CorePolicyIn`) and each registered vendor's own
(`VendorSpec.policy_input`, with their validators): the admin API names no vendor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

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

from keybrake.core.money import MoneyError, parse_usd
from keybrake.core.patterns import PatternError, parse_pattern
from keybrake.core.policy import CORE_RANKS
from keybrake.vendors import registry

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

    @field_validator("allowed_endpoints", check_fields=False)
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


def compose_policy_input(vendor_inputs: Sequence[type[BaseModel]]) -> type[PolicyBase]:
    """`PolicyIn`: the core fields and every vendor's own (`VendorSpec.policy_input`), with their
    validators, in rank order (core/policy.py CORE_RANKS, each vendor model's `RANKS`).

    Raises ValueError when two models declare one field, or a vendor field has no rank.
    """
    ranks: dict[str, int] = dict(CORE_RANKS)
    fields: dict[str, FieldInfo] = dict(CorePolicyIn.model_fields)
    validators: dict[str, Any] = {}
    for model in vendor_inputs:
        declared: Mapping[str, int] = getattr(model, "RANKS", {})
        for name, info in model.model_fields.items():
            if name in fields:
                raise ValueError(f"policy field {name!r} is declared twice ({model.__name__})")
            if name not in declared:
                raise ValueError(f"policy field {name!r} of {model.__name__} has no rank (RANKS)")
            fields[name], ranks[name] = info, declared[name]
        for attr, found in model.__pydantic_decorators__.field_validators.items():
            # The vendor's own validators, re-declared on the composed model (its messages unchanged).
            func = getattr(found.func, "__func__", found.func)
            validators[f"{model.__name__}_{attr}"] = field_validator(*found.info.fields, mode=found.info.mode)(func)
    order = sorted(fields, key=ranks.__getitem__)
    composed: type[PolicyBase] = create_model(  # type: ignore[call-overload]
        "PolicyIn",
        __base__=PolicyBase,
        __module__=__name__,
        __validators__=validators,
        **{name: (fields[name].annotation, fields[name]) for name in order},
    )
    return composed


if TYPE_CHECKING:
    PolicyIn = PolicyBase
else:
    # Composed once, from the vendors registered when the admin API is imported.
    PolicyIn = compose_policy_input([s.policy_input for s in registry.specs() if s.policy_input is not None])
# Every policy field, in the order the API renders them.
ALL_FIELDS: tuple[str, ...] = tuple(PolicyIn.model_fields)
