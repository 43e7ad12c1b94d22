"""Admin API inputs. Unknown fields are errors (422 naming the field), never ignored."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from keybrake.admin.policy import Count, Money, PolicyBase, Strict, _refuse_aliases

RESERVED_METADATA_KEYS = frozenset({"headers", "claimed_agent_run_id", "suppressed"})


def _check_metadata(v: dict[str, str] | None) -> dict[str, str] | None:
    if v is None:
        return v
    if len(v) > 50:
        raise ValueError("at most 50 keys")
    for k, val in v.items():
        if not k or len(k) > 40:
            raise ValueError(f"key {k[:50]!r} must be 1 to 40 characters")
        if k in RESERVED_METADATA_KEYS:
            raise ValueError(f"key {k!r} is reserved for audit metadata")
        if len(val) > 500:
            raise ValueError(f"value of {k!r} is longer than 500 characters")
    return v


def _check_label(v: str | None) -> str | None:
    if v is not None and (len(v) > 200 or not v.isprintable()):
        raise ValueError("must be at most 200 printable characters")
    return v


# POST /v1/keys; `policy` is typed per set of vendors (`key_models.KeyModels.key_in`).
class KeyIn(Strict):
    vendor: str
    credential: str | None = None
    label: str | None = None
    expires_in: int | str | None = None
    expires_at: str | None = None
    metadata: dict[str, Annotated[str, Field(strict=True)]] | None = None
    policy: PolicyBase = Field(default_factory=PolicyBase)

    _aliases = model_validator(mode="before")(_refuse_aliases)
    _meta = field_validator("metadata")(classmethod(lambda cls, v: _check_metadata(v)))
    _label = field_validator("label")(classmethod(lambda cls, v: _check_label(v)))


class KeyPatchIn(Strict):
    """Validated *after* the merge patch is applied to the current key (RFC 7396); `policy` is typed
    per set of vendors (`key_models.KeyModels.key_patch_in`)."""

    label: str | None = None
    metadata: dict[str, Annotated[str, Field(strict=True)]] | None = None
    policy: PolicyBase = Field(default_factory=PolicyBase)

    _meta = field_validator("metadata")(classmethod(lambda cls, v: _check_metadata(v)))
    _label = field_validator("label")(classmethod(lambda cls, v: _check_label(v)))


class RevokeIn(Strict):
    reason: str | None = Field(default=None, max_length=500)


class BulkRevokeIn(Strict):
    label_prefix: str | None = None
    vendor: str | None = None
    credential: str | None = None
    reason: str | None = Field(default=None, max_length=500)
    all: bool = False

    _aliases = model_validator(mode="before")(_refuse_aliases)

    @field_validator("label_prefix")
    @classmethod
    def _not_empty(cls, v: str | None) -> str | None:
        if v == "":
            raise ValueError('an empty label_prefix would revoke every key: to mean that, send {"all": true}')
        return v


class CredentialIn(Strict):
    vendor: str
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    secret: str | dict[str, str]
    base_url: str | None = None


class RotateIn(Strict):
    secret: str | dict[str, str]
    base_url: str | None = None


class AdminTokenIn(Strict):
    scope: str = Field(pattern=r"^admin$")
    label: str = Field(min_length=1, max_length=200)


# Leap-second variants of the IANA zones (right/UTC, right/Europe/Berlin): refused.
LEAP_SECOND_PREFIX = "right/"


def _timezone(v: object) -> str:
    from zoneinfo import ZoneInfo

    if not isinstance(v, str):
        raise ValueError("timezone must be a string naming an IANA time zone such as 'UTC' or 'America/New_York'")
    if v.startswith(LEAP_SECOND_PREFIX):
        # PostgreSQL refuses them (no leap seconds), and a day of a leap-second zone is not a
        # calendar day of the zone anyway: one rule for both engines.
        plain = v[len(LEAP_SECOND_PREFIX) :]
        raise ValueError(f"{v!r} is a leap-second ('right/') zone, which budgets do not support; use {plain!r}")
    try:
        ZoneInfo(v)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"{v!r} is not an IANA time zone such as 'UTC' or 'America/New_York'") from None
    return v


class BudgetScopeIn(Strict):
    label_prefix: str | None = Field(default=None, max_length=200)
    vendor: str | None = None
    credential: str | None = None

    @field_validator("label_prefix")
    @classmethod
    def _not_empty(cls, v: str | None) -> str | None:
        if v == "":
            raise ValueError('an empty label_prefix would cover every key: for that, use "scope": "all"')
        return v

    @model_validator(mode="after")
    def _one(self) -> BudgetScopeIn:
        if sum(v is not None for v in (self.label_prefix, self.vendor, self.credential)) != 1:
            raise ValueError('scope names exactly one of label_prefix, vendor or credential (or is "all")')
        return self


class BudgetIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    scope: BudgetScopeIn | Literal["all"]
    daily_usd_cap: Money | None = None
    monthly_usd_cap: Money | None = None
    total_usd_cap: Money | None = None
    daily_request_cap: Count | None = None
    timezone: Annotated[str, BeforeValidator(_timezone)] = "UTC"
    approval_above_usd: Money | None = None  # docs/approvals.md: covered calls above it wait for a person


class BudgetPatchIn(Strict):
    """Validated after the merge patch is applied; `scope` cannot change."""

    name: str = Field(min_length=1, max_length=200)
    daily_usd_cap: Money | None = None
    monthly_usd_cap: Money | None = None
    total_usd_cap: Money | None = None
    daily_request_cap: Count | None = None
    timezone: Annotated[str, BeforeValidator(_timezone)] = "UTC"
    approval_above_usd: Money | None = None  # docs/approvals.md: covered calls above it wait for a person
