"""`Keybrake`: the synchronous client of Keybrake's admin API (docs/client.md)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel

from keybrake_client import models as m
from keybrake_client import ops
from keybrake_client.approvals import Approvals
from keybrake_client.run import RunContext, run_spec
from keybrake_client.transport import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    AdminBase,
    api_error,
    export_cut,
    request_kwargs,
    result,
    send,
)

M = TypeVar("M", bound=BaseModel)
Usd = Decimal | int | str


class Keybrake(AdminBase):
    """A client of Keybrake's admin API.

    `url`: where the admin API answers (e.g. `http://127.0.0.1:8080`, or the admin listener's
    `http://127.0.0.1:9090`); `admin_token`: an admin token (never a vault key); `proxy_url`:
    where agents reach the proxy (default `url`, the single-listener layout); `timeout`: seconds
    per attempt; `retries`: how many times an idempotent call (GET, revoke of one key, issue
    with its Idempotency-Key) is sent again after a connection error or a 502/503/504. Errors:
    `KeybrakeAPIError` (`.status`, `.code`, `.message`, `.field`) for an error answer,
    `KeybrakeConnectionError` when Keybrake cannot be reached. Use as a context manager or
    call `close()`.
    """

    def __init__(
        self,
        url: str,
        admin_token: str,
        *,
        proxy_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, admin_token, proxy_url, timeout, retries)
        self._http = httpx.Client(**self._http_settings, transport=transport)
        self.approvals = Approvals(self)  # calls held for a person's decision

    def __enter__(self) -> Keybrake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def call(self, op: ops.Op[M]) -> M:
        """Run one `Op` (see `keybrake_client.ops`) and return its typed answer."""
        return result(op, send(self._http, op, self.retries))

    # -- keys ------------------------------------------------------------------------------

    def issue_key(
        self,
        vendor: str,
        *,
        policy: Mapping[str, Any] | None = None,
        label: str | None = None,
        credential: str | None = None,
        expires_in: str | int | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> m.IssuedKey:
        """Issue a vault key (`POST /v1/keys`); `.key` is the token, shown only in this answer.

        `policy`: docs/policy.md (USD as Decimal, int or decimal string); `expires_in`: seconds or
        "8h"-style. Retried safely: the call carries an Idempotency-Key."""
        op = ops.issue_key(
            vendor,
            policy=policy,
            label=label,
            credential=credential,
            expires_in=expires_in,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        return self.call(op)

    def get_key(self, key_id: str) -> m.Key:
        """One key with its current usage (`GET /v1/keys/{key_id}`)."""
        return self.call(ops.get_key(key_id))

    def list_keys(self, **filters: Any) -> m.Page[m.Key]:
        """One page of keys, newest first. Filters: `label_prefix`, `label`, `vendor`,
        `credential`, `status` ("active" | "revoked" | "expired"), `metadata` ({k: v}), `limit`,
        `cursor`."""
        return self.call(ops.list_keys(**filters))

    def iter_keys(self, *, page_size: int = 100, **filters: Any) -> Iterator[m.Key]:
        """Every key matching `filters` (as `list_keys`), newest first, all pages of `page_size` (1-1000)."""
        cursor = None
        while True:
            page = self.list_keys(**filters, limit=page_size, cursor=cursor)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def update_key(self, key_id: str, **patch: Any) -> m.UpdatedKey:
        """Merge-patch a key (`label`, `metadata`, `policy`, `expires_in`, `expires_at`; None removes)."""
        return self.call(ops.update_key(key_id, patch))

    def revoke_key(self, key_id: str, reason: str | None = None) -> m.Key:
        """Revoke a key (effective on its next request); revoking again changes nothing."""
        return self.call(ops.revoke_key(key_id, reason))

    def revoke_keys(
        self,
        *,
        label_prefix: str | None = None,
        vendor: str | None = None,
        credential: str | None = None,
        all: bool = False,
        reason: str | None = None,
    ) -> m.Revocation:
        """The kill switch: revoke every active key matching all the filters (or `all=True`)."""
        return self.call(
            ops.bulk_revoke(label_prefix=label_prefix, vendor=vendor, credential=credential, all=all, reason=reason)
        )

    # -- credentials -----------------------------------------------------------------------

    def add_credential(self, vendor: str, name: str, secret: Any, *, base_url: str | None = None) -> m.Credential:
        """Store a vendor secret (a string, or Twilio's {"account_sid", "auth_token"}); never returned."""
        return self.call(ops.add_credential(vendor, name, secret, base_url))

    def list_credentials(self) -> list[m.Credential]:
        """Every credential."""
        return self.call(ops.list_credentials()).data

    def get_credential(self, name: str) -> m.Credential:
        """One credential by name."""
        return self.call(ops.get_credential(name))

    def rotate_credential(self, name: str, secret: Any, *, base_url: str | None = None) -> m.Credential:
        """Replace a credential's secret (and optionally its base URL)."""
        return self.call(ops.rotate_credential(name, secret, base_url))

    def delete_credential(self, name: str, *, revoke_keys: bool = False) -> m.DeletedCredential:
        """Delete a credential (409 `conflict` while keys use it, unless `revoke_keys`)."""
        return self.call(ops.delete_credential(name, revoke_keys))

    # -- audit, spend ----------------------------------------------------------------------

    def query_audit(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        metadata: Mapping[str, str] | None = None,
        **filters: Any,
    ) -> m.Page[m.AuditRow]:
        """One page of audit rows, newest first. Filters: `key_id`, `agent_run_id`, `verdict`,
        `error_code`, `label_prefix`, `since`, `until` (datetime, RFC 3339 or Unix seconds), …"""
        return self.call(ops.audit_query(filters, metadata, limit, cursor))

    def iter_audit(
        self, *, metadata: Mapping[str, str] | None = None, page_size: int = 1000, **filters: Any
    ) -> Iterator[m.AuditRow]:
        """Every audit row matching the filters (as `query_audit`), newest first, all pages of
        `page_size` rows (1-1000)."""
        cursor = None
        while True:
            page = self.query_audit(limit=page_size, cursor=cursor, metadata=metadata, **filters)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get_audit(self, row_id: str) -> m.AuditRow:
        """One audit row (`kbr_…`)."""
        return self.call(ops.audit_get(row_id))

    def export_audit(
        self, format: Literal["csv", "jsonl"] = "jsonl", *, metadata: Mapping[str, str] | None = None, **filters: Any
    ) -> Iterator[bytes]:
        """Stream every matching row, oldest first, as CSV or JSON lines (chunks of bytes).

        A cut export (the server failed mid-way) raises `KeybrakeConnectionError`: the export is
        complete only when the iterator ends without an error."""
        op = ops.audit_export(format, filters, metadata)
        try:
            with self._http.stream(op.method, op.url(), **request_kwargs(op)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise api_error(resp)
                yield from resp.iter_bytes()
        except httpx.TransportError as exc:
            raise export_cut(exc) from exc

    def spend(
        self,
        since: str | int | datetime,
        until: str | int | datetime | None = None,
        *,
        group_by: str = "key",
        label_prefix: str | None = None,
        vendor: str | None = None,
        timezone: str | None = None,
    ) -> m.SpendReport:
        """Spend per group (`key`, `label:N`, `vendor`, `day`, `hour`) from `since` (≤ 366 days)."""
        op = ops.spend(
            since=since, until=until, group_by=group_by, label_prefix=label_prefix, vendor=vendor, timezone=timezone
        )
        return self.call(op)

    # -- budgets, alerts -------------------------------------------------------------------

    def create_budget(self, name: str, scope: Mapping[str, str] | Literal["all"], **caps: Any) -> m.CreatedBudget:
        """Create a budget over `scope` with caps (`daily_usd_cap`, `monthly_usd_cap`,
        `total_usd_cap`, `daily_request_cap`) and optionally `timezone`."""
        return self.call(ops.create_budget({"name": name, "scope": scope, **caps}))

    def list_budgets(self) -> list[m.Budget]:
        """Every budget with its usage."""
        return self.call(ops.list_budgets()).data

    def get_budget(self, budget_id: str) -> m.Budget:
        """One budget (`bud_…`)."""
        return self.call(ops.get_budget(budget_id))

    def update_budget(self, budget_id: str, **patch: Any) -> m.Budget:
        """Merge-patch a budget (`name`, caps, `timezone`; None removes a cap)."""
        return self.call(ops.update_budget(budget_id, patch))

    def delete_budget(self, budget_id: str) -> m.DeletedBudget:
        """Delete a budget."""
        return self.call(ops.delete_budget(budget_id))

    def create_alert(self, type: Literal["webhook", "slack"], url: str, **fields: Any) -> m.CreatedAlert:
        """Add an alert destination (`events`, `thresholds`, `anomaly_factor`); `.secret` shown once."""
        return self.call(ops.create_alert({"type": type, "url": url, **fields}))

    def list_alerts(self) -> list[m.Alert]:
        """Every alert destination."""
        return self.call(ops.list_alerts()).data

    def delete_alert(self, alert_id: str) -> m.DeletedAlert:
        """Delete an alert destination."""
        return self.call(ops.delete_alert(alert_id))

    def list_deliveries(
        self, *, state: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> m.Page[m.Delivery]:
        """One page of alert deliveries, newest first (`state`: pending, delivered, failed)."""
        return self.call(ops.list_deliveries(state, limit, cursor))

    # -- per-run keys ----------------------------------------------------------------------

    def run(
        self,
        *,
        vendor: str,
        run_id: str,
        label: str | None = None,
        policy: Mapping[str, Any] | None = None,
        ttl: str | int = "1h",
        credential: str | None = None,
        metadata: Mapping[str, str] | None = None,
        **caps: Any,
    ) -> RunContext:
        """A context manager issuing a vault key for one agent run and revoking it on exit.

        The key gets `metadata.agent_run_id = run_id`, the `policy` (or keyword caps such as
        `daily_usd_cap=25`, `allowed_endpoints=[...]`; not both for one field) and expires after
        `ttl`. `with kb.run(...) as run:` yields a `Run` (`run.key.secret`, `run.stripe()`, …);
        the key is revoked when the block ends, raises, or is interrupted (KeyboardInterrupt)."""
        spec = run_spec(vendor, run_id, label, policy, ttl, credential, metadata, caps)
        return RunContext(self, spec)
