"""PostgreSQL engine (psycopg 3 + psycopg_pool): several `keybrake serve` replicas on one database.

The store logic is the SQL engines' shared code (`sql_store.py`); this module runs it on worker
threads, each holding a pooled connection for the length of one store call, so the event loop
never waits on the network and no two calls share a connection.

- Exactness across replicas: a reservation is one transaction whose guarded multi-row UPSERT is
  re-evaluated on the latest committed counter (READ COMMITTED re-checks the `WHERE` after a row
  lock), so no replica overshoots; counters lock in one order; a deadlock is retried whole.
- Revokes and PATCHes: key status, expiry and policy version are read in the reservation
  transaction; nothing about a key is cached across requests (docs/scale-out.md).
- Clock: windows and expiry use the database's clock, read in the reservation's first statement;
  `now_ms()` (audit timestamps, admin answers) is the host clock corrected by the offset to the
  database's, measured at start and at every heartbeat.
- Durability: every transaction (settlements too, batched) commits with `synchronous_commit=on`.
- Reports (`@report`: audit pages, exports, spend) run on a pool of their own
  (`report_pool_size` connections, read-only, `statement_timeout = report_timeout_ms`) and
  worker threads of their own: a slow or all-day report never takes a connection or a thread
  a reservation needs (docs/operations.md, "Reports").
- Failure: no connection within `pool_timeout_s` (or the request's deadline, whichever is
  first), a statement past `statement_timeout_ms`, or any database error →
  `EnforcementUnavailable` (503, fail closed). Broken connections are dropped and replaced by
  the pool; once PostgreSQL is back, requests succeed again without a restart (reconnect
  attempts back off to at most RECONNECT_MAX_DELAY_S apart, however long the outage).
- Bounded waits (docs/operations.md, "Fail closed"): a `StoreGate` admits `pool_size` calls at
  once, queues `max_waiters` more per class, each no longer than its deadline (`keybrake.deadline`);
  a call past it is answered at once, its late result left to the caller (`.pending`).
- Silent cuts: TCP keepalives on both ends, `idle_in_transaction_session_timeout` (a
  transaction whose client went silent is rolled back by the server, releasing its counter
  locks within `idle_tx_timeout_ms`), and a watchdog that shuts the socket of any call running
  past `statement_timeout_ms` + WATCHDOG_GRACE_S (the server would have answered by then; COMMIT
  is timed too), so a worker thread is never stuck on a connection that stopped carrying bytes.
  A lost connection's server session is terminated and waited for (`_end_session`, matching its
  pid and this store's session name `keybrake-<8 hex>`, so no other Keybrake's session is hit)
  before the call ends, so a caller that then reads the row sees the transaction's final outcome.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from keybrake import deadline
from keybrake.core.errors import EnforcementUnavailable
from keybrake.logs import event
from keybrake.store.gate import StoreGate
from keybrake.store.pg_conn import (
    POSTGRES_SCHEMES,
    RECONNECT_MAX_DELAY_S,
    WATCHDOG_GRACE_S,
    PGOptions,
    _CappedBackoff,
    _conninfo,
    _Cursor,
    _open_pool,
    _rollback,
    _unavailable,
    end_session,
    is_postgres_url,
    live_connection,
    log,
    redact_url,
    shut_socket,
    sqlalchemy_pg_url,
)
from keybrake.store.pg_reserve import BUDGETS_LOCK as _BUDGETS_LOCK
from keybrake.store.pg_settle import PGSettleQueries
from keybrake.store.sql_base import Cursor, IdempotentCall
from keybrake.store.sql_store import SQLStore

# Connection names importers know from here (pg_conn.py defines them).
__all__ = ["POSTGRES_SCHEMES", "RECONNECT_MAX_DELAY_S", "PGOptions", "PostgresStore", "_CappedBackoff"]
__all__ += ["is_postgres_url", "redact_url", "sqlalchemy_pg_url"]

R = TypeVar("R")

# Errors after which the whole transaction is rolled back and may safely run again.
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
_RETRIES = 3
# Bookkeeping without a deadline (denial rows, settlements, alerts, admin calls) may wait this
# much longer than KEYBRAKE_PG_POOL_TIMEOUT for a slot in a burst: it forwards nothing.
BOOKKEEPING_EXTRA_WAIT_S = 5.0


class PostgresStore(PGSettleQueries, SQLStore):
    NOW_SQL = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    FOR_UPDATE = " FOR UPDATE"
    FOR_SHARE = " FOR SHARE"

    def __init__(self, url: str, options: PGOptions | None = None, *, clock: Callable[[], int] | None = None) -> None:
        super().__init__(clock)
        opts = options or PGOptions()
        self.options = opts
        self.where = redact_url(url)
        self._tag = tag = "-" + secrets.token_hex(4)  # sessions `keybrake-<8 hex>`: see `_end_session`
        self._conninfo = _conninfo(url, opts, statement_timeout_ms=opts.statement_timeout_ms, application_suffix=tag)
        self._pool = _open_pool(self._conninfo, min(2, opts.pool_size), opts.pool_size, opts.pool_timeout_s, "keybrake")
        self._executor = ThreadPoolExecutor(max_workers=opts.pool_size, thread_name_prefix="keybrake-pg")
        # One slot per worker thread: the executor's own (unbounded) queue is never used.
        self._gate = StoreGate(opts.pool_size, opts.max_waiters, f"postgresql ({self.where})")
        self._local = threading.local()
        self._open_reports(url, opts)
        self._busy: dict[int, list[Any]] = {}  # thread id → [conn, when its current statement began]
        self._busy_lock = threading.Lock()
        self._killed: set[int] = set()  # id() of connections the watchdog shut
        self._clock_base = (int(time.time() * 1000), time.monotonic())  # (db ms, monotonic s) at the last sync
        self._closed = False
        self._watchdog = threading.Thread(target=self._watch, name="keybrake-pg-watchdog", daemon=True)
        self._watchdog.start()
        try:
            self._call(self._sync_clock)
        except BaseException:
            self._close_sync()
            raise

    # -- where the shared code runs ---------------------------------------------------------

    def now_ms(self) -> int:
        """The database's clock in Unix ms, estimated: its reading at the last sync (start, every
        heartbeat) plus the monotonic time since — a host wall-clock step changes nothing."""
        if self._clock is not None:
            return self._clock()
        db_ms, mono = self._clock_base
        return db_ms + int((time.monotonic() - mono) * 1000)

    async def db_now_ms(self) -> int:
        """The database's clock read now (one round trip); resyncs `now_ms`."""
        if self._clock is not None:
            return self._clock()
        await self._run(self._sync_clock)
        return self.now_ms()

    async def _run(self, fn: Callable[[], R]) -> R:
        """Run `fn` on a worker thread, within the request's deadline if it has one.

        Raises EnforcementUnavailable: the store is closed, the wait queue is full, no slot or
        connection before the deadline, or the deadline passed while `fn` ran — then with
        `commit_unknown` and `pending` (the still-running call; its result may commit later).
        """
        if self._closed:
            raise EnforcementUnavailable("postgresql: the store is closed")
        limit = deadline.bound()
        now = time.monotonic()
        bound = limit if limit is not None else now + self.options.pool_timeout_s + BOOKKEEPING_EXTRA_WAIT_S
        if limit is not None and limit <= now:
            raise EnforcementUnavailable("postgresql: the request's deadline passed before the call", transient=True)
        kind = deadline.queue_class()
        await self._gate.enter(bound, kind=kind)
        try:
            fut = asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn, bound)
        except BaseException:
            self._gate.leave()
            raise
        fut.add_done_callback(lambda _: self._gate.leave())
        if limit is None:
            try:  # shielded: a cancelled caller never frees a slot its thread still holds
                return await asyncio.shield(fut)
            except EnforcementUnavailable as exc:  # a denial row (served last) with no connection by its bound: shed
                if kind == deadline.DENIAL and not exc.commit_unknown and time.monotonic() >= bound:
                    raise EnforcementUnavailable(str(exc), transient=True, shed=True) from exc
                raise
        try:
            return await asyncio.wait_for(asyncio.shield(fut), max(0.0, limit - time.monotonic()))
        except TimeoutError:
            fut.add_done_callback(_consume)
            raise EnforcementUnavailable(
                "postgresql: no answer within the request's deadline (KEYBRAKE_RESERVE_DEADLINE_MS)",
                commit_unknown=True,
                pending=fut,
                transient=True,
            ) from None

    def _call(self, fn: Callable[[], R], bound: float | None = None) -> R:
        """Run `fn` with a pooled connection; retry it whole only when that cannot repeat an effect.

        `bound` (monotonic s): no connection is waited for past it, and nothing is retried after it.
        An `IdempotentCall` is retried once, on a live connection, after its own was lost mid-call.
        """
        idempotent = isinstance(fn, IdempotentCall)
        for attempt in range(_RETRIES + 1):
            wait = self.options.pool_timeout_s
            if bound is not None:
                wait = min(wait, bound - time.monotonic())
                if wait <= 0:
                    raise EnforcementUnavailable(
                        f"postgresql: the request's deadline passed ({self.where})", transient=True
                    )
            self._local.conn_id = self._local.pid = None
            lost = False
            try:
                live = attempt and idempotent  # a retry runs on a connection that answered just now
                with live_connection(self._pool, wait) if live else self._pool.connection(timeout=wait) as conn:
                    self._local.conn, self._local.done, self._local.conn_id = conn, 0, id(conn)
                    self._local.pid = conn.info.backend_pid
                    me = threading.get_ident()
                    self._local.busy = busy = [conn, time.monotonic()]
                    with self._busy_lock:
                        self._busy[me] = busy
                    try:
                        return fn()
                    finally:
                        lost = idempotent and conn.broken  # the link is gone (not a timeout or a lock wait)
                        with self._busy_lock:
                            self._busy.pop(me, None)
                        self._local.conn = self._local.busy = None
            except psycopg_pool.PoolTimeout as exc:
                raise EnforcementUnavailable(
                    f"postgresql: no database connection within {wait:.2g} s ({self.where})", transient=True
                ) from exc
            except EnforcementUnavailable as exc:
                cause = exc.__cause__
                killed = self._was_killed()
                if (killed or isinstance(cause, psycopg.OperationalError)) and (exc.commit_unknown or self._local.done):
                    # The connection is lost with a transaction perhaps still running on the server
                    # (a COMMIT landing later): its outcome is final only once that session is gone.
                    self._end_session(self._local.pid)
                if killed:
                    raise EnforcementUnavailable(
                        f"postgresql: no answer within {self.options.statement_timeout_ms} ms + "
                        f"{WATCHDOG_GRACE_S:g} s; the connection was closed ({self.where})",
                        commit_unknown=exc.commit_unknown or self._local.done > 0,
                        transient=True,
                    ) from exc
                if bound is not None and time.monotonic() >= bound:
                    raise
                if attempt < _RETRIES and isinstance(cause, _RETRYABLE):
                    continue  # rolled back whole: nothing of it happened
                if attempt == 0 and isinstance(cause, psycopg.OperationalError) and (not self._local.done or lost):
                    # A dropped pooled connection nothing ran on (a restart), or an idempotent call's lost link.
                    self._pool.check()
                    continue
                raise
        raise AssertionError("unreachable")

    # -- reports: a pool and threads of their own -------------------------------------------

    def _open_reports(self, url: str, opts: PGOptions) -> None:
        timeout, suffix = opts.report_timeout_ms, self._tag + "-reports"
        conninfo = _conninfo(url, opts, statement_timeout_ms=timeout, read_only=True, application_suffix=suffix)
        self._report_pool = _open_pool(conninfo, 0, opts.report_pool_size, opts.pool_timeout_s, "keybrake-reports")
        self._report_executor = ThreadPoolExecutor(
            max_workers=opts.report_pool_size, thread_name_prefix="keybrake-pg-report"
        )

    async def _run_report(self, fn: Callable[[], R]) -> R:
        if self._closed:
            raise EnforcementUnavailable("postgresql: the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._report_executor, self._call_report, fn)

    def _call_report(self, fn: Callable[[], R]) -> R:
        """Run a report with a connection of the report pool (never the reservations' pool)."""
        try:
            with self._report_pool.connection() as conn:
                self._local.conn, self._local.done = conn, 0
                try:
                    return fn()
                except EnforcementUnavailable as exc:
                    if isinstance(exc.__cause__, pg_errors.QueryCanceled):
                        raise EnforcementUnavailable(
                            f"postgresql: the report ran past {self.options.report_timeout_ms} ms"
                            " (KEYBRAKE_REPORT_TIMEOUT_MS); narrow since/until or add filters"
                        ) from exc
                    raise
                finally:
                    self._local.conn = None
        except psycopg_pool.PoolTimeout as exc:
            raise EnforcementUnavailable(
                f"postgresql: no report connection within {self.options.pool_timeout_s:g} s"
                f" (KEYBRAKE_REPORT_POOL_SIZE={self.options.report_pool_size} busy)"
            ) from exc

    def _was_killed(self) -> bool:
        conn_id = getattr(self._local, "conn_id", None)
        with self._busy_lock:
            if conn_id is not None and conn_id in self._killed:
                self._killed.discard(conn_id)
                return True
        return False

    def _end_session(self, pid: int | None) -> None:
        """Make sure the lost connection's server session `pid` is gone (`pg_conn.end_session`)."""
        end_session(self._conninfo, self.where, pid)

    def _watch(self) -> None:
        """Shut the socket of any call running past statement_timeout + WATCHDOG_GRACE_S.

        The server cancels a statement at statement_timeout and says so; no answer by then means
        the link stopped carrying bytes (a silent cut: no RST, keepalives answered by a middlebox).
        Shutting the socket makes libpq fail at once; the pool drops the connection.
        """
        limit = self.options.statement_timeout_ms / 1000 + WATCHDOG_GRACE_S
        while not self._closed:
            time.sleep(0.25)
            now = time.monotonic()
            with self._busy_lock:
                stuck = [(tid, c) for tid, (c, t0) in self._busy.items() if now - t0 > limit]
                for tid, _ in stuck:
                    self._busy.pop(tid, None)
            for _, conn in stuck:
                self._shut(conn)
                event(log, "database connection silent; closed", logging.ERROR, where=self.where, after_s=limit)

    def _shut(self, conn: psycopg.Connection[Any]) -> None:
        shut_socket(conn)
        with self._busy_lock:
            self._killed.add(id(conn))  # the stuck thread learns why its call failed

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None:
            raise RuntimeError("store code ran outside PostgresStore._run")
        return conn

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        conn = self._conn()
        cur = _Cursor(conn.cursor(), self._local)
        try:
            cur.execute("BEGIN")
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc
        try:
            yield cur
        except psycopg.Error as exc:
            _rollback(conn)
            raise _unavailable(exc) from exc
        except BaseException:
            _rollback(conn)
            raise
        else:
            busy = getattr(self._local, "busy", None)
            if busy is not None:
                busy[1] = time.monotonic()  # COMMIT is a statement the watchdog times too
            try:
                conn.execute("COMMIT")
            except psycopg.Error as exc:
                _rollback(conn)
                raise _unavailable(exc, commit_unknown=True) from exc

    def _read(self, sql: str, params: Any = ()) -> list[Any]:
        try:
            return _Cursor(self._conn().cursor(), self._local).execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc

    # -- dialect ------------------------------------------------------------------------------

    def _json_text(self, column: str, field: str) -> tuple[str, Any]:
        return f"(CAST({column} AS json) ->> ?)", field

    def _lock_idempotency(self, cur: Cursor, key_id: str, idempotency_key: str) -> None:
        # A second request with the same Idempotency-Key waits here until the first one's
        # reservation commits, then finds it in flight (as SQLite's single writer guarantees).
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (f"{key_id}|{idempotency_key}",))

    def _lock_budgets(self, cur: Cursor, *, exclusive: bool) -> None:
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        cur.execute(f"SELECT {fn}(?)", (_BUDGETS_LOCK,))

    def _heartbeat(self, instance_id: str, hostname: str, pid: int) -> None:
        self._sync_clock()
        super()._heartbeat(instance_id, hostname, pid)

    def _sync_clock(self) -> None:
        """Measure this host's clock against the database's (round-trip midpoint)."""
        t0 = time.monotonic()
        db_ms = self._read(f"SELECT {self.NOW_SQL}")[0][0]
        t1 = time.monotonic()
        self._clock_base = (int(db_ms), (t0 + t1) / 2)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._close_sync)

    def _close_sync(self) -> None:
        self._closed = True  # the watchdog stops too
        self._executor.shutdown(wait=True)
        self._pool.close()
        if hasattr(self, "_report_pool"):
            self._report_executor.shutdown(wait=True)
            self._report_pool.close()


def _consume(fut: asyncio.Future[Any]) -> None:
    """A late call's outcome is the caller's business (`pending`); never an unretrieved error."""
    if not fut.cancelled():
        fut.exception()
