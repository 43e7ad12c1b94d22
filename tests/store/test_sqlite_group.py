"""SQLite group commit (`store/sqlite_batch.py`): the calls queued for the writer together share
one transaction, each in its own savepoint, and are answered only once it committed.

A group is made deterministic by holding the writer thread on an event (`_Gate`) while the
calls queue behind it; transactions are counted with sqlite3's trace callback, never timed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from keybrake.core.errors import EnforcementUnavailable
from keybrake.store import open_store
from keybrake.store.base import KeyState, ReserveResult, Settlement
from keybrake.store.sqlite import SQLiteStore
from tests.store.contract import DAY0, Clock, caps, key, row

pytestmark = pytest.mark.sqlite_only
T = TypeVar("T")


class _Gate:
    """Holds the writer thread (a call blocked on an event) so that the next calls queue together."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store, self.entered, self.release = store, threading.Event(), threading.Event()
        self.task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> _Gate:
        def hold() -> None:
            self.entered.set()
            self.release.wait(30)

        self.task = asyncio.ensure_future(self.store._run(hold))
        await asyncio.get_running_loop().run_in_executor(None, self.entered.wait, 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self.task is not None
        await self.task


class _Statements:
    """Counts the statements the writer connection runs (sqlite3's trace callback)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.seen: list[str] = []
        store._db.set_trace_callback(self.seen.append)

    def count(self, word: str) -> int:
        return sum(1 for s in self.seen if s.strip().upper().startswith(word))


@pytest.fixture
async def sq(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = open_store(None, tmp_path, migrate=False, clock=Clock(DAY0 + 3_600_000))
    assert isinstance(s, SQLiteStore)
    await s.insert_key(key(s), "h1")
    yield s
    await s.close()


async def _queued(store: SQLiteStore, calls: list[Awaitable[T]]) -> list[T | BaseException]:
    """Queue `calls` while the writer is held, release it: they run as one group."""
    async with _Gate(store):
        tasks = [asyncio.ensure_future(c) for c in calls]
        await asyncio.sleep(0)  # every task reaches the writer's queue
        for _ in range(50):
            if store._queued["bookkeeping"] >= len(calls) + 1:
                break
            await asyncio.sleep(0.01)
        assert not any(t.done() for t in tasks)  # nothing answered while the writer is held
    return list(await asyncio.gather(*tasks, return_exceptions=True))


async def _daily(store: SQLiteStore) -> tuple[int, int]:
    c = await store.counters_for("key:vk_1", [("daily_usd", DAY0)])
    return (c["daily_usd"].used, c["daily_usd"].reserved) if "daily_usd" in c else (0, 0)


async def test_concurrent_reservations_share_one_transaction(sq: SQLiteStore) -> None:
    traced = _Statements(sq)
    rows = [row(sq) for _ in range(6)]
    got = await _queued(sq, [sq.reserve("vk_1", 1, caps("vk_1", 1_000_000, 100_000_000), r, "me") for r in rows])
    assert all(isinstance(g, ReserveResult) and g.cap_hit is None for g in got)
    assert traced.count("BEGIN") == 1 and traced.count("COMMIT") == 1
    assert traced.count("SAVEPOINT") == 5  # the first call opened the transaction itself
    assert await _daily(sq) == (0, 6_000_000)
    for r in rows:
        assert (await sq.get_audit(r.id) or {}).get("verdict") == "in_flight"


async def test_a_refused_reservation_rolls_back_alone(sq: SQLiteStore) -> None:
    rows = [row(sq) for _ in range(5)]
    amounts = [4_000_000, 3_000_000, 5_000_000, 3_000_000, 1_000_000]  # the third one passes the cap
    traced = _Statements(sq)
    got = await _queued(
        sq, [sq.reserve("vk_1", 1, caps("vk_1", a, 10_000_000), r, "me") for a, r in zip(amounts, rows, strict=True)]
    )
    assert traced.count("COMMIT") == 1
    hits = [isinstance(g, ReserveResult) and g.cap_hit is not None for g in got]
    assert hits == [False, False, True, False, True]
    assert await _daily(sq) == (0, 10_000_000)
    assert await sq.get_audit(rows[2].id) is None and await sq.get_audit(rows[4].id) is None
    for r in (rows[0], rows[1], rows[3]):
        assert await sq.get_audit(r.id) is not None


async def test_a_failing_call_leaves_the_rest_of_its_group(sq: SQLiteStore) -> None:
    def bad() -> None:
        with sq._tx() as cur:
            cur.execute("UPDATE vault_keys SET label = 'changed' WHERE id = 'vk_1'")
            cur.execute("SELECT * FROM no_such_table")

    r0, r1 = row(sq), row(sq)
    got = await _queued(
        sq,
        [
            sq.reserve("vk_1", 1, caps("vk_1", 1_000_000, 10_000_000), r0, "me"),
            sq._run(bad),
            sq.reserve("vk_1", 1, caps("vk_1", 2_000_000, 10_000_000), r1, "me"),
        ],
    )
    assert isinstance(got[1], EnforcementUnavailable) and not got[1].commit_unknown
    assert await _daily(sq) == (0, 3_000_000)
    assert (await sq.get_key("vk_1")).label == "t:1"  # type: ignore[union-attr]


async def test_a_failed_commit_fails_the_whole_group_commit_unknown(sq: SQLiteStore) -> None:
    # A deferred foreign key violated inside the group makes its COMMIT fail.
    def arm() -> None:
        sq._db.execute("PRAGMA foreign_keys=ON")
        sq._db.execute("CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)")
        sq._db.execute("CREATE TEMP TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")

    def orphan() -> None:
        with sq._tx() as cur:
            cur.execute("INSERT INTO temp.child VALUES (7)")

    await sq._run(arm)
    rows = [row(sq) for _ in range(3)]
    calls: list[Awaitable[Any]] = [sq.reserve("vk_1", 1, caps("vk_1", 1_000_000, 10_000_000), r, "me") for r in rows]
    got = await _queued(sq, [*calls[:2], sq._run(orphan), calls[2]])
    assert all(isinstance(g, EnforcementUnavailable) and g.commit_unknown for g in got)
    assert await _daily(sq) == (0, 0)
    for r in rows:
        assert await sq.get_audit(r.id) is None
    # the writer goes on: the next group commits
    after = await sq.reserve("vk_1", 1, caps("vk_1", 1_000_000, 10_000_000), row(sq), "me")
    assert after.state is KeyState.OK and after.cap_hit is None


async def test_reservations_and_settlements_in_one_group(sq: SQLiteStore) -> None:
    r0 = row(sq)
    res = await sq.reserve("vk_1", 1, caps("vk_1", 5_000_000, 10_000_000), r0, "me")
    r0.verdict = "allowed"
    r1 = row(sq)
    got = await _queued(
        sq,
        [
            sq.settle(r0, res.items, Settlement("allowed", 2_000_000, "response", "charge", False, True), "daily_usd"),
            sq.reserve("vk_1", 1, caps("vk_1", 8_000_000, 10_000_000), r1, "me"),  # fits once r0 settled
        ],
    )
    assert got[0] is None and isinstance(got[1], ReserveResult) and got[1].cap_hit is None
    assert await _daily(sq) == (2_000_000, 8_000_000)


async def test_a_call_whose_deadline_passed_while_queued_never_runs(sq: SQLiteStore) -> None:
    from keybrake import deadline

    ran: list[int] = []
    async with _Gate(sq):
        deadline.start(0.05)
        with pytest.raises(EnforcementUnavailable) as exc:
            await sq._run(lambda: ran.append(1))
        assert exc.value.commit_unknown and exc.value.pending is not None
        pending = exc.value.pending
    with pytest.raises(EnforcementUnavailable):
        await pending
    assert ran == []
    assert sq._queued["request"] == 0


async def test_the_writer_survives_a_failure_of_its_own_code(sq: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from keybrake.store.sqlite_batch import GroupWriter

    real = GroupWriter._commit

    def broken(self: GroupWriter, done: list[Any]) -> None:
        monkeypatch.setattr(GroupWriter, "_commit", real)
        raise RuntimeError("bug")

    monkeypatch.setattr(GroupWriter, "_commit", broken)
    r0 = row(sq)
    with pytest.raises(EnforcementUnavailable) as exc:
        await sq.reserve("vk_1", 1, caps("vk_1", 1_000_000, 10_000_000), r0, "me")
    assert exc.value.commit_unknown
    assert await sq.get_audit(r0.id) is None and await _daily(sq) == (0, 0)  # rolled back
    after = await sq.reserve("vk_1", 1, caps("vk_1", 1_000_000, 10_000_000), row(sq), "me")
    assert after.cap_hit is None and await _daily(sq) == (0, 1_000_000)
