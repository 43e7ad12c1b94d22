"""The records the store speaks in: keys, credentials, budgets, alert destinations and
deliveries, admin tokens, audit rows and the queries over them.

Money is in micro-USD (µUSD), times in Unix ms. The records of one reservation and its
settlement are in `reservations.py`; the interfaces that speak them are in `roles.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keybrake.core.caps import BUDGET_CAPS
from keybrake.core.windows import Window


@dataclass(frozen=True)
class KeyRecord:
    id: str
    vendor: str
    credential: str
    label: str | None
    metadata: dict[str, str]
    policy: dict[str, Any]
    policy_version: int
    status: str  # active | revoked (expired is derived from expires_at)
    created_at: int
    expires_at: int
    revoked_at: int | None
    revoke_reason: str | None
    issued_by: str | None
    # The generation of the credential row this key was issued against (`CredentialRecord.generation`):
    # the proxy resolves the secret by name AND generation, so a key never binds to a later
    # credential that merely reuses the name. Set by `issue_key` from the locked credential row.
    credential_gen: str = "g0"


class CredentialInUse(Exception):
    """A credential still has active keys and the delete was not asked to revoke them."""

    def __init__(self, active: int) -> None:
        super().__init__(f"{active} active keys")
        self.active = active


@dataclass(frozen=True)
class CredentialRecord:
    name: str
    vendor: str
    secret_enc: bytes
    secret_hint: str
    base_url: str | None
    livemode: bool | None
    created_at: int
    rotated_at: int | None
    generation: str = "g0"  # random per add (kept by rotation); "g0" for rows older than migration 0007


@dataclass(frozen=True)
class BudgetRecord:
    """A cap shared by every key its scope covers (docs/api.md, budgets). Money in micro-USD."""

    id: str
    name: str
    scope_kind: str  # label_prefix | vendor | credential | all
    scope_value: str | None
    daily_usd_cap: int | None
    monthly_usd_cap: int | None
    total_usd_cap: int | None
    daily_request_cap: int | None
    timezone: str
    created_at: int
    updated_at: int
    # Calls of a covered key estimated above this (µUSD) wait for a person (docs/approvals.md).
    approval_above_usd: int | None = None

    def covers(self, label: str | None, vendor: str, credential: str) -> bool:
        if self.scope_kind == "all":
            return True
        if self.scope_kind == "label_prefix":
            return label is not None and self.scope_value is not None and label.startswith(self.scope_value)
        if self.scope_kind == "vendor":
            return vendor == self.scope_value
        return credential == self.scope_value

    def caps(self, usd: int) -> list[CapSpec]:
        """The budget's counters a request reserves against (tracked even when uncapped)."""
        return [
            CapSpec(
                "budget",
                self.id,
                c.field,
                c.counter,
                c.window,
                getattr(self, c.field),
                usd if c.is_usd else 1,
                c.is_usd,
                self.timezone,
            )
            for c in BUDGET_CAPS
        ]


@dataclass(frozen=True)
class AlertDestination:
    id: str
    type: str  # webhook | slack
    url: str
    secret_enc: bytes
    events: tuple[str, ...]
    thresholds: tuple[int, ...]
    created_at: int
    anomaly_factor: str = "3"  # spend.anomaly: k × the trailing hourly baseline


@dataclass(frozen=True)
class Delivery:
    """One event for one destination, in the durable outbox."""

    id: str
    event_id: str
    destination_id: str
    event_type: str
    body: str
    created_at: int
    next_attempt_at: int
    attempts: int = 0
    state: str = "pending"  # pending | delivered | failed
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: int | None = None
    claimed_by: str | None = None  # the instance sending it now (docs/scale-out.md)
    lease_until: int | None = None  # Unix ms, database clock: the claim lapses then
    attempt_ids: str | None = None  # "att_… att_… ": the POSTs whose outcomes were written


@dataclass(frozen=True)
class CounterUsage:
    scope: str  # key:vk_… | budget:bud_…
    counter: str
    window_start: int
    used: int
    reserved: int
    limit: int


@dataclass(frozen=True)
class AdminTokenRecord:
    id: str
    scope: str
    label: str
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True)
class ConsoleSession:
    """A web console sign-in (docs/console.md): `id` cs_…; times in ms since the epoch."""

    id: str
    admin_token_id: str
    created_at: int
    expires_at: int
    ended_at: int | None


# A process whose lease (heartbeat) is older than this is dead (recovery, the SQLite copy).
LEASE_STALE_MS = 30_000


@dataclass(frozen=True)
class CapSpec:
    """One counter a request reserves against. `limit` None = tracked, not capped."""

    scope: str  # "key" | "budget"
    scope_id: str
    name: str  # policy field name, e.g. daily_usd_cap
    counter: str  # counter name, e.g. daily_usd
    window: Window
    limit: int | None
    amount: int
    is_usd: bool
    timezone: str = "UTC"  # where DAY and MONTH windows roll over


