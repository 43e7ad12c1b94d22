"""The store contract runs on every engine: each test once on SQLite and once on PostgreSQL.

Each role of the store (`keybrake.store.roles`) has its suite, tests/store/test_role_*.py, whose
tests act through a fixture typed as that role; `store` is the whole engine, for arranging.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from keybrake.store import open_store
from keybrake.store.base import (
    AdminTokenStore,
    AlertScanStore,
    AlertStore,
    ApprovalStore,
    AuditStore,
    BudgetStore,
    CredentialStore,
    InstanceStore,
    KeyStore,
    LifecycleStore,
    OutboxStore,
    ReconcileStore,
    ReservationStore,
    RetentionStore,
    SettleStore,
    Store,
)
from tests.store.contract import DAY0, Clock


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine_url(engine: str, request: pytest.FixtureRequest) -> str | None:
    """None (embedded SQLite in tmp_path) or a fresh PostgreSQL database."""
    if engine == "sqlite":
        return None
    return str(request.getfixturevalue("pass_database"))


@pytest.fixture
async def open_engine(engine_url: str | None, tmp_path: Path) -> AsyncIterator[Callable[..., Store]]:
    """Open stores on this test's engine and database; all are closed at the end."""
    opened: list[Store] = []

    def _open(clock: Callable[[], int] | None = None) -> Store:
        s = open_store(engine_url, tmp_path, migrate=False, clock=clock)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        await s.close()


@pytest.fixture
def clock() -> Clock:
    """01:00 UTC on DAY0; tests move it."""
    return Clock(DAY0 + 3_600_000)


@pytest.fixture
def store(open_engine: Callable[..., Store], clock: Clock) -> Store:
    """The whole engine on `clock`: role suites arrange and read back through it."""
    return open_engine(clock)


# -- the engine seen through each role: what a role's suite acts through ------------------


@pytest.fixture
def reservations(store: Store) -> ReservationStore:
    return store


@pytest.fixture
def settlements(store: Store) -> SettleStore:
    return store


@pytest.fixture
def instances(store: Store) -> InstanceStore:
    return store


@pytest.fixture
def lifecycle(store: Store) -> LifecycleStore:
    return store


@pytest.fixture
def keys(store: Store) -> KeyStore:
    return store


@pytest.fixture
def credentials(store: Store) -> CredentialStore:
    return store


@pytest.fixture
def budgets(store: Store) -> BudgetStore:
    return store


@pytest.fixture
def audit(store: Store) -> AuditStore:
    return store


@pytest.fixture
def alerts(store: Store) -> AlertStore:
    return store


@pytest.fixture
def admin_tokens(store: Store) -> AdminTokenStore:
    return store


@pytest.fixture
def outbox(store: Store) -> OutboxStore:
    return store


@pytest.fixture
def alert_scans(store: Store) -> AlertScanStore:
    return store


@pytest.fixture
def reconcile(store: Store) -> ReconcileStore:
    return store


@pytest.fixture
def retention(store: Store) -> RetentionStore:
    return store


@pytest.fixture
def approvals(store: Store) -> ApprovalStore:
    return store
