"""The records of one reservation and its settlement: what a request reserves against
(`CapSpec` is in `records.py`), what the store answers (`ReserveResult`), and what a forwarded
call finally cost (`Settlement`, `SettleJob`). Money in micro-USD, times in Unix ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from keybrake.core.caps import KEY_CAPS, POINT_COUNTERS, SEND_COUNTERS
from keybrake.core.errors import CapHit
from keybrake.core.ledger import LedgerEntry, ObjectCount
from keybrake.store.records import AuditRow, CredentialRecord, KeyRecord


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
        if self.counter in POINT_COUNTERS and settlement.forwarded and settlement.points is not None:
            return settlement.points
        return self.amount if settlement.forwarded else 0

    def as_json(self) -> list[Any]:
        return [self.counter_scope, self.counter, self.window_start, self.amount, self.is_usd]

    @classmethod
    def from_json(cls, v: list[Any]) -> ReservedItem:
        return cls(v[0], v[1], int(v[2]), int(v[3]), bool(v[4]))


# The key's USD counters in the order an audit row reports them (`cap_usage_after_usd`: the
# daily window if the key has a daily cap, else its total).
REPORTED_USD_COUNTERS = tuple(c.counter for c in KEY_CAPS if c.is_usd)


def reported_item(items: list[ReservedItem]) -> ReservedItem | None:
    """The reserved item whose counter an audit row's `cap_usage_after_usd` reports: the key's
    first USD counter in `REPORTED_USD_COUNTERS` order among `items`; None if it reserved none."""
    usd = {it.counter: it for it in items if it.is_usd and it.counter_scope.startswith("key:")}
    return next((usd[c] for c in REPORTED_USD_COUNTERS if c in usd), None)


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
    points: int | None = None  # cost points the answer reports: point counters settle to it (else the bound)

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
    # Set by the store's `settle_many` once committed: True when THIS job moved `settles_earlier`
    # (the row was still outcome_unknown; or a run of this job that committed, its answer lost:
    # the row's `settled_by` is this row), False when another retry of the same request or
    # reconciliation settled it, or there is none. The metric counts the earlier cost only then.
    earlier_settled: bool = False


@dataclass(frozen=True)
class EarlierSettlement:
    id: str
    cost_usd: int
    cost_source: str
    cost_kind: str
    count: ObjectCount | None = None
