"""What the admin API answers, as pydantic models: the OpenAPI description of the wire (docs/api.md).

These models document; they do not render. Each route builds its answer as today (`keys.render`,
`credentials.render`, …) and returns it as `KJSON`, which FastAPI sends as it is: no answer is
validated or re-serialised on the way out, so a large list costs nothing extra and money stays
exact. tests/admin/test_openapi.py checks real answers against these models' JSON schemas.

Money is a JSON number in US dollars, exact, at most 6 decimals (`Usd`); timestamps are RFC 3339
UTC strings with milliseconds. A field that is "absent unless …" is not required and has no null.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from keybrake.admin.models import BudgetPatchIn
from keybrake.admin.policy import PolicyBase

T = TypeVar("T")

Usd = Annotated[
    Decimal,
    WithJsonSchema({"type": "number", "description": "US dollars, exact, at most 6 decimals (25.5, 0.0067)"}),
]
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "description": "RFC 3339 UTC with milliseconds"})]


class Out(BaseModel):
    """Base of the answer models: fields in wire order; no field the wire lacks."""

    model_config = ConfigDict(extra="forbid")


# -- shared -----------------------------------------------------------------------------------


class ErrorDetail(Out):
    type: Literal["keybrake_error"]
    code: str = Field(description="one code per status, see docs/api.md (errors)")
    message: str
    field: str | None = Field(description="dotted path of the first offending field or query parameter")


class ErrorBody(Out):
    """Every admin error: `{"error": {"type": "keybrake_error", "code", "message", "field"}}`."""

    error: ErrorDetail


class Page(Out, Generic[T]):
    """The one list envelope: newest first; pass `next_cursor` back as `cursor`; null on the last page."""

    object: Literal["list"]
    data: list[T]
    next_cursor: str | None


class Usage(Out):
    """One cap's counter in its current window; money caps in USD, request caps in requests."""

    limit: Usd | int
    used: Usd | int
    reserved: Usd | int
    resets_at: Timestamp | None = Field(description="null for a window that never resets (total)")


# -- keys -------------------------------------------------------------------------------------


class Key(Out):
    """A vault key (docs/api.md, the key object); the token itself is shown only at issuance."""

    id: str
    object: Literal["vault_key"]
    vendor: str
    credential: str
    credential_generation: str
    label: str | None
    metadata: dict[str, str]
    status: Literal["active", "revoked", "expired"]
    created_at: Timestamp
    expires_at: Timestamp
    revoked_at: Timestamp | None
    revoke_reason: str | None
    issued_by: str | None
    policy: BaseModel  # typed per set of vendors: `key_models.KeyModels.key` (every policy field)
    usage: dict[str, Usage] = Field(description="per counter (daily_usd, total_usd, hourly_requests, …) of a set cap")
    spent_usd: Usd


class IssuedKey(Key):
    key: str = Field(description="the vault key token, shown once")
    vault_key: str = Field(description="the same token (the hosted product's name)")
    warnings: list[str]


class UpdatedKey(Key):
    """A key after PATCH /v1/keys/{id}, with the warnings issuance gives for the policy it now has
    (no USD cap, no allowed_endpoints)."""

    warnings: list[str]


class Revocation(Out):
    object: Literal["revocation"]
    revoked: int
    revoked_at: Timestamp


# -- credentials ------------------------------------------------------------------------------


class Credential(Out):
    """A vendor credential; the secret is never returned, only its hint."""

    object: Literal["credential"]
    name: str
    vendor: str
    generation: str
    base_url: str | None
    created_at: Timestamp
    rotated_at: Timestamp | None
    secret_hint: str
    livemode: bool | None
    active_keys: int


class DeletedCredential(Credential):
    revoked_keys: int
    deleted: Literal[True]


# -- budgets ----------------------------------------------------------------------------------


class LabelPrefixScope(Out):
    label_prefix: str


class VendorScope(Out):
    vendor: str


class CredentialScope(Out):
    credential: str


class Budget(Out):
    """A budget (docs/api.md, budgets): caps shared by every key its scope covers."""

    id: str
    object: Literal["budget"]
    name: str
    scope: LabelPrefixScope | VendorScope | CredentialScope | Literal["all"]
    timezone: str
    created_at: Timestamp
    updated_at: Timestamp
    usage: dict[str, Usage]
    daily_usd_cap: Usd | None
    monthly_usd_cap: Usd | None
    total_usd_cap: Usd | None
    daily_request_cap: int | None
    approval_above_usd: Usd | None = Field(
        description="calls of a covered key estimated above this wait for a person (docs/approvals.md)"
    )


class CreatedBudget(Budget):
    warnings: list[str] = Field(default_factory=list, description="absent unless the scope names no credential")


class DeletedBudget(Budget):
    deleted: Literal[True]


# -- alerts -----------------------------------------------------------------------------------


class Alert(Out):
    """An alert destination; its URL shows the host only."""

    id: str
    object: Literal["alert"]
    type: Literal["webhook", "slack"]
    url: str
    events: list[str]
    thresholds: list[int]
    anomaly_factor: float
    created_at: Timestamp


class CreatedAlert(Alert):
    secret: str = Field(description="the signing secret, shown once")
    warnings: list[str]


class DeletedAlert(Alert):
    deleted: Literal[True]


