"""What the PostgreSQL differential tests share (tests/store/test_pg_*_diff.py): two databases
seeded alike, one store on each, and a dump of the tables a reservation or settlement writes.

The reference is the shared Python path (`SQLStore`'s methods, the model every engine runs);
the subject is PostgreSQL's one-statement path. Both run on PostgreSQL, on identical data, with
the same injected clock, and must leave identical rows and answer identical results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from keybrake.store import open_store
from keybrake.store.pg import PostgresStore
from tests.harness import store_options
from tests.pg import Databases
from tests.store.contract import DAY0, Clock

TABLES = {
    "counters": "scope, cap, window_start",
    "audit": "id",
    "dedup": "key_id, fingerprint",
    "ledger": "credential, object_id",
    "ledger_counts": "credential, object_id, row_id",
}


@dataclass
class Pair:
    """The subject (`new`) and the reference (`ref`) stores, each on its own database."""

    runner: asyncio.Runner
    dbs: Databases
    urls: tuple[str, str]
    new: PostgresStore
    ref: PostgresStore
    clock: Clock

    def reset(self, now: int) -> None:
        for url in self.urls:
            self.dbs.emptied(url)
        self.clock.ms = now

    def seed(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        for url in self.urls:
            with psycopg.connect(url, autocommit=True) as c:
                for sql, params in statements:
                    c.execute(sql, params)

    def dumps(self) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        out = []
        for url in self.urls:
            with psycopg.connect(url, autocommit=True) as c:
                out.append(
                    {t: c.execute(f"SELECT * FROM {t} ORDER BY {k}").fetchall() for t, k in TABLES.items()}  # noqa: S608
                )
        return out[0], out[1]


@pytest.fixture(name="pair")
def pair_fixture(pg_databases: Databases, tmp_path: Path) -> Iterator[Pair]:
    urls = (pg_databases.create(), pg_databases.create())
    clock = Clock(DAY0 + 3_600_000)
    runner = asyncio.Runner()
    new = open_store(urls[0], tmp_path, migrate=False, clock=clock, pg=store_options())
    ref = open_store(urls[1], tmp_path, migrate=False, clock=clock, pg=store_options())
    assert isinstance(new, PostgresStore) and isinstance(ref, PostgresStore)
    for store in (new, ref):
        # The pools open their connections in background threads, and psycopg_pool draws each one's
        # expiry jitter from the global `random`: wait for them here, not while Hypothesis draws
        # the first example (it warns when the global random state moves during a draw).
        store._pool.wait(timeout=30)
    try:
        yield Pair(runner, pg_databases, urls, new, ref, clock)
    finally:
        runner.run(new.close())
        runner.run(ref.close())
        runner.close()
        for url in urls:
            pg_databases.drop(url)
