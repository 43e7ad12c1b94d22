"""The store's interfaces, one per role: each names what one kind of caller needs.

- the proxy: `ReservationStore` (the pipeline and its recorder), `ApprovalStore` (held calls), `SettleStore` (the settle
  writer), `LedgerStore` (facts learnt about vendor objects);
- the admin surface: `KeyStore`, `CredentialStore`, `BudgetStore`, `AuditStore`, `AlertStore`,
  `AdminTokenStore` (admin_roles.py);
- the background jobs: `OutboxStore` (alert deliveries), `AlertScanStore` (the alert scans),
  `ReconcileStore`, `RetentionStore`, `InstanceStore` (leases and recovery);
- the process: `LifecycleStore` (close, probes, meta).

`Store` is their union: every engine implements it (`sql_store.py` through `sqlite.py` and
`pg.py`), and the contract suite in tests/store runs each role on every engine. A method two
roles share is declared once, in a small protocol both extend. Money in micro-USD, times in Unix ms.
"""

from __future__ import annotations

from typing import Any, Protocol

from keybrake.core.ledger import LedgerEntry, ObjectCount
from keybrake.store.admin_roles import (
    AdminTokenStore,
    AlertStore,
    AuditStore,
    BudgetReader,
    BudgetStore,
    Clock,
    CounterReader,
    CredentialReader,
    CredentialStore,
    DestinationReader,
    KeyStore,
    WindowStarts,
)
from keybrake.store.records import (
    ApprovalQuery,
    ApprovalRecord,
    AuditRow,
    CapSpec,
    CounterUsage,
    Delivery,
    KeyRecord,
    KeyWatch,
)
from keybrake.store.reservations import (
    DedupCheck,
    DedupHit,
    ObjectGuard,
    PendingEstimate,
    ReservedItem,
    ReserveResult,
    RetryCheck,
    SettleJob,
    Settlement,
)

__all__ = [
    "AdminTokenStore",
    "AlertScanStore",
    "AlertStore",
    "ApprovalStore",
    "AuditStore",
    "BudgetStore",
    "Clock",
    "CredentialStore",
    "InstanceStore",
    "KeyStore",
    "LedgerStore",
    "LifecycleStore",
    "OutboxStore",
    "Probes",
    "ReconcileStore",
    "ReservationStore",
    "RetentionStore",
    "SettleStore",
    "Store",
]


class Probes(Protocol):
    """Is the store there, and can it write? (readiness, the alert scans' outage check)"""

    async def ping(self) -> None: ...
    async def probe_write(self) -> None:
        """A write transaction on the counters that changes nothing: fails while reservations would."""


class LifecycleStore(Probes, Protocol):
    """The process's: open state it keeps in the store (pepper, canary), and closing."""

    async def close(self) -> None: ...
    async def get_meta(self, name: str) -> bytes | None: ...
    async def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        """Store `value` under `name` unless one is there; returns the value stored (either)."""


class SettleStore(Protocol):
    """The settle writer's (proxy/settler.py): complete rows and move reservations to cost."""

    async def settle(
        self, row: AuditRow, items: list[ReservedItem], settlement: Settlement, daily_counter: str | None
    ) -> None:
        """Apply `settlement` to the row and the reserved counters, in one transaction."""

    async def settle_many(self, jobs: list[SettleJob]) -> None:
        """Several settlements in one transaction (the settle writer batches them)."""


class LedgerStore(Protocol):
    """The object ledger: facts answers taught about vendor objects, per credential."""

    async def ledger_get(self, credential: str, object_ids: list[str]) -> dict[str, LedgerEntry]: ...
    async def ledger_put(self, credential: str, entries: list[LedgerEntry]) -> None: ...


class ReservationStore(CredentialReader, CounterReader, SettleStore, LedgerStore, Clock, Protocol):
    """The proxy pipeline's: look a key up, reserve, settle, write denials.

    Three calls carry the money, each one atomic transaction: `reserve` (check the key's state
    and every cap, reserve, write the in-flight audit row), `settle`/`settle_many` (move a
    reservation to what the call cost and complete the row) and `insert_audit` (a denial).
    """

    async def key_by_hash(self, token_hash: str) -> KeyRecord | None: ...
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

    async def insert_audit(self, row: AuditRow) -> None: ...
    async def count_request(self, key_id: str, window_start: int) -> None:
        """One request in the key's hourly request counter (a refused request that made a lookup)."""

    async def dedup_get(self, key_id: str, fingerprint: str) -> DedupHit | None: ...


