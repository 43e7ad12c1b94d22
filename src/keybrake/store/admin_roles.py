"""The admin surface's store interfaces (admin/*.py, the CLI), and the small shared reads
other roles extend (`roles.py`). Money in micro-USD, times in Unix ms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from keybrake.core.windows import Window
from keybrake.store.records import (
    AdminTokenRecord,
    AlertDestination,
    AuditQuery,
    BudgetRecord,
    ConsoleSession,
    CounterUsage,
    CounterValue,
    CredentialRecord,
    Delivery,
    KeyQuery,
    KeyRecord,
    RecentRun,
    RunTotals,
    SpendRow,
)


class Clock(Protocol):
    """The store's clock: every window and expiry is judged by it (docs/scale-out.md)."""

    def now_ms(self) -> int:
        """The database's clock in Unix ms, as this process estimates it (no round trip)."""
        ...

    async def db_now_ms(self) -> int:
        """The database's clock read now, in Unix ms: every final verdict about time uses it."""


class CounterReader(Protocol):
    """Counter readings: the key and budget usage pages, the pipeline's hourly request cap."""

    async def counters_for(self, scope: str, counters: list[tuple[str, int]]) -> dict[str, CounterValue]:
        """`scope` (key:vk_… | budget:bud_…), `counters` [(counter, window start)] → value per counter."""
        ...


class WindowStarts(Protocol):
    """Which counter row is current: the window starts reservations use (one source per engine)."""

    async def window_bounds(self, now_ms: int, windows: Sequence[tuple[Window, str]]) -> list[tuple[int, int | None]]:
        """(start, end) in Unix ms of each (window, IANA zone) current at `now_ms`, as the engine's
        reservations compute them (PostgreSQL: `keybrake_window_start`, the server's tzdata, in one
        query; SQLite: Python's); the end is the next window's start (None: a total window).
        Raises EnforcementUnavailable."""
        ...

    async def zone_refusal(self, tz: str) -> str | None:
        """None when the engine's reservations can compute windows in zone `tz`; otherwise the
        database's reason (PostgreSQL refuses a zone its tzdata lacks; SQLite uses Python's, which
        the admin validator already checked). Raises EnforcementUnavailable."""
        ...


class CredentialReader(Protocol):
    """A credential by name (its sealed secret, vendor, base URL, generation)."""

    async def credential(self, name: str) -> CredentialRecord | None: ...


class DestinationReader(Protocol):
    """The configured alert destinations."""

    async def list_alerts(self) -> list[AlertDestination]: ...


class BudgetReader(Protocol):
    """Budgets as they are now."""

    async def get_budget(self, budget_id: str) -> BudgetRecord | None: ...
    async def list_budgets(self) -> list[BudgetRecord]: ...


class KeyStore(CounterReader, Clock, Protocol):
    """Virtual keys (admin/keys.py): issue (idempotently), read, list, change, revoke."""

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
    ) -> bool:
        """Change the key if its policy version is still `expected_version` (then + 1); a new label
        moves its spend between the budgets covering it (`sql_budgets.py`). False: it moved on."""
        ...

    async def revoke_key(self, key_id: str, reason: str | None) -> KeyRecord | None: ...
    async def keys_near_caps(
        self, counters: list[tuple[str, int]], min_pct: int, now_ms: int, limit: int
    ) -> list[CounterUsage]:
        """Counters of active keys (not revoked, not expired at `now_ms`) among `counters`
        [(counter, window start)] whose used + reserved is at least `min_pct` % of the limit their
        last reservation was checked against; the fullest first, at most `limit`."""
        ...

    async def revoke_keys(
        self, *, label_prefix: str | None, vendor: str | None, credential: str | None, reason: str | None
    ) -> tuple[int, int]:
        """Revoke every active key matching all given filters: (how many, revoked_at)."""
        ...

    async def revocable_keys(
        self, *, label_prefix: str | None, vendor: str | None, credential: str | None, limit: int
    ) -> tuple[int, list[KeyRecord]]:
        """What `revoke_keys` with the same filters would revoke now, changing nothing: (how many,
        the newest `limit` of them)."""
        ...

    async def issuance_get(self, issuer: str, idempotency_key: str, since_ms: int) -> tuple[str, bytes] | None:
        """The (body hash, sealed answer) recorded for an issuance's Idempotency-Key since `since_ms`."""
        ...

    async def issuance_put(self, issuer: str, idempotency_key: str, body_hash: str, answer_enc: bytes) -> bool:
        """Record the first answer; False if one is already recorded (a concurrent duplicate)."""
        ...


class CredentialStore(Clock, Protocol):
    """Vendor credentials (admin/credentials.py): add, rotate, list, delete."""

    async def insert_credential(self, cred: CredentialRecord) -> bool:
        """Add the credential; False if one of that name exists."""
        ...

    async def rotate_credential(
        self, name: str, secret_enc: bytes, hint: str, base_url: str | None, livemode: bool | None
    ) -> bool: ...
    async def list_credentials(self) -> list[CredentialRecord]: ...
    async def delete_credential(self, name: str, *, revoke_keys: bool = False, reason: str | None = None) -> int | None:
        """Delete the credential row, locked FOR UPDATE first; with `revoke_keys`, revoke its active keys
        in the same transaction. Returns the number of keys revoked, None if no such credential;
        raises `CredentialInUse` (no change) when active keys remain and `revoke_keys` is false."""
        ...

    async def active_key_count(self, credential: str) -> int: ...