@dataclass
class AuditRow:
    """One row per proxied request; field names are the API's (docs/api.md, audit rows)."""

    id: str
    ts: int
    method: str
    path: str
    verdict: str
    key_id: str | None = None
    label: str | None = None
    agent_run_id: str | None = None
    triggering_event_id: str | None = None
    vendor: str | None = None
    credential: str | None = None
    endpoint: str | None = None
    error_code: str | None = None
    reason: str | None = None
    status: int | None = None
    upstream_status: int | None = None
    cost_usd: int = 0
    reserved_usd: int = 0
    cost_source: str = "none"
    cost_kind: str = "none"
    cap_usage_after_usd: int | None = None
    customer_scope_id: str | None = None
    account_context: str | None = None
    vendor_request_id: str | None = None
    vendor_object_id: str | None = None
    idempotency_key: str | None = None
    dedup_of: str | None = None
    settled_by: str | None = None
    request_summary: dict[str, Any] | None = None
    body_hash: str | None = None
    redacted_fields: list[str] | None = None
    preflight_lookup: dict[str, Any] | None = None
    latency_ms: float | None = None
    upstream_latency_ms: float | None = None
    overhead_ms: float | None = None
    metadata: dict[str, Any] | None = None
    # A call held for approval (docs/approvals.md): {"id", "state", "reasons", "expires_at",
    # then "decided_by", "decided_at", "reason", "waited_ms"}; None for every other call.
    approval: dict[str, Any] | None = None


AUDIT_FIELDS: tuple[str, ...] = tuple(AuditRow.__dataclass_fields__)


APPROVAL_STATES = ("pending", "approved", "denied", "expired", "cancelled")


@dataclass(frozen=True)
class ApprovalRecord:
    """One call held for a person's decision (docs/approvals.md). Money in µUSD, times Unix ms.

    `state`: pending, then exactly one of approved | denied | expired (no one decided in time) |
    cancelled (the key was revoked, the agent hung up, or the holding replica stopped).
    `run_scope`: what a grant for "the rest of this run" covers: `run:<agent_run_id>` when the
    key is bound to a run, else `key:<key id>`.
    """

    id: str
    audit_id: str
    key_id: str
    label: str | None
    agent_run_id: str | None
    vendor: str
    method: str
    endpoint: str
    amount_usd: int
    summary: dict[str, Any] | None
    reasons: tuple[str, ...]
    state: str
    created_at: int
    expires_at: int
    owner: str
    decided_at: int | None = None
    decided_by: str | None = None
    reason: str | None = None
    grant_usd: int | None = None

    @property
    def run_scope(self) -> str:
        return f"run:{self.agent_run_id}" if self.agent_run_id else f"key:{self.key_id}"


@dataclass(frozen=True)
class KeyWatch:
    """What a holder re-reads about a held call's key: status, expiry (Unix ms), policy version."""

    status: str
    expires_at: int
    policy_version: int


@dataclass(frozen=True)
class ApprovalQuery:
    state: str | None = None  # one of APPROVAL_STATES; "pending" lists only those not yet expired
    key_id: str | None = None
    before_id: str | None = None  # page: ids older than this (newest first)
    limit: int = 100


@dataclass(frozen=True)
class AuditQuery:
    key_id: str | None = None
    label_prefix: str | None = None
    agent_run_id: str | None = None
    triggering_event_id: str | None = None
    vendor: str | None = None
    verdict: str | None = None
    error_code: str | None = None
    customer_scope_id: str | None = None
    idempotency_key_prefix: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # key metadata, exact
    since: int | None = None
    until: int | None = None
    cursor: tuple[int, str] | None = None
    limit: int = 100
    after_id: str | None = None  # export: rows after this id, oldest first
    through_id: str | None = None  # export: rows up to this id (inclusive): one scan window
    ascending: bool = False


@dataclass(frozen=True)
class RunTotals:
    """What one agent run did (the console's run timeline): calls, outcomes, money in µUSD.

    `denied` counts `denied_*` and `cap_exceeded` rows; `charged` sums settled costs other than
    refunds, `refunded` the refunds; `first_ts`/`last_ts` are Unix ms (None without calls).
    """

    calls: int
    allowed: int
    denied: int
    charged: int
    refunded: int
    first_ts: int | None
    last_ts: int | None


@dataclass(frozen=True)
class RecentRun:
    """An agent run seen among the latest audit rows: its id and its latest call's time (Unix ms)."""

    agent_run_id: str
    last_ts: int


@dataclass(frozen=True)
class SpendRow:
    """Audit totals of one group (micro-USD): refunds apart from everything else (docs/api.md, alerts)."""

    group: str | int | None
    charged: int
    refunded: int
    requests: int
    denied: int
    cap_hits: int


SPEND_BUCKET_MS = 15 * 60_000  # time groups are summed per 15 minutes, then folded per time zone


@dataclass(frozen=True)
class KeyQuery:
    label_prefix: str | None = None
    label: str | None = None
    vendor: str | None = None
    credential: str | None = None
    status: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    cursor: tuple[int, str] | None = None
    limit: int = 100


@dataclass(frozen=True)
class CounterValue:
    used: int
    reserved: int
    window_start: int
