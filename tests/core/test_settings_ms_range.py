"""A millisecond setting reaches its database as given, or is refused naming it: SQLite's
busy_timeout and PostgreSQL's statement and idle-transaction timeouts are 32-bit, and SQLite reads
a larger busy_timeout as 0 (no wait at all) without a word."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.config import SettingsError, from_env
from keybrake.store.open import open_store

pytestmark = pytest.mark.sqlite_only

MS_SETTINGS = [
    "KEYBRAKE_SQLITE_BUSY_TIMEOUT_MS",
    "KEYBRAKE_PG_STATEMENT_TIMEOUT_MS",
    "KEYBRAKE_PG_IDLE_TX_TIMEOUT_MS",
    "KEYBRAKE_REPORT_TIMEOUT_MS",
    "KEYBRAKE_RESERVE_DEADLINE_MS",
]


@pytest.mark.parametrize("name", MS_SETTINGS)
def test_past_32_bits_is_refused_naming_it(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        from_env({name: str(2**31)})


@settings(max_examples=25, deadline=None)
@given(ms=st.one_of(st.integers(0, 10_000), st.integers(2**31 - 2, 2**31 + 2), st.integers(2**32, 2**64)))
def test_the_busy_timeout_sqlite_uses_is_the_one_set(tmp_path_factory: pytest.TempPathFactory, ms: int) -> None:
    try:
        s = from_env({"KEYBRAKE_SQLITE_BUSY_TIMEOUT_MS": str(ms)})
    except SettingsError as exc:
        assert "KEYBRAKE_SQLITE_BUSY_TIMEOUT_MS" in str(exc)
        return
    d = tmp_path_factory.mktemp("busy")
    store = open_store(None, d, migrate=False, create=True, busy_timeout_ms=s.sqlite_busy_timeout_ms)
    try:
        (got,) = store._db.execute("PRAGMA busy_timeout").fetchone()  # type: ignore[attr-defined]
        assert got == ms
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(store.close())