class ApprovalStore(Clock, Protocol):
    """Calls held for a person's decision (docs/approvals.md; `sql_approvals.py`): the holder
    (`proxy/approval.py`) writes and watches a hold, people decide through the admin API."""

    async def hold_approval(self, rec: ApprovalRecord, max_pending: int | None = None) -> bool:
        """Write a pending approval and mark its audit row `awaiting_approval`, together; with
        `max_pending`, only while the key's queue holds fewer (checked atomically; False: not written)."""

    async def approval_get(self, approval_id: str) -> ApprovalRecord | None: ...
    async def approval_watch(self, approval_id: str) -> tuple[ApprovalRecord | None, KeyWatch | None]:
        """(the approval, its key's status, expiry and policy version): what the holder polls."""

    async def decide_approval(
        self, approval_id: str, state: str, by: str, reason: str | None, grant_usd: int | None = None
    ) -> tuple[bool, ApprovalRecord | None]:
        """approved | denied, only while pending and unexpired: (taken?, the approval now)."""

    async def end_approval(
        self, approval_id: str, state: str, by: str, reason: str, waited_ms: int | None = None
    ) -> ApprovalRecord | None:
        """The holder ends a pending hold (expired | cancelled); returns the approval as it stands."""

    async def note_approval(self, audit_id: str, approval: dict[str, Any]) -> None:
        """Write the audit row's `approval` (the holder, once it knows how the hold ended)."""

    async def use_grant(self, run_scope: str, amount_usd: int) -> str | None:
        """Take µUSD (>= 0) from the run's live grant if it holds that much: the granting approval's id."""

    async def pending_approvals(self, key_id: str) -> int:
        """Places taken in the key's queue: held calls, and abandoned ones until their hold's end."""

    async def list_approvals(self, q: ApprovalQuery) -> list[ApprovalRecord]: ...
    async def budget_approval_thresholds(self, budget_ids: list[str]) -> dict[str, int]:
        """budget id → approval_above_usd (µUSD), for those that set one."""


class InstanceStore(Protocol):
    """Housekeeping's: each process's lease, and recovery of what dead processes left in flight."""

    async def register_instance(self, instance_id: str, hostname: str, pid: int) -> None: ...
    async def heartbeat(self, instance_id: str, hostname: str, pid: int) -> None: ...
    async def deregister_instance(self, instance_id: str) -> None:
        """A clean stop: the lease goes now, and any row it still has in flight is recovered at once."""

    async def recover_in_flight(
        self, instance_id: str, hostname: str, stale_ms: int, max_flight_ms: int | None = None
    ) -> int:
        """Mark rows of dead processes (and rows in flight longer than `max_flight_ms`) outcome_unknown."""


class ReconcileStore(CredentialReader, LedgerStore, Clock, Protocol):
    """Reconciliation's (jobs/reconcile.py): estimates waiting for the vendor's final word."""

    async def pending_estimates(
        self, older_than_ms: int, limit: int, *, vendor: str | None = None, after_id: str | None = None
    ) -> list[PendingEstimate]: ...
    async def settle_pending(
        self, row_id: str, cost_usd: int, cost_source: str, cost_kind: str, count: ObjectCount | None = None
    ) -> bool:
        """Settle a row whose reservation waited for the vendor's final word (reconciliation)."""


class OutboxStore(DestinationReader, Protocol):
    """The alert outbox (jobs/alert_delivery.py): queued deliveries, claimed and settled per POST."""

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


class AlertScanStore(OutboxStore, BudgetReader, WindowStarts, Probes, Clock, Protocol):
    """The alert scans' (jobs/alerts.py): what happened since the last scan, queued as events."""

    async def counters_near_caps(
        self, min_pct: int, since_ms: int, *, active_at_ms: int | None = None
    ) -> list[CounterUsage]:
        """Capped counters at or above `min_pct` % whose window started after `since_ms` (or total);
        with `active_at_ms`, a key's only while the key is active then (not revoked, not expired)."""

    async def keys_expired_between(self, since_ms: int, until_ms: int) -> list[KeyRecord]: ...
    async def keys_revoked_between(self, since_ms: int, until_ms: int) -> list[KeyRecord]:
        """Revoked keys whose `revoked_at` is in (since_ms, until_ms], by any path or replica."""

    async def hourly_totals(self, since_ms: int, until_ms: int) -> list[tuple[str, str | None, int, int, int]]:
        """(key_id, label, UTC hour start, cost micro-USD, forwarded requests) per key and hour."""


class RetentionStore(Clock, Protocol):
    """Retention's (jobs/retention.py): rows older than a cutoff (Unix ms) that nothing live needs.

    The batched purges (store/sql_retention.py) each return how many rows they deleted.
    """

    async def purgeable_audit(self, before_ms: int, limit: int, after_id: str = "") -> list[dict[str, Any]]:
        """The oldest rows (id > `after_id`) older than `before_ms` that nothing still needs: no
        reservation kept, not in flight, and not of a key still in the store (budget seeding
        counts every row of a live key, docs/operations.md "Retention")."""

    async def delete_audit(self, row_ids: list[str]) -> int: ...
    async def purge_counters(self, before_ms: int, batch: int) -> int: ...
    async def purge_ledger(self, before_ms: int, batch: int) -> int: ...
    async def purge_outbox(self, before_ms: int, batch: int) -> int: ...
    async def purge_keys(self, before_ms: int, batch: int) -> int: ...
    async def purge_fired(self, before_ms: int) -> int:
        """Forget fire-once marks kept until before `before_ms` (their windows are long over)."""

    async def dedup_purge(self) -> int:
        """Delete entries (and their sealed answers) whose window has ended."""

    async def purge_issuances(self) -> int:
        """Forget recorded key issuances (`POST /v1/keys` Idempotency-Keys) older than 24 hours."""


class Store(
    ReservationStore,
    ApprovalStore,
    KeyStore,
    CredentialStore,
    BudgetStore,
    AuditStore,
    AlertStore,
    AdminTokenStore,
    AlertScanStore,
    OutboxStore,
    ReconcileStore,
    RetentionStore,
    InstanceStore,
    LifecycleStore,
    Protocol,
):
    """Every role at once: every engine implements this; the contract suite in tests/store runs
    each role against each engine."""
