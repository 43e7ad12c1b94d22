"""Typed answers of Keybrake's admin API (pydantic models, one per schema of `/openapi.json`).

Money is `Decimal` US dollars, exactly as the server wrote it (`25.5`, `0.0067`); timestamps are
timezone-aware `datetime`s (UTC). Fields the server adds later are kept (`model_extra`), never an
error, so an older client reads a newer server. `tests/client/test_openapi_drift.py` checks that
every field declared here is one the server's schema of the same name defines.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Model(BaseModel):
    """Base of every answer model: unknown fields kept, values never coerced from the wrong JSON type."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Usage(Model):
    """One counter of a cap: `limit`, `used`, `reserved` (USD `Decimal` or a count), `resets_at` (None: never)."""

    limit: Decimal | int
    used: Decimal | int
    reserved: Decimal | int
    resets_at: datetime | None


class Key(Model):
    """A vault key (`GET /v1/keys/{id}`): never its token. `policy` holds every policy field (None: unset)."""

    id: str
    object: Literal["vault_key"]
    vendor: str
    credential: str
    credential_generation: str
    label: str | None
    metadata: dict[str, str]
    status: Literal["active", "revoked", "expired"]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None
    issued_by: str | None
    policy: dict[str, Any]
    usage: dict[str, Usage]
    spent_usd: Decimal


class IssuedKey(Key):
    """The answer to issuing a key: the key object plus the token `key` (`vault_key_…`), shown only here."""

    key: str = Field(repr=False)
    vault_key: str = Field(repr=False)
    warnings: list[str]

    @property
    def secret(self) -> str:
        """The vault key token (`vault_key_…`) to give the agent's SDK."""
        return self.key


class UpdatedKey(Key):
    """The answer to `PATCH /v1/keys/{id}`: the key after the patch, with the policy's `warnings`."""

    warnings: list[str]


class Revocation(Model):
    """The answer to a bulk revoke: how many active keys were revoked, and when."""

    object: Literal["revocation"]
    revoked: int
    revoked_at: datetime


class Credential(Model):
    """A stored vendor credential; the secret is never returned (`secret_hint`: prefix and last four)."""

    object: Literal["credential"]
    name: str
    vendor: str
    generation: str
    base_url: str | None
    created_at: datetime
    rotated_at: datetime | None
    secret_hint: str
    livemode: bool | None
    active_keys: int


class DeletedCredential(Credential):
    """A deleted credential and how many keys its deletion revoked."""

    revoked_keys: int
    deleted: Literal[True]


class Budget(Model):
    """A budget: caps over every key its `scope` covers (`{"label_prefix"|"vendor"|"credential": …}` or "all")."""

    id: str
    object: Literal["budget"]
    name: str
    scope: dict[str, str] | Literal["all"]
    timezone: str
    created_at: datetime
    updated_at: datetime
    usage: dict[str, Usage]
    daily_usd_cap: Decimal | None
    monthly_usd_cap: Decimal | None
    total_usd_cap: Decimal | None
    daily_request_cap: int | None
    approval_above_usd: Decimal | None = None  # covered calls estimated above it wait for a person


class CreatedBudget(Budget):
    """A new budget, with `warnings` (e.g. its scope names no credential yet)."""

    warnings: list[str] = Field(default_factory=list)


class DeletedBudget(Budget):
    """A deleted budget (its counters went with it)."""

    deleted: Literal[True]


class Alert(Model):
    """An alert destination (webhook or Slack); `url` shows its host only."""

    id: str
    object: Literal["alert"]
    type: Literal["webhook", "slack"]
    url: str
    events: list[str]
    thresholds: list[int]
    anomaly_factor: float
    created_at: datetime


class CreatedAlert(Alert):
    """A new alert destination with its signing `secret` (`whsec_kb_…`), shown only here."""

    secret: str = Field(repr=False)
    warnings: list[str]


class DeletedAlert(Alert):
    """A deleted alert destination."""

    deleted: Literal[True]


class Delivery(Model):
    """One alert delivery (one event to one destination) and where it stands."""

    id: str
    object: Literal["alert_delivery"]
    event_id: str
    alert_id: str
    type: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    response_status: int | None
    response_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    claimed_by: str | None
    delivered_at: datetime | None


class AuditRow(Model):
    """One proxied request, allowed or denied (docs/api.md, the audit row); money in USD `Decimal`."""

    object: Literal["audit_row"]
    id: str
    ts: datetime
    method: str
    path: str
    verdict: str
    key_id: str | None
    label: str | None
    agent_run_id: str | None
    triggering_event_id: str | None
    vendor: str | None
    credential: str | None
    endpoint: str | None
    error_code: str | None
    reason: str | None
    status: int | None
    upstream_status: int | None
    cost_usd: Decimal
    reserved_usd: Decimal
    cost_source: str
    cost_kind: str
    cap_usage_after_usd: Decimal | None
    customer_scope_id: str | None
    account_context: str | None
    vendor_request_id: str | None
    vendor_object_id: str | None
    idempotency_key: str | None
    dedup_of: str | None
    settled_by: str | None
    request_summary: dict[str, Any] | None
    body_hash: str | None
    redacted_fields: list[str] | None
    preflight_lookup: dict[str, Any] | None
    latency_ms: float | None
    upstream_latency_ms: float | None
    overhead_ms: float | None
    metadata: dict[str, Any] | None
    approval: dict[str, Any] | None = None  # how a hold for approval went (id, state, reasons, …); None: never held


class Approval(Model):
    """A call held for a person's decision (docs/approvals.md); `state` pending, approved, denied,
    expired or cancelled; money in USD `Decimal`."""

    id: str
    object: Literal["approval"]
    state: Literal["pending", "approved", "denied", "expired", "cancelled"]
    key_id: str
    label: str | None
    agent_run_id: str | None
    vendor: str
    method: str
    endpoint: str
    amount_usd: Decimal
    summary: dict[str, Any] | None
    reasons: list[str]
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    grant_run_usd: Decimal | None
    audit_id: str


class SpendGroup(Model):
    """One group of a spend report: USD `Decimal`s and counts (`group` None: unlabelled)."""

    group: str | None
    charged_usd: Decimal
    refunded_usd: Decimal
    gross_usd: Decimal
    net_usd: Decimal
    requests: int
    denied: int
    cap_hits: int


class Page(Model, Generic[T]):
    """One page of a list: `data`, and `next_cursor` (None on the last page)."""

    object: Literal["list"]
    data: list[T]
    next_cursor: str | None


class SpendReport(Page[SpendGroup]):
    """`GET /v1/spend`: every group in one page, with the `group_by` and `timezone` it was made with."""

    group_by: str
    timezone: str


class SelfView(Model):
    """What a vault key may read about itself (`GET {proxy}/_keybrake/self`)."""

    id: str
    object: Literal["vault_key"]
    vendor: str
    label: str | None
    status: str
    expires_at: datetime
    usage: dict[str, Usage]
    allowed_endpoints: list[str] | None
