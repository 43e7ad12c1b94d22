"""TEMPORARY stand-in for `keybrake_client` (delete once `client/` lands; see ../README.md).

Only the part of the real interface the recipes in examples/ use: `Keybrake(url, admin_token)`,
`kb.run(vendor=, run_id=, policy=, ttl=)` (issues a vault key with `metadata.agent_run_id`,
revokes it on exit), `run.stripe()`, `run.idempotency_key(step)`, `run.audit()` (rows oldest
first, attribute access, USD as Decimal), `run.spend()` (the key's spend group) and
`denial(exc)`. Not for use outside tests/examples.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace, TracebackType
from typing import Any

import httpx

# code: (kind, retryable), as docs/errors.md lists them (the codes the recipes can meet).
_CODES: dict[str, tuple[str, bool]] = {
    "key_revoked": ("revoked", False),
    "key_expired": ("expired", False),
    "endpoint_not_allowed": ("scope", False),
    "scope_violation": ("scope", False),
    "amount_over_limit": ("cap", False),
    "spend_cap_exceeded": ("cap", False),
    "request_cap_exceeded": ("cap", False),
    "idempotency_in_flight": ("transient", True),
    "upstream_unreachable": ("transient", True),
    "upstream_timeout": ("transient", True),
    "enforcement_unavailable": ("transient", True),
}


@dataclass(frozen=True)
class Denial:
    """A Keybrake refusal read from a vendor SDK exception."""

    code: str
    kind: str
    retryable: bool
    status: int
    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)


def denial(exc: BaseException) -> Denial | None:
    """The Keybrake denial a stripe.StripeError carries, else None."""
    body = getattr(exc, "json_body", None)
    if not isinstance(body, Mapping):
        return None
    kb = (body.get("error") or {}).get("keybrake")
    if not isinstance(kb, Mapping):
        return None
    code = str(kb.get("code"))
    kind, retryable = _CODES.get(code, ("invalid", False))
    return Denial(code, kind, retryable, int(getattr(exc, "http_status", 0) or 0), body["error"]["message"], kb)


def _money(row: dict[str, Any]) -> SimpleNamespace:
    for name in ("cost_usd", "reserved_usd", "charged_usd", "refunded_usd", "gross_usd", "net_usd"):
        if name in row and row[name] is not None:
            row[name] = Decimal(str(row[name]))
    return SimpleNamespace(**row)


class Run:
    """One run's vault key (`key.id`, `key.secret`)."""

    def __init__(self, kb: Keybrake, key: dict[str, Any], run_id: str, vendor: str) -> None:
        self._kb = kb
        self.key = SimpleNamespace(id=key["id"], secret=key["key"], created_at=key["created_at"])
        self.run_id = run_id
        self.vendor = vendor
        self.revoked = False

    def idempotency_key(self, step: str) -> str:
        return idempotency_key(self.run_id, step)

    def stripe(self, **kwargs: Any) -> Any:
        import stripe

        return stripe.StripeClient(self.key.secret, base_addresses={"api": f"{self._kb.proxy_url}/stripe"}, **kwargs)

    def audit(self) -> list[SimpleNamespace]:
        rows: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"key_id": self.key.id, "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = self._kb._get("/v1/audit", params)
            rows += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        return [_money(r) for r in reversed(rows)]

    def spend(self) -> SimpleNamespace:
        since = int(time.time()) - 86400
        page = self._kb._get("/v1/spend", {"group_by": "key", "since": since, "vendor": self.vendor})
        for group in page["data"]:
            if group["group"] == self.key.id:
                return _money(group)
        zero = Decimal(0)
        return SimpleNamespace(
            group=self.key.id, charged_usd=zero, refunded_usd=zero, gross_usd=zero, net_usd=zero,
            requests=0, denied=0, cap_hits=0,
        )  # fmt: skip


class _RunContext:
    def __init__(self, kb: Keybrake, body: dict[str, Any], run_id: str, vendor: str) -> None:
        self._kb, self._body, self._run_id, self._vendor = kb, body, run_id, vendor
        self._run: Run | None = None

    def __enter__(self) -> Run:
        r = self._kb._http.post("/v1/keys", json=self._body)
        r.raise_for_status()
        self._run = Run(self._kb, r.json(), self._run_id, self._vendor)
        return self._run

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._run is not None
        why = "run finished" if exc is None else f"run failed: {type(exc).__name__}"
        r = self._kb._http.delete(f"/v1/keys/{self._run.key.id}", params={"reason": f"{why} ({self._run_id})"})
        r.raise_for_status()
        self._run.revoked = True


class Keybrake:
    """The admin API at `url` with `admin_token`; the proxy at the same address."""

    def __init__(self, url: str, admin_token: str, *, timeout: float = 30.0) -> None:
        self.url = self.proxy_url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=timeout
        )

    def __enter__(self) -> Keybrake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        r = self._http.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def run(
        self,
        *,
        vendor: str,
        run_id: str,
        label: str | None = None,
        policy: Mapping[str, Any] | None = None,
        ttl: str = "1h",
        metadata: Mapping[str, str] | None = None,
    ) -> _RunContext:
        body = {
            "vendor": vendor,
            "label": label,
            "expires_in": ttl,
            "policy": dict(policy or {}),
            "metadata": {**(metadata or {}), "agent_run_id": run_id},
        }
        return _RunContext(self, {k: v for k, v in body.items() if v is not None}, run_id, vendor)


__all__ = ["Denial", "Keybrake", "Run", "denial"]


def idempotency_key(run_id: str, step: str) -> str:
    """`Idempotency-Key` for one step of a run (as the real client derives it)."""
    digest = hashlib.sha256(f"{len(run_id)}:{run_id}\0{step}".encode()).hexdigest()
    return f"kb_{digest[:48]}"


__all__ += ["idempotency_key"]
