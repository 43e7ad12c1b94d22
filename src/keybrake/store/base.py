"""The store interface every engine implements, and the records it speaks in.

The proxy needs three things from a store, each one atomic transaction:
`reserve` (check the key's state and every cap, reserve, write the in-flight audit row),
`settle` (move a reservation to what the call cost and complete the row) and
`insert_audit` (a denial). Everything else serves the admin API and CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from keybrake.core.caps import BUDGET_CAPS, SEND_COUNTERS
from keybrake.core.errors import CapHit
from keybrake.core.ledger import LedgerEntry, ObjectCount
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


@dataclass(frozen=True)
class ReservedItem:
    counter_scope: str  # e.g. key:vk_…
    counter: str
    window_start: int
    amount: int
    is_usd: bool

    def settled_amount(self, settlement: Settlement) -> int:
        """What this counter finally counts once `settlement` is known (its reservation is released)."""
        if self.is_usd:
            return settlement.cost_usd
        if self.counter in SEND_COUNTERS:
            return self.amount if settlement.billed else 0
        return self.amount if settlement.forwarded else 0

    def as_json(self) -> list[Any]:
        return [self.counter_scope, self.counter, self.window_start, self.amount, self.is_usd]

    @classmethod
    def from_json(cls, v: list[Any]) -> ReservedItem:
        return cls(v[0], v[1], int(v[2]), int(v[3]), bool(v[4]))


@dataclass(frozen=True)
class PendingEstimate:
    """An allowed row whose reservation waits for the vendor's final word (reconciliation)."""

    id: str
    ts: int
    key_id: str | None
    vendor: str | None
    credential: str | None
    vendor_object_id: str
    account_context: str | None
    reserved_usd: int
    cost_kind: str
    # The generation of the credential the row's key was bound to (None: no such key). The
    # reconciler sends only with that generation's secret, never with a later credential of the name.
    credential_gen: str | None = None


@dataclass(frozen=True)
class ObjectGuard:
    """A write on a vendor object: one may be in flight per object, and it goes only if the facts
    it was priced from are still the ledger's (else another write changed them meanwhile)."""

    object_ref: str
    fact: LedgerEntry | None
    priced_from_fact: bool = False  # the request's price or scope came from `fact`: it must be current


@dataclass(frozen=True)
class RetryCheck:
    """Look for an earlier forwarded request this one retries (same key, Idempotency-Key, fingerprint)."""

    idempotency_key: str
    fingerprint: str
    window_ms: int = 23 * 3_600_000
    # Answers besides 2xx that the vendor stores under the key (Stripe: 402 card errors). An
    # earlier request answered with anything else moved nothing and the vendor will run the
    # repeat for real, so the repeat reserves like a new request.
    cached_statuses: frozenset[int] = frozenset()


@dataclass(frozen=True)
class DedupCheck:
    """dedup_window_seconds: a POST with the same key and fingerprint inside the window is not sent again."""

    fingerprint: str
    window_ms: int


@dataclass(frozen=True)
class DedupHit:
    """The earlier request a duplicate repeats: its row, its state, and (answered) its sealed answer."""

    row_id: str
    state: str  # in_flight | answered | unknown
    answer_enc: bytes | None


@dataclass(frozen=True)
class DedupOutcome:
    """How a deduplicated send ended: `answered` (replayable), `unknown`, or `release` (nothing sent)."""

    key_id: str
    fingerprint: str
    state: str
    answer_enc: bytes | None = None


@dataclass(frozen=True)
class EarlierRequest:
    id: str
    verdict: str  # in_flight | allowed | outcome_unknown


class KeyState(Enum):
    OK = "ok"
    REVOKED = "revoked"
    EXPIRED = "expired"
    CHANGED = "changed"  # policy version moved since the request was evaluated
    MISSING = "missing"


@dataclass
class ReserveResult:
    state: KeyState
    items: list[ReservedItem] = field(default_factory=list)
    cap_hit: CapHit | None = None
    remaining_usd: int | None = None  # smallest limit − used − reserved over USD caps
    key: KeyRecord | None = None  # the current key, when its state is not OK
    credential: CredentialRecord | None = None  # read in the same transaction (vendor, secret, base_url)
    retry_of: EarlierRequest | None = None  # this request retries an earlier one: nothing USD reserved
    dedup_of: DedupHit | None = None  # a duplicate inside the dedup window: nothing reserved or written
    object_busy: str | None = None  # another write on the same object is in flight (its row): nothing written


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


AUDIT_FIELDS: tuple[str, ...] = tuple(AuditRow.__dataclass_fields__)


