"""bench/pg_wire.py: the counting relay between a client and PostgreSQL, through psycopg on the
real server (round trips, statements, commits, byte-exact relaying) and on scripted messages."""

from __future__ import annotations

import asyncio
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import pg_wire

pytestmark = pytest.mark.pg_cluster  # brings its own connections; runs once, in the first pass


@pytest.fixture
def relay() -> Iterator[pg_wire.PgWireRelay]:
    with pg_wire.PgWireRelay(5432) as r:
        yield r


def _connect(relay: pg_wire.PgWireRelay, pg_url: str) -> psycopg.Connection:
    return psycopg.connect(relay.rewrite_url(pg_url), autocommit=True, connect_timeout=5)


def test_autocommit_selects_are_one_round_trip_and_one_transaction_each(
    relay: pg_wire.PgWireRelay, pg_url: str
) -> None:
    with _connect(relay, pg_url) as conn:
        before = relay.totals()
        for i in range(3):
            assert conn.execute("SELECT %s::int + 1", (i,)).fetchone() == (i + 1,)
        d = relay.totals() - before
    # each is an implicit transaction: the wire cannot tell a reading SELECT from a writing one
    assert (d.round_trips, d.statements, d.commits, d.ready_for_query) == (3, 3, 3, 3)
    assert relay.totals().connections == 1


def test_explicit_transaction_is_three_round_trips_and_one_commit(relay: pg_wire.PgWireRelay, pg_url: str) -> None:
    with _connect(relay, pg_url) as conn:
        conn.execute("CREATE TABLE t (x int)")
        before = relay.totals()
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("COMMIT")
        d = relay.totals() - before
        assert (d.round_trips, d.statements, d.commits) == (3, 3, 1)
        # A failed transaction's COMMIT answers ROLLBACK: no commit.
        before = relay.totals()
        conn.execute("BEGIN")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("INSERT INTO t VALUES (1 / 0)")
        conn.execute("COMMIT")
        d = relay.totals() - before
        assert (d.round_trips, d.commits) == (3, 0)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_autocommit_writes_commit_and_failed_ones_do_not(relay: pg_wire.PgWireRelay, pg_url: str) -> None:
    with _connect(relay, pg_url) as conn:
        conn.execute("CREATE TABLE t (x int)")
        before = relay.totals()
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("UPDATE t SET x = 2")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("INSERT INTO t VALUES (1 / 0)")
        d = relay.totals() - before
    assert (d.round_trips, d.statements, d.commits) == (3, 3, 2)


def test_pipeline_is_one_round_trip_and_one_implicit_transaction(relay: pg_wire.PgWireRelay, pg_url: str) -> None:
    with _connect(relay, pg_url) as conn:
        conn.execute("CREATE TABLE t (x int)")
        before = relay.totals()
        with conn.pipeline():
            for i in range(3):
                conn.execute("INSERT INTO t VALUES (%s)", (i,))
        d = relay.totals() - before
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (3,)
    # psycopg's pipeline sends Parse/Bind/Describe/Execute per statement and one Sync when the
    # block ends: one round trip, one ReadyForQuery, and the three INSERTs form one implicit
    # transaction, so one commit (PostgreSQL: the messages up to a Sync are one transaction).
    assert (d.round_trips, d.ready_for_query, d.statements, d.commits) == (1, 1, 3, 1)


def test_relay_is_byte_exact(relay: pg_wire.PgWireRelay, pg_url: str) -> None:
    query = (
        "SELECT i, md5(i::text), repeat(chr(65 + i % 26), i % 300), decode(md5(i::text), 'hex')"
        " FROM generate_series(1, 3000) i"
    )
    with psycopg.connect(pg_url, autocommit=True) as direct, _connect(relay, pg_url) as relayed:
        want = direct.execute(query).fetchall()
        before = relay.totals()
        got = relayed.execute(query).fetchall()
        d = relay.totals() - before
    assert got == want
    assert d.bytes_to_client > 400_000 and d.bytes_to_server > 0


def _msg(kind: bytes, body: bytes = b"") -> tuple[bytes, bytes]:
    return kind, body


def test_scripted_pipeline_of_two_syncs_is_one_round_trip() -> None:
    """Parse/Bind/Execute/Sync twice before any answer: one round trip, two statements, and two
    implicit transactions that wrote: two commits."""
    s = pg_wire.ConnState()
    assert s.client_message(b"", struct.pack("!i", pg_wire.SSL_REQUEST)) == b"N"
    assert s.client_message(b"", struct.pack("!i", 196608) + b"user\0postgres\0\0") is None
    s.server_message(b"Z", b"I")  # end of startup: not a round trip
    for _ in range(2):
        for kind in (b"P", b"B", b"E", b"S"):
            s.client_message(kind, b"")
    for _ in range(2):
        for kind, body in (_msg(b"1"), _msg(b"2"), _msg(b"C", b"INSERT 0 1\0"), _msg(b"Z", b"I")):
            s.server_message(kind, body)
    assert (s.counts.round_trips, s.counts.statements, s.counts.commits, s.counts.ready_for_query) == (1, 2, 2, 2)
    s.client_message(b"X", b"")  # Terminate awaits nothing
    assert s.counts.round_trips == 1


def test_scripted_simple_query_with_a_block_inside() -> None:
    """One Query 'BEGIN; INSERT ...; COMMIT': one round trip, one statement, one commit (not two)."""
    s = pg_wire.ConnState(started=True)
    s.client_message(b"Q", b"BEGIN; INSERT INTO t VALUES (1); COMMIT\0")
    for tag in (b"BEGIN", b"INSERT 0 1", b"COMMIT"):
        s.server_message(b"C", tag + b"\0")
    s.server_message(b"Z", b"I")
    assert (s.counts.round_trips, s.counts.statements, s.counts.commits) == (1, 1, 1)


