"""Key policy inputs of the admin API (docs/policy.md): `PolicyIn` and its `ParamRuleIn`, plus the
field types and strict base every admin input shares. Unknown fields are errors (422 naming the
field), never ignored."""

from __future__ import annotations

import re
from typing import Annotated, Any

import phonenumbers
import re2
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from keybrake.core.destinations import CALLING_CODE, CHANNEL, PHONE_PREFIX, policy_domain
from keybrake.core.money import MoneyError, parse_usd
from keybrake.core.patterns import PatternError, parse_pattern
from keybrake.vendors.twilio_voice import twiml_url_problem

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


_APPLICATION_SID = re.compile(r"^AP[0-9a-fA-F]{32}$")  # Twilio's spec pattern for ApplicationSid
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


class PolicyIn(Strict):
    daily_usd_cap: Money | None = None
    total_usd_cap: Money | None = None
    max_usd_per_call: Money | None = None
    max_requests_per_hour: Count | None = None
    max_requests_total: Count | None = None
    max_write_requests_total: Count | None = None
    allowed_endpoints: list[str] | None = Field(default=None, max_length=500)
    customer_allowlist: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = None
    account_allowlist: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = None
    param_rules: dict[str, ParamRuleIn] | None = None
    allowed_to_prefixes: list[str] | None = Field(default=None, max_length=500)
    allowed_to_domains: list[str] | None = Field(default=None, max_length=500)
    allowed_from_domains: list[str] | None = Field(default=None, max_length=500)
    default_calling_code: str | None = None
    # Twilio's own TimeLimit maximum is 4 hours.
    max_call_seconds: Annotated[int, Field(ge=1, le=14400, strict=True)] | None = None
    # Twilio, with allowed_to_prefixes: TwiML a call may fetch, and applications that may run a call.
    allowed_twiml_urls: list[Annotated[str, Field(min_length=1, max_length=2048)]] | None = Field(
        default=None, max_length=500
    )
    allowed_application_sids: list[str] | None = Field(default=None, max_length=500)
    daily_send_cap: Count | None = None
    # Replay bodies are held (encrypted) for the window: at most a day.
    dedup_window_seconds: Annotated[int, Field(ge=1, le=86400, strict=True)] | None = None
    allow_self_revoke: bool | None = None

    _aliases = model_validator(mode="before")(_refuse_aliases)

    @field_validator("allowed_endpoints")
    @classmethod
    def _patterns(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for i, text in enumerate(v):
                try:
                    parse_pattern(text)
                except PatternError as exc:
                    raise ValueError(f"entry {i} ({text!r}): {exc}") from None
        return v

    @field_validator("allowed_to_prefixes")
    @classmethod
    def _prefixes(cls, v: list[str] | None) -> list[str] | None:
        for entry in v or []:
            if entry.lower() == "whatsapp:":
                raise ValueError("'whatsapp:' is removed before checking; list the number prefixes instead")
            if not (PHONE_PREFIX.match(entry) or CHANNEL.match(entry)):
                raise ValueError(
                    f"{entry!r} is neither an E.164 prefix such as '+1' or '+4420' nor a channel such as 'sip:'"
                )
        return v

    @field_validator("allowed_twiml_urls")
    @classmethod
    def _twiml_urls(cls, v: list[str] | None) -> list[str] | None:
        for entry in v or []:
            problem = twiml_url_problem(entry)
            if problem:
                raise ValueError(f"{entry[:100]!r} {problem}")
        return v

    @field_validator("allowed_application_sids")
    @classmethod
    def _application_sids(cls, v: list[str] | None) -> list[str] | None:
        for i, sid in enumerate(v or []):
            if not _APPLICATION_SID.match(sid):
                raise ValueError(f"entry {i} ({sid[:40]!r}) is not a Twilio application SID: AP and 32 hex digits")
        return v

    @field_validator("default_calling_code")
    @classmethod
    def _calling_code(cls, v: str | None) -> str | None:
        if v is not None and (
            not CALLING_CODE.match(v) or phonenumbers.region_code_for_country_code(int(v[1:])) == "ZZ"
        ):
            raise ValueError(f"{v!r} is not a country calling code such as '+1' or '+44'")
        return v

    @field_validator("allowed_to_domains", "allowed_from_domains")
    @classmethod
    def _domains(cls, v: list[str] | None) -> list[str] | None:
        return [policy_domain(d) for d in v] if v is not None else None

    @field_validator("param_rules")
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