def counted_request_sql(alias: str = "") -> str:
    """SQL true for an audit row that counts as one forwarded request — the row-level mirror of
    `Settlement.forwarded`, which settlement moves request counters by. Forwarded rows end as
    `allowed`, `outcome_unknown`, or `upstream_error` with the vendor's status recorded (the
    vendor refused the operator's secret: it did see the request); `upstream_error` without an
    upstream status was never sent. Budget seeding and relabel moves count with it (one rule)."""
    a = f"{alias}." if alias else ""
    return (
        f"({a}verdict IN ('allowed', 'outcome_unknown')"
        f" OR ({a}verdict = 'upstream_error' AND {a}upstream_status IS NOT NULL))"
    )


@dataclass(frozen=True)
class Settlement:
    """What a forwarded call finally cost. `keep_reservation`: outcome not final yet.
    `forwarded` must agree with `counted_request_sql` on the row it settles."""

    verdict: str  # allowed | outcome_unknown | upstream_error
    cost_usd: int
    cost_source: str
    cost_kind: str
    keep_reservation: bool
    forwarded: bool  # counts toward request caps
    billed: bool = False  # the vendor accepted the send: counts toward send caps

    def apply_to(self, row: AuditRow) -> None:
        row.verdict, row.cost_usd = self.verdict, self.cost_usd
        row.cost_source, row.cost_kind = self.cost_source, self.cost_kind


@dataclass
class SettleJob:
    """One settlement: the row to complete, what it reserved, what it cost."""

    row: AuditRow
    items: list[ReservedItem]
    settlement: Settlement
    daily_counter: str | None  # which counter `cap_usage_after_usd` reports
    # A retry's definite answer also settles the earlier outcome_unknown request it repeats.
    settles_earlier: EarlierSettlement | None = None
    ledger: tuple[str, list[LedgerEntry]] | None = None  # (credential, entries) learnt from the answer
    dedup: DedupOutcome | None = None
    # The reservation's COMMIT failed without an answer: if it landed after all, settle what the
    # row itself recorded as reserved (`items` is empty then); if it did not, there is nothing to do.
    count: ObjectCount | None = None  # what the call counted for the object it acted on


@dataclass(frozen=True)
class EarlierSettlement:
    id: str
    cost_usd: int
    cost_source: str
    cost_kind: str
    count: ObjectCount | None = None


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