class BudgetStore(BudgetReader, CounterReader, WindowStarts, Clock, Protocol):
    """Shared budgets (admin/budgets.py): create, change, delete, and their counters."""

    async def insert_budget(self, rec: BudgetRecord) -> None:
        """Create the budget and seed its counters with what covered keys already spent in its
        current windows, in one transaction ordered against every reservation (`sql_budgets.py`)."""
        ...

    async def update_budget(self, rec: BudgetRecord) -> bool:
        """Change name/caps/time zone; a new time zone replaces the day and month counters with
        freshly seeded ones in the same transaction. False if no such budget."""
        ...

    async def delete_budget(self, budget_id: str) -> bool: ...


class AuditStore(Clock, Protocol):
    """The audit log and spend (admin/audit.py, admin/spend.py): reports, never on the hot path."""

    async def get_audit(self, row_id: str) -> dict[str, Any] | None: ...
    async def query_audit(self, q: AuditQuery) -> list[dict[str, Any]]:
        """Rows matching every filter of `q`, by id (newest first unless `q.ascending`), `q.limit` at most."""
        ...

    async def audit_window_end(self, q: AuditQuery, window: int) -> str | None:
        """The id of the `window`-th audit row after `q.after_id` within `q.since`/`q.until` (other
        filters ignored), or None when fewer rows remain: the end of one export page's scan."""

    async def audit_window_start(self, q: AuditQuery, window: int) -> tuple[str, int, str | None] | None:
        """The far end of one console search page's scan, so a rarely matching filter never walks
        the whole table: `window` rows below `q.cursor` (or the newest row) within `q.since`/`q.until`
        (other filters ignored), the lowest one's id and ts, and the id of the row below it (None at
        the bottom). None when fewer than `window` rows remain."""
        ...

    async def audit_run_totals(self, agent_run_id: str) -> RunTotals:
        """One run's call count, allowed and denied counts, charged and refunded µUSD, first and
        last call (Unix ms), read on the run's index."""
        ...

    async def recent_runs(self, window: int, limit: int) -> list[RecentRun]:
        """The runs among the latest `window` audit rows, latest call first, `limit` at most."""
        ...

    async def count_audit_between(self, after_id: str, through_id: str) -> int:
        """How many audit rows have an id in (`after_id`, `through_id`]: `keybrake audit tail -f`
        checks its overlap window for late rows with it, without reading the rows."""
        ...

    async def spend(
        self, by: str, since: int | None, until: int | None, label_prefix: str | None, vendor: str | None
    ) -> list[SpendRow]:
        """Totals grouped `by` key_id, label, vendor, or SPEND_BUCKET_MS time bucket (`bucket`)."""

    async def spend_days(self, since: int, until: int) -> list[tuple[str, str | None, int, int, int, int, int, int]]:
        """(vendor, label, UTC day start ms, charged µUSD, refunded µUSD, requests, denied, cap hits)
        of the audit rows in [`since`, `until`): one pass over the range."""
        ...

    async def refusals_since(self, since_ms: int) -> list[tuple[str, str, int]]:
        """(verdict, error code, rows) of the refused calls (rows with an error code) since `since_ms`."""
        ...

    async def last_calls(self, key_ids: Sequence[str]) -> dict[str, int]:
        """The time (Unix ms) of each key's newest audit row, for the keys of `key_ids` that have
        one: one index seek per key (ix_audit_key), never a scan."""
        ...


class AlertStore(DestinationReader, Clock, Protocol):
    """Alert destinations and the delivery log (admin/alerts.py)."""

    async def insert_alert(self, dest: AlertDestination) -> None: ...
    async def delete_alert(self, alert_id: str) -> bool: ...
    async def list_deliveries(
        self, limit: int, *, state: str | None = None, before: tuple[int, str] | None = None
    ) -> list[Delivery]:
        """Newest first (created_at, then id, descending); `state` filters; `before` is a page cursor."""


class AdminTokenStore(Clock, Protocol):
    """Admin API tokens (admin/gate.py checks them; the CLI and bootstrap issue them)."""

    async def insert_admin_token(self, rec: AdminTokenRecord, token_hash: str) -> None: ...
    async def admin_token_by_hash(self, token_hash: str) -> AdminTokenRecord | None: ...
    async def list_admin_tokens(self) -> list[AdminTokenRecord]: ...
    async def revoke_admin_token(self, token_id: str) -> bool: ...
    async def open_console_session(self, rec: ConsoleSession, session_hash: str) -> None: ...
    async def console_session(self, session_hash: str) -> tuple[ConsoleSession, AdminTokenRecord] | None: ...
    async def end_console_session(self, session_hash: str) -> bool: ...
