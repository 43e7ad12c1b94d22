"""Every admin API call the client makes, as data: method, path, query, body, answer model.

`Keybrake` and `AsyncKeybrake` run these same `Op`s, so both speak exactly one description of the
API, and `tests/client/test_openapi_drift.py` checks each against the server's `/openapi.json`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from keybrake_client import models as m

M = TypeVar("M", bound=BaseModel)

# The audit filters of `GET /v1/audit` and `GET /v1/audit/export` (besides `metadata`, since, until).
AUDIT_FILTERS = (
    "key_id",
    "label_prefix",
    "agent_run_id",
    "triggering_event_id",
    "vendor",
    "verdict",
    "error_code",
    "customer_scope_id",
    "idempotency_key_prefix",
)


@dataclass(frozen=True)
class Op(Generic[M]):
    """One admin API request. `path` is the template as in OpenAPI (`/v1/keys/{key_id}`) with
    `path_params` filling it; `idempotent`: safe to send again after a lost answer (retried)."""

    method: str
    path: str
    model: type[M] | None
    path_params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotent: bool = False

    def url(self) -> str:
        """The path with its parameters filled in, each percent-encoded as one segment."""
        return self.path.format(**{k: quote(v, safe="") for k, v in self.path_params.items()})


def _text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name}: a datetime needs a timezone (e.g. datetime.now(timezone.utc))")
        return value.isoformat()
    if isinstance(value, int | str):
        return str(value)
    raise TypeError(f"{name}: expected str, int, bool or datetime, got {type(value).__name__}")


def query(metadata: Mapping[str, str] | None = None, **params: Any) -> dict[str, str]:
    """Query parameters without the unset (None) ones; `metadata={"k": "v"}` → `metadata.k=v`."""
    out = {name: _text(name, v) for name, v in params.items() if v is not None}
    for k, v in (metadata or {}).items():
        out[f"metadata.{k}"] = _text(f"metadata.{k}", v)
    return out


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _money(value: Any) -> Any:
    """USD as the API takes it: a Decimal is sent as its exact decimal string."""
    from decimal import Decimal

    return str(value) if isinstance(value, Decimal) else value


# -- keys -------------------------------------------------------------------------------------


def issue_key(
    vendor: str,
    *,
    policy: Mapping[str, Any] | None,
    label: str | None,
    credential: str | None,
    expires_in: str | int | None,
    metadata: Mapping[str, str] | None,
    idempotency_key: str | None,
) -> Op[m.IssuedKey]:
    """`POST /v1/keys`. Sent with an `Idempotency-Key` (a random one unless given): the server answers
    a repeat with the same key, so the call is retried safely."""
    pol = {k: _money(v) for k, v in (policy or {}).items()}
    body = _body(vendor=vendor, label=label, credential=credential, expires_in=expires_in, metadata=metadata)
    body["policy"] = pol
    key = idempotency_key or f"kbc-{uuid.uuid4()}"
    return Op("POST", "/v1/keys", m.IssuedKey, body=body, headers={"Idempotency-Key": key}, idempotent=True)


def get_key(key_id: str) -> Op[m.Key]:
    """`GET /v1/keys/{key_id}`."""
    return Op("GET", "/v1/keys/{key_id}", m.Key, {"key_id": key_id}, idempotent=True)


def list_keys(
    *,
    label_prefix: str | None = None,
    label: str | None = None,
    vendor: str | None = None,
    credential: str | None = None,
    status: str | None = None,
    metadata: Mapping[str, str] | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Op[m.Page[m.Key]]:
    """`GET /v1/keys`: one page, newest first."""
    q = query(
        metadata,
        label_prefix=label_prefix,
        label=label,
        vendor=vendor,
        credential=credential,
        status=status,
        limit=limit,
        cursor=cursor,
    )
    return Op("GET", "/v1/keys", m.Page[m.Key], query=q, idempotent=True)


def update_key(key_id: str, patch: Mapping[str, Any]) -> Op[m.UpdatedKey]:
    """`PATCH /v1/keys/{key_id}`: a JSON merge patch over label, metadata, policy, expires_in/at."""
    allowed = {"label", "metadata", "policy", "expires_in", "expires_at"}
    unknown = sorted(set(patch) - allowed)
    if unknown:
        raise ValueError(f"update_key: {', '.join(unknown)} cannot be patched (only {', '.join(sorted(allowed))})")
    body = dict(patch)
    if isinstance(body.get("policy"), Mapping):
        body["policy"] = {k: _money(v) for k, v in body["policy"].items()}
    return Op("PATCH", "/v1/keys/{key_id}", m.UpdatedKey, {"key_id": key_id}, body=body)


def revoke_key(key_id: str, reason: str | None) -> Op[m.Key]:
    """`DELETE /v1/keys/{key_id}`: revoking a revoked key changes nothing, so it is retried. The
    reason goes in the body: in the query it would count against the server's request-line and
    header limit (KEYBRAKE_MAX_HEADER_BYTES), and a long reason must never keep a key alive."""
    body = None if reason is None else {"reason": reason}
    return Op("DELETE", "/v1/keys/{key_id}", m.Key, {"key_id": key_id}, body=body, idempotent=True)


def bulk_revoke(
    *,
    label_prefix: str | None,
    vendor: str | None,
    credential: str | None,
    all: bool,
    reason: str | None,
) -> Op[m.Revocation]:
    """`POST /v1/keys/revoke`. Not retried: sent again later it would also revoke keys issued since."""
    body = _body(label_prefix=label_prefix, vendor=vendor, credential=credential, reason=reason)
    if all:
        body["all"] = True
    if not body.keys() - {"reason"}:
        raise ValueError("bulk_revoke: give label_prefix, vendor, credential, or all=True")
    return Op("POST", "/v1/keys/revoke", m.Revocation, body=body)


# -- credentials --------------------------------------------------------------------------------


def add_credential(vendor: str, name: str, secret: Any, base_url: str | None) -> Op[m.Credential]:
    """`POST /v1/credentials` (the secret is sent once, never returned)."""
    body = _body(vendor=vendor, name=name, secret=secret, base_url=base_url)
    return Op("POST", "/v1/credentials", m.Credential, body=body)


def list_credentials() -> Op[m.Page[m.Credential]]:
    """`GET /v1/credentials`: all in one page."""
    return Op("GET", "/v1/credentials", m.Page[m.Credential], idempotent=True)


def get_credential(name: str) -> Op[m.Credential]:
    """`GET /v1/credentials/{name}`."""
    return Op("GET", "/v1/credentials/{name}", m.Credential, {"name": name}, idempotent=True)


def rotate_credential(name: str, secret: Any, base_url: str | None) -> Op[m.Credential]:
    """`POST /v1/credentials/{name}/rotate`."""
    body = _body(secret=secret, base_url=base_url)
    return Op("POST", "/v1/credentials/{name}/rotate", m.Credential, {"name": name}, body=body)


def delete_credential(name: str, revoke_keys: bool) -> Op[m.DeletedCredential]:
    """`DELETE /v1/credentials/{name}` (`revoke_keys`: revoke the keys using it too)."""
    q = query(revoke_keys=revoke_keys)
    return Op("DELETE", "/v1/credentials/{name}", m.DeletedCredential, {"name": name}, query=q)


# -- audit, spend -------------------------------------------------------------------------------


def audit_query(
    filters: Mapping[str, Any], metadata: Mapping[str, str] | None, limit: int | None, cursor: str | None
) -> Op[m.Page[m.AuditRow]]:
    """`GET /v1/audit`: one page, newest first."""
    _check_filters(filters)
    q = query(metadata, **filters, limit=limit, cursor=cursor)
    return Op("GET", "/v1/audit", m.Page[m.AuditRow], query=q, idempotent=True)


def audit_get(row_id: str) -> Op[m.AuditRow]:
    """`GET /v1/audit/{row_id}`."""
    return Op("GET", "/v1/audit/{row_id}", m.AuditRow, {"row_id": row_id}, idempotent=True)


def audit_export(fmt: str, filters: Mapping[str, Any], metadata: Mapping[str, str] | None) -> Op[BaseModel]:
    """`GET /v1/audit/export?format=csv|jsonl`: streamed, oldest first (no model: bytes)."""
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"format must be 'csv' or 'jsonl', not {fmt!r}")
    _check_filters(filters)
    q = query(metadata, format=fmt, **filters)
    return Op("GET", "/v1/audit/export", None, query=q, idempotent=True)


def _check_filters(filters: Mapping[str, Any]) -> None:
    unknown = sorted(set(filters) - {*AUDIT_FILTERS, "since", "until"})
    if unknown:
        raise ValueError(f"unknown audit filter {', '.join(unknown)} (known: {', '.join(AUDIT_FILTERS)}, since, until)")


def spend(
    *,
    since: str | int | datetime,
    until: str | int | datetime | None,
    group_by: str,
    label_prefix: str | None,
    vendor: str | None,
    timezone: str | None,
) -> Op[m.SpendReport]:
    """`GET /v1/spend` (`since` required; at most 366 days)."""
    q = query(group_by=group_by, since=since, until=until, label_prefix=label_prefix, vendor=vendor, timezone=timezone)
    return Op("GET", "/v1/spend", m.SpendReport, query=q, idempotent=True)


# -- budgets, alerts ----------------------------------------------------------------------------


def create_budget(body: Mapping[str, Any]) -> Op[m.CreatedBudget]:
    """`POST /v1/budgets`."""
    return Op("POST", "/v1/budgets", m.CreatedBudget, body={k: _money(v) for k, v in body.items()})


def list_budgets() -> Op[m.Page[m.Budget]]:
    """`GET /v1/budgets`."""
    return Op("GET", "/v1/budgets", m.Page[m.Budget], idempotent=True)


def get_budget(budget_id: str) -> Op[m.Budget]:
    """`GET /v1/budgets/{budget_id}`."""
    return Op("GET", "/v1/budgets/{budget_id}", m.Budget, {"budget_id": budget_id}, idempotent=True)


def update_budget(budget_id: str, patch: Mapping[str, Any]) -> Op[m.Budget]:
    """`PATCH /v1/budgets/{budget_id}` (merge patch over name, caps, timezone)."""
    body = {k: _money(v) for k, v in patch.items()}
    return Op("PATCH", "/v1/budgets/{budget_id}", m.Budget, {"budget_id": budget_id}, body=body)


def delete_budget(budget_id: str) -> Op[m.DeletedBudget]:
    """`DELETE /v1/budgets/{budget_id}`."""
    return Op("DELETE", "/v1/budgets/{budget_id}", m.DeletedBudget, {"budget_id": budget_id})


def create_alert(body: Mapping[str, Any]) -> Op[m.CreatedAlert]:
    """`POST /v1/alerts`."""
    return Op("POST", "/v1/alerts", m.CreatedAlert, body=dict(body))


def list_alerts() -> Op[m.Page[m.Alert]]:
    """`GET /v1/alerts`."""
    return Op("GET", "/v1/alerts", m.Page[m.Alert], idempotent=True)


def delete_alert(alert_id: str) -> Op[m.DeletedAlert]:
    """`DELETE /v1/alerts/{alert_id}`."""
    return Op("DELETE", "/v1/alerts/{alert_id}", m.DeletedAlert, {"alert_id": alert_id})


def list_deliveries(state: str | None, limit: int | None, cursor: str | None) -> Op[m.Page[m.Delivery]]:
    """`GET /v1/alerts/deliveries`: one page, newest first."""
    q = query(state=state, limit=limit, cursor=cursor)
    return Op("GET", "/v1/alerts/deliveries", m.Page[m.Delivery], query=q, idempotent=True)


# -- approvals ----------------------------------------------------------------------------------


def list_approvals(
    state: str | None, key_id: str | None, limit: int | None, cursor: str | None
) -> Op[m.Page[m.Approval]]:
    """`GET /v1/approvals`: one page, newest first."""
    q = query(state=state, key_id=key_id, limit=limit, cursor=cursor)
    return Op("GET", "/v1/approvals", m.Page[m.Approval], query=q, idempotent=True)


def get_approval(approval_id: str) -> Op[m.Approval]:
    """`GET /v1/approvals/{approval_id}`."""
    return Op("GET", "/v1/approvals/{approval_id}", m.Approval, {"approval_id": approval_id}, idempotent=True)


def approve_approval(approval_id: str, reason: str | None, grant_run_usd: Any) -> Op[m.Approval]:
    """`POST /v1/approvals/{approval_id}/approve`. Sent once: a decision is never repeated blindly
    (after a lost answer, read the approval to learn whether it was taken)."""
    body = _body(reason=reason, grant_run_usd=_money(grant_run_usd))
    return Op("POST", "/v1/approvals/{approval_id}/approve", m.Approval, {"approval_id": approval_id}, body=body)


def deny_approval(approval_id: str, reason: str) -> Op[m.Approval]:
    """`POST /v1/approvals/{approval_id}/deny` (a reason is required). Sent once, like an approval."""
    body = {"reason": reason}
    return Op("POST", "/v1/approvals/{approval_id}/deny", m.Approval, {"approval_id": approval_id}, body=body)
