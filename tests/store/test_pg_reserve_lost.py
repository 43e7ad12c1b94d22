"""PostgreSQL's one-statement reservation when its connection is lost (store/pg_reserve.py)."""

from __future__ import annotations

import psycopg
import pytest

from keybrake.store.pg import PGOptions, PostgresStore
from tests.pg import Databases
from tests.store.contract import caps, key, row

# Brings its own PostgreSQL databases (both engines' passes would run it alike): once, in the first pass.
pytestmark = pytest.mark.pg_cluster


async def test_a_connection_the_server_dropped_is_replaced_and_the_reservation_made_once(
    pg_databases: Databases,
) -> None:
    """Every pooled session terminated while idle (as a restart does): the reservation's statement
    fails on its stale connection, nothing of it landed (session gone, no row), so it runs once
    more on a fresh connection — one row, one reservation, no 503."""
    url = pg_databases.create()
    store = PostgresStore(url, PGOptions(pool_size=2))
    try:
        await store.insert_key(key(store), "h1")
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        r = row(store)
        res = await store.reserve("vk_1", 1, caps("vk_1", 700, 10_000), r, "me")
        assert [i.amount for i in res.items] == [700, 700, 1]
        with psycopg.connect(url, autocommit=True) as db:
            assert db.execute("SELECT count(*) FROM audit").fetchone() == (1,)
            used = db.execute("SELECT reserved FROM counters WHERE cap = 'daily_usd'").fetchone()
        assert used == (700,)
    finally:
        await store.close()
        pg_databases.drop(url)