def test_frames_split_across_reads() -> None:
    f = pg_wire._Frames(typed=True)
    data = b"Z" + struct.pack("!i", 5) + b"I" + b"C" + struct.pack("!i", 13) + b"SELECT 1\0"
    assert f.feed(data[:3]) == []
    assert f.feed(data[3:8]) == [(b"Z", b"I")]
    assert f.feed(data[8:]) == [(b"C", b"SELECT 1\0")]


def test_relay_process_answers_its_counters_as_json(pg_url: str, tmp_path: Path) -> None:
    """`python bench/pg_wire.py --port P --control-port C`, as run_bench --pg-wire starts it."""
    import socket
    import subprocess
    import time

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    script = Path(__file__).resolve().parents[1] / "bench" / "pg_wire.py"
    argv = [sys.executable, str(script), "--port", str(ports[0]), "--control-port", str(ports[1])]
    with (tmp_path / "relay.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert pg_wire.remote_totals(ports[1]) == pg_wire.WireCounts()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "relay.log").read_text()
                time.sleep(0.05)
        url = pg_url.rsplit("@", 1)[0] + f"@127.0.0.1:{ports[0]}/" + pg_url.rsplit("/", 1)[1]
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
        doc = pg_wire.remote_json(ports[1])
        assert doc["totals"]["round_trips"] == 1 and doc["totals"]["statements"] == 1
        assert len(doc["per_connection"]) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)  # 0.03 s when the machine is idle; once over 10 s on a machine at load 7


def test_scripted_commit_ending_an_implicit_transaction_counts_once() -> None:
    """One Query 'INSERT ...; COMMIT' (no BEGIN): the COMMIT ends the implicit transaction."""
    s = pg_wire.ConnState(started=True)
    s.client_message(b"Q", b"INSERT INTO t VALUES (1); COMMIT\0")
    for tag in (b"INSERT 0 1", b"COMMIT"):
        s.server_message(b"C", tag + b"\0")
    s.server_message(b"Z", b"I")
    assert (s.counts.round_trips, s.counts.commits) == (1, 1)


# -- Keybrake's PostgreSQL store on the wire: the ceiling of issue 14 -------------------------


def _real_commits(pg_url: str) -> tuple[int, int]:
    """Transactions committed in the database (pg_stat_database: every transaction, read-only and
    session start-up ones too, and every implicit transaction,
    the ones the relay cannot see — a SELECT of a function that writes — included), once every
    other session has ended (a session reports its counts when it ends); and how many
    transactions this reading made, which the next reading counts."""
    import time

    own = 0
    with psycopg.connect(pg_url, autocommit=True) as c:
        deadline = time.monotonic() + 20
        while True:
            own += 1
            others = c.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            if others == (0,):
                break
            assert time.monotonic() < deadline, "sessions still open"
            time.sleep(0.02)
        row = c.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0]), own + 2  # its polls, its read, and its session's start-up transaction


async def _requests(store: Any, n: int, concurrent: bool) -> None:
    """`n` reservations, each followed by its settlement; `concurrent`: all reserved at once,
    then settled in one batch (as the settle writer batches a burst)."""
    from keybrake.store.reservations import SettleJob, Settlement
    from tests.store.contract import caps, row

    settled = Settlement("allowed", 900, "response", "charge", False, forwarded=True)

    async def reserve() -> SettleJob:
        r = row(store)
        res = await store.reserve("vk_1", 1, caps("vk_1", 1000, 10**9, 10**9, 10**6), r, "inst")
        assert res.items, res
        return SettleJob(r, res.items, settled, "daily_usd")

    if concurrent:
        await store.settle_many(list(await asyncio.gather(*(reserve() for _ in range(n)))))
    else:
        for _ in range(n):
            await store.settle_many([await reserve()])


@pytest.mark.parametrize("concurrent", [False, True], ids=["sequential", "16-concurrent"])
async def test_a_request_costs_at_most_two_round_trips_on_postgres(
    relay: pg_wire.PgWireRelay, pg_url: str, concurrent: bool
) -> None:
    """Issue 14's ceiling, counted on the wire: one statement reserves (`keybrake_reserve`), one
    settles a batch (`keybrake_settle`). Commits: the relay's count (every committed transaction
    on the wire) must equal `pg_stat_database`'s."""
    from keybrake.store.pg import PGOptions, PostgresStore
    from tests.store.contract import key

    setup = PostgresStore(pg_url, PGOptions(pool_size=2))
    await setup.insert_key(key(setup), "h1")
    await setup.close()
    n = 16
    commits0, reading = _real_commits(pg_url)
    opened = relay.totals()
    store = PostgresStore(relay.rewrite_url(pg_url), PGOptions(pool_size=n))  # one clock read at start
    try:
        before = relay.totals()
        await _requests(store, n, concurrent)
        d = relay.totals() - before
    finally:
        await store.close()
    # Not the store's: its start-up clock read, and one transaction per session start-up.
    sessions = (relay.totals() - opened).connections
    real = _real_commits(pg_url)[0] - commits0 - reading - 1 - sessions
    assert d.round_trips <= 2 * n and d.statements <= 2 * n, d
    batches = n if not concurrent else 1
    assert real == n + batches, real  # one commit per reservation, one per settlement batch
    assert d.commits == real, (d, real)  # the wire sees every one of them
    if concurrent:  # a burst's settlements share one commit; one at a time, each has its own
        assert d.commits <= 1.2 * n, d
