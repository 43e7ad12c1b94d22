"""The store contract runs on every engine: each test once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from keybrake.store import open_store
from keybrake.store.base import Store


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