class Delivery(Out):
    """One alert event's delivery to one destination."""

    id: str
    object: Literal["alert_delivery"]
    event_id: str
    alert_id: str
    type: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    response_status: int | None
    response_error: str | None
    created_at: Timestamp
    next_attempt_at: Timestamp | None
    claimed_by: str | None
    delivered_at: Timestamp | None


# -- approvals --------------------------------------------------------------------------------


class Approval(Out):
    """A call held for a person's decision (docs/approvals.md)."""

    id: str
    object: Literal["approval"]
    state: Literal["pending", "approved", "denied", "expired", "cancelled"] = Field(
        description="a pending approval past `expires_at` is `expired` (it can no longer be decided)"
    )
    key_id: str
    label: str | None
    agent_run_id: str | None
    vendor: str
    method: str
    endpoint: str
    amount_usd: Usd = Field(description="the call's estimate")
    summary: dict[str, Any] | None = Field(description="what the call does, as the audit row's request_summary")
    reasons: list[str] = Field(description="why it needs approval")
    created_at: Timestamp
    expires_at: Timestamp = Field(description="when the hold ends (`approval_timeout`) unless decided")
    decided_at: Timestamp | None
    decided_by: str | None = Field(
        description="the admin token id (adm_…), `console:adm_…` (web console), `cli:<user>`, `slack-link` or keybrake"
    )
    reason: str | None
    grant_run_usd: Usd | None = Field(description="what the approval granted the rest of the run")
    audit_id: str


class AuditApproval(Out):
    """An audit row's hold for approval: how it went (docs/approvals.md)."""

    id: str = Field(default="", description="the approval (apr_…); absent when a run's grant let the call go")
    state: Literal["awaiting_approval", "approved", "denied", "expired", "cancelled"]
    reasons: list[str]
    expires_at: Timestamp = Field(default="", description="when the hold ends; absent when a grant let it go")
    decided_by: str | None = Field(
        default=None, description="absent until decided; `grant:apr_…` when the run's grant by that approval let it go"
    )
    decided_at: Timestamp | None = Field(default=None, description="absent until decided")
    reason: str | None = Field(default=None, description="absent until decided")
    waited_ms: int | None = Field(default=None, description="how long the call was held; absent unless known")
    grant_usd: Usd | None = Field(default=None, description="absent unless the approval granted the rest of the run")


# -- audit ------------------------------------------------------------------------------------


class AuditRow(Out):
    """One proxied request (docs/api.md, the audit row); field names are the store's columns."""

    object: Literal["audit_row"]
    id: str
    ts: Timestamp
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
    cost_usd: Usd
    reserved_usd: Usd
    cost_source: str
    cost_kind: str
    cap_usage_after_usd: Usd | None
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
    approval: AuditApproval | None = Field(description="null unless the call was held for approval")


# -- spend ------------------------------------------------------------------------------------


class SpendGroup(Out):
    group: str | None = Field(description="key id, label prefix, vendor, local day or hour; null when unlabelled")
    charged_usd: Usd
    refunded_usd: Usd
    gross_usd: Usd
    net_usd: Usd
    requests: int
    denied: int
    cap_hits: int


class SpendReport(Page[SpendGroup]):
    """The page envelope plus the grouping it answers; always one page (`next_cursor` null)."""

    group_by: str
    timezone: str


# -- health -----------------------------------------------------------------------------------


class Health(Out):
    status: Literal["ok"]


class Ready(Out):
    status: Literal["ready", "unavailable"]
    reason: str = Field(default_factory=str, description="why not; absent when ready")


# -- request bodies the routes read themselves (merge patches, optional bodies) ---------------


class KeyMergePatch(Out):
    """PATCH /v1/keys/{id}: a JSON merge patch (RFC 7396); `null` removes a field or a policy entry.

    `vendor` and `credential` cannot change. The merged key is validated as a whole (422 naming
    the field).
    """

    label: str | None = None
    metadata: dict[str, str | None] | None = None
    policy: PolicyBase | None = None  # typed per set of vendors: `key_models.KeyModels.key_merge_patch`
    expires_in: int | str | None = Field(default=None, description="seconds, or a duration such as '8h'")
    expires_at: str | None = Field(default=None, description="RFC 3339")


def _merge_patch_of(model: type[BaseModel], name: str, doc: str) -> type[BaseModel]:
    """`model` with every field optional and nullable (a JSON merge patch of it, RFC 7396)."""
    fields: dict[str, Any] = {}
    for field_name, field in model.model_fields.items():
        annotation: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        fields[field_name] = (annotation | None, Field(default=None, description=field.description))
    return create_model(name, __base__=Out, __doc__=doc, **fields)


BudgetMergePatch = _merge_patch_of(
    BudgetPatchIn,
    "BudgetMergePatch",
    "PATCH /v1/budgets/{id}: a JSON merge patch; `null` removes a cap; `scope` cannot change.",
)


class RevokeBody(Out):
    """DELETE /v1/keys/{id}'s optional body (or `?reason=`)."""

    reason: str | None = Field(default=None, max_length=500)


# Models only named by `openapi_extra` (bodies read by the route), added to the components after
# the app's `KeyMergePatch` (`key_models.KeyModels.extra_models`).
EXTRA_MODELS: tuple[type[BaseModel], ...] = (BudgetMergePatch, RevokeBody)