class Store(Protocol):
    """Every engine implements this; the contract suite in tests/store runs against each."""

    def now_ms(self) -> int: ...
    async def db_now_ms(self) -> int:
        """The database's clock read now, in Unix ms: every final verdict about time uses it."""

    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def probe_write(self) -> None:
        """A write transaction on the counters that changes nothing: fails while reservations would."""

    # meta (pepper, canary) and instances
    async def get_meta(self, name: str) -> bytes | None: ...
    async def put_meta_if_absent(self, name: str, value: bytes) -> bytes: ...
    async def register_instance(self, instance_id: str, hostname: str, pid: int) -> None: ...
    async def heartbeat(self, instance_id: str, hostname: str, pid: int) -> None: ...
    async def deregister_instance(self, instance_id: str) -> None:
        """A clean stop: the lease goes now, and any row it still has in flight is recovered at once."""

    async def recover_in_flight(
        self, instance_id: str, hostname: str, stale_ms: int, max_flight_ms: int | None = None
    ) -> int:
        """Mark rows of dead processes (and rows in flight longer than `max_flight_ms`) outcome_unknown."""

    # hot path
    async def key_by_hash(self, token_hash: str) -> KeyRecord | None: ...
    async def credential(self, name: str) -> CredentialRecord | None: ...
    async def reserve(
        self,
        key_id: str,
        policy_version: int,
        caps: list[CapSpec],
        row: AuditRow,
        owner: str,
        retry: RetryCheck | None = None,
        dedup: DedupCheck | None = None,
        guard: ObjectGuard | None = None,
    ) -> ReserveResult:
        """Check the key's state and every cap, reserve, and write the in-flight row: one transaction.

        With `guard` (the vendor object a write acts on, and the facts it was priced from), another
        in-flight write on the same object of the same credential, or facts that changed since,
        refuse it: nothing is reserved or written and `object_busy` says why.

        With `retry`, an earlier forwarded request with the same Idempotency-Key and fingerprint
        makes this a retry: USD amounts are not reserved (docs/sdk-stripe.md, retries). If that earlier
        request is still in flight, nothing is reserved or written and `retry_of` says so.
        With `dedup` (and no retry), a live entry for the same key and fingerprint makes this a
        duplicate: nothing is reserved or written and `dedup_of` says which request it repeats;
        otherwise the entry is created for this request in the same transaction.
        """

    async def settle(
        self, row: AuditRow, items: list[ReservedItem], settlement: Settlement, daily_counter: str | None
    ) -> None:
        """Apply `settlement` to the row and the reserved counters, in one transaction."""

    async def settle_many(self, jobs: list[SettleJob]) -> None:
        """Several settlements in one transaction (the settle writer batches them)."""

    async def insert_audit(self, row: AuditRow) -> None: ...
    async def count_request(self, key_id: str, window_start: int) -> None:
        """One request in the key's hourly request counter (a refused request that made a lookup)."""

    # keys
    async def insert_key(self, key: KeyRecord, token_hash: str) -> None: ...
    async def issue_key(self, key: KeyRecord, token_hash: str) -> KeyRecord | None:
        """Insert `key` bound to the current generation of its credential, read and locked (FOR SHARE)
        in the same transaction; None when no credential of that name and vendor exists."""
        ...

    async def get_key(self, key_id: str) -> KeyRecord | None: ...
    async def list_keys(self, q: KeyQuery) -> list[KeyRecord]: ...
    async def update_key(
        self,
        key_id: str,
        expected_version: int,
        *,
        label: str | None,
        metadata: dict[str, str],
        policy: dict[str, Any],
        expires_at: int,
    ) -> bool: ...
    async def revoke_key(self, key_id: str, reason: str | None) -> KeyRecord | None: ...
    async def revoke_keys(
        self, *, label_prefix: str | None, vendor: str | None, credential: str | None, reason: str | None
    ) -> tuple[int, int]: ...
    async def counters_for(self, scope: str, counters: list[tuple[str, int]]) -> dict[str, CounterValue]: ...
    async def active_key_count(self, credential: str) -> int: ...

    # credentials
    async def insert_credential(self, cred: CredentialRecord) -> bool: ...
    async def rotate_credential(
        self, name: str, secret_enc: bytes, hint: str, base_url: str | None, livemode: bool | None
    ) -> bool: ...
    async def list_credentials(self) -> list[CredentialRecord]: ...
    async def delete_credential(self, name: str, *, revoke_keys: bool = False, reason: str | None = None) -> int | None:
        """Delete the credential row, locked FOR UPDATE first; with `revoke_keys`, revoke its active keys
        in the same transaction. Returns the number of keys revoked, None if no such credential;
        raises `CredentialInUse` (no change) when active keys remain and `revoke_keys` is false."""
        ...

    # budgets
    async def insert_budget(self, rec: BudgetRecord) -> None:
        """Create the budget and seed its counters with what covered keys already spent in its
        current windows, in one transaction ordered against every reservation (`sql_budgets.py`)."""
        ...

    async def get_budget(self, budget_id: str) -> BudgetRecord | None: ...
    async def list_budgets(self) -> list[BudgetRecord]: ...
    async def update_budget(self, rec: BudgetRecord) -> bool:
        """Change name/caps/time zone; a new time zone replaces the day and month counters with
        freshly seeded ones in the same transaction. False if no such budget."""
        ...

    async def delete_budget(self, budget_id: str) -> bool: ...

    # admin tokens
    async def insert_admin_token(self, rec: AdminTokenRecord, token_hash: str) -> None: ...
    async def admin_token_by_hash(self, token_hash: str) -> AdminTokenRecord | None: ...
    async def list_admin_tokens(self) -> list[AdminTokenRecord]: ...
    async def revoke_admin_token(self, token_id: str) -> bool: ...

    # idempotent issuance
    async def issuance_get(self, issuer: str, idempotency_key: str, since_ms: int) -> tuple[str, bytes] | None: ...
    async def issuance_put(self, issuer: str, idempotency_key: str, body_hash: str, answer_enc: bytes) -> bool: ...

    # dedup
    async def dedup_get(self, key_id: str, fingerprint: str) -> DedupHit | None: ...
    async def dedup_purge(self) -> int:
        """Delete entries (and their sealed answers) whose window has ended."""

    async def purge_issuances(self) -> int:
        """Forget recorded key issuances (`POST /v1/keys` Idempotency-Keys) older than 24 hours."""

    # reconciliation
    async def audit_window_end(self, q: AuditQuery, window: int) -> str | None:
        """The id of the `window`-th audit row after `q.after_id` within `q.since`/`q.until` (other
        filters ignored), or None when fewer rows remain: the end of one export page's scan."""

    async def pending_estimates(
        self, older_than_ms: int, limit: int, *, vendor: str | None = None, after_id: str | None = None
    ) -> list[PendingEstimate]: ...
    async def settle_pending(
        self, row_id: str, cost_usd: int, cost_source: str, cost_kind: str, count: ObjectCount | None = None
    ) -> bool:
        """Settle a row whose reservation waited for the vendor's final word (reconciliation)."""

    # object ledger
    async def ledger_get(self, credential: str, object_ids: list[str]) -> dict[str, LedgerEntry]: ...
    async def ledger_put(self, credential: str, entries: list[LedgerEntry]) -> None: ...

    # spend
    async def spend(
        self, by: str, since: int | None, until: int | None, label_prefix: str | None, vendor: str | None
    ) -> list[SpendRow]:
        """Totals grouped `by` key_id, label, vendor, or SPEND_BUCKET_MS time bucket (`bucket`)."""

    # alerts
    async def insert_alert(self, dest: AlertDestination) -> None: ...
    async def list_alerts(self) -> list[AlertDestination]: ...
    async def delete_alert(self, alert_id: str) -> bool: ...
    async def enqueue(
        self,
        deliveries: list[Delivery],
        fire_key: str | None,
        *,
        keep_until_ms: int | None = None,
        forever: bool = False,
    ) -> bool:
        """Add deliveries to the outbox; with `fire_key`, only if that key never fired (one transaction).

        Idempotent: a delivery whose id is already there is not added again (an event re-queued
        after a lost answer). The mark is kept until `keep_until_ms` (default now) plus the purge's
        margin, or `forever`. Returns False when the mark had already fired.
        """

    async def claim_deliveries(
        self, destination_id: str, instance_id: str, lease_ms: int, limit: int
    ) -> list[Delivery]:
        """Claim up to `limit` due pending deliveries of one destination for `instance_id`: sets
        `claimed_by` and `lease_until` = database now + `lease_ms` in one statement, skipping rows
        another instance holds an unexpired lease on. Only the claimant POSTs them."""

    async def settle_delivery(
        self,
        delivery_id: str,
        instance_id: str,
        *,
        attempt_id: str,
        ok: bool,
        status: int | None,
        error: str | None,
        retry_in_ms: int,
        max_attempts: int,
    ) -> None:
        """Record one POST actually made: attempts + 1; delivered, or pending again `retry_in_ms`
        later (database clock) until `max_attempts`, then failed. A delivered row stays delivered;
        the claim is cleared only if `instance_id` still holds it. Writing the same `attempt_id`
        again (its first write's answer was lost) changes nothing."""

    async def fail_orphaned_deliveries(self, error: str) -> int:
        """Mark every pending delivery of a destination that no longer exists failed (no POST made)."""

    async def release_claims(self, instance_id: str) -> int:
        """Clear this instance's claims on pending deliveries (a clean stop): due again at once."""

    async def list_deliveries(
        self, limit: int, *, state: str | None = None, before: tuple[int, str] | None = None
    ) -> list[Delivery]:
        """Newest first (created_at, then id, descending); `state` filters; `before` is a page cursor."""

    async def counters_near_caps(self, min_pct: int, since_ms: int) -> list[CounterUsage]:
        """Capped counters at or above `min_pct` % whose window started after `since_ms` (or total)."""

    async def purge_fired(self, before_ms: int) -> int:
        """Forget fire-once marks kept until before `before_ms` (their windows are long over)."""

    async def keys_expired_between(self, since_ms: int, until_ms: int) -> list[KeyRecord]: ...
    async def keys_revoked_between(self, since_ms: int, until_ms: int) -> list[KeyRecord]:
        """Revoked keys whose `revoked_at` is in (since_ms, until_ms], by any path or replica."""

    async def hourly_totals(self, since_ms: int, until_ms: int) -> list[tuple[str, str | None, int, int, int]]:
        """(key_id, label, UTC hour start, cost micro-USD, forwarded requests) per key and hour."""

    # retention
    async def purgeable_audit(self, before_ms: int, limit: int, after_id: str = "") -> list[dict[str, Any]]:
        """The oldest rows (id > `after_id`) older than `before_ms` that nothing still needs: no
        reservation kept, not in flight, and not of a key still in the store (budget seeding
        counts every row of a live key, docs/operations.md "Retention")."""

    async def delete_audit(self, row_ids: list[str]) -> int: ...
    # Retention beyond the audit rows (store/sql_retention.py): rows older than a cutoff (Unix ms)
    # that nothing live needs, in batches; each returns how many rows it deleted.
    async def purge_counters(self, before_ms: int, batch: int) -> int: ...
    async def purge_ledger(self, before_ms: int, batch: int) -> int: ...
    async def purge_outbox(self, before_ms: int, batch: int) -> int: ...
    async def purge_keys(self, before_ms: int, batch: int) -> int: ...

    # audit
    async def get_audit(self, row_id: str) -> dict[str, Any] | None: ...
    async def query_audit(self, q: AuditQuery) -> list[dict[str, Any]]: ...
