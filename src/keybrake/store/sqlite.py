"""Embedded SQLite engine (stdlib sqlite3, WAL).

Every store call runs whole on ONE writer thread (`sqlite_batch.GroupWriter`), in arrival
order, on the one connection, so transactions from concurrent tasks cannot interleave, and the
event loop never waits on the file: a lock held by another process (a CLI command, a backup)
delays only the calls queued behind it. The calls queued together share one transaction (group
commit: each call's transaction is a savepoint of it) and are answered once it committed. WAL
checkpoints run on a background thread, never on the writer (`sqlite_wal.Checkpointer`).

A caller with a deadline (`keybrake.deadline`) waits no longer than its time left: then
`EnforcementUnavailable` with `pending` (the call may still commit; the caller releases what it
reserved, as on PostgreSQL), and a call that had not started yet never runs. The busy wait of a
call with a deadline is bounded by its time left too. Reservations use `BEGIN IMMEDIATE`, which
takes SQLite's write lock up front: together with guarded UPSERTs this makes the cap check
exact across tasks and across processes sharing the file.

`ping` (readiness) probes a write (`BEGIN IMMEDIATE`) on a connection of its own, off the loop,
with a short busy timeout: a file locked by another process is reported, not waited for.

Operator reports (`@report`: audit pages, exports, spend) are the exception: a scan of a large
audit table would hold the event loop for seconds, so they run in worker threads, each on a
read-only connection of its own. In WAL mode a reader sees one committed snapshot and never
blocks the writer (nor waits for it); sqlite3 releases the GIL while a statement steps. A report
running past `report_timeout_ms` is interrupted (a progress handler) and answered 503.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from keybrake import deadline
from keybrake.core.errors import EnforcementUnavailable
from keybrake.deadline import BOOKKEEPING, DENIAL, LOOKUP, REQUEST
from keybrake.store.gate import side_cap
from keybrake.store.sql_base import Cursor
from keybrake.store.sql_store import SQLStore
from keybrake.store.sqlite_batch import Call, GroupWriter
from keybrake.store.sqlite_wal import Checkpointer

R = TypeVar("R")
# /readyz's write probe waits this long (ms) for a lock held by another process.
PROBE_BUSY_MS = 250


class SQLiteStore(SQLStore):
    """One connection in WAL mode."""

    NO_INDEX_PREFIX = "+"

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        clock: Callable[[], int] | None = None,
        busy_timeout_ms: int = 2000,
        report_workers: int = 2,
        report_timeout_ms: int = 30_000,
        max_waiters: int = 128,
    ) -> None:
        """`max_waiters`: proxied calls queued for the writer at most (KEYBRAKE_STORE_MAX_WAITERS);
        uncached key lookups get `side_cap(max_waiters)` places, denial rows `max_waiters` (apart)."""
        super().__init__(clock)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        # A lock held by another process (a CLI command, a backup) is waited for this long, then
        # the call fails closed (a proxied call waits no longer than its deadline). It runs on the
        # writer thread: the event loop never waits on it.
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
        self._db.execute("PRAGMA mmap_size=268435456")
        self._db.execute("PRAGMA temp_store=MEMORY")
        # The writer never checkpoints inline: a background thread does (sqlite_wal.Checkpointer);
        # past WAL_REWIND_BYTES of WAL, the writer finishes one between two groups.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self.report_timeout_ms = report_timeout_ms
        self._busy_timeout_ms = busy_timeout_ms
        self._reports = ThreadPoolExecutor(max_workers=max(1, report_workers), thread_name_prefix="keybrake-report")
        self._local = threading.local()  # .db: this report thread's read-only connection
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._caps = {REQUEST: max_waiters, LOOKUP: side_cap(max_waiters), DENIAL: max_waiters}
        self._queued = {REQUEST: 0, LOOKUP: 0, DENIAL: 0, BOOKKEEPING: 0}  # per class, queued or running
        self._group = GroupWriter(self._db, self._queued, int(busy_timeout_ms))
        self._checkpointer = Checkpointer(path, lambda: self._group.commits, self._group.request_rewind)
        self._prober = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keybrake-sqlite-probe")
        self._probe_db: sqlite3.Connection | None = None

    def now_ms(self) -> int:
        return self._clock() if self._clock is not None else int(time.time() * 1000)

    async def _run(self, fn: Callable[[], R]) -> R:
        """Run `fn` whole on the writer thread (in a group commit: `sqlite_batch.py`); a caller
        with a deadline waits only its time left. Answered once the group's COMMIT returned.

        Raises EnforcementUnavailable: the deadline passed before the call (nothing touched), or
        while it waited or ran — then with `commit_unknown` and `pending` (the call's future: it
        may still commit; one not started yet never runs and ends with this error).
        """
        limit = deadline.bound()
        if limit is not None and time.monotonic() >= limit:
            raise EnforcementUnavailable("sqlite: the request's deadline passed before the store was reached")
        kind = deadline.queue_class()
        cap = self._caps.get(kind)
        if cap is not None and self._queued[kind] >= cap + 1:  # + the one running
            raise EnforcementUnavailable(
                f"sqlite: {cap} {kind} calls already waiting for the writer (KEYBRAKE_STORE_MAX_WAITERS); "
                "refused at once",
                transient=True,
                shed=kind == DENIAL,
            )
        loop = asyncio.get_running_loop()
        call = Call(fn, loop, kind, limit)
        self._group.submit(call)
        if limit is not None:
            call.timer = loop.call_at(loop.time() + (limit - time.monotonic()), call.expire)
        waiter: asyncio.Future[R] = call.waiter
        return await waiter  # a cancelled caller cancels its waiter, never the running call

    async def ping(self) -> None:
        """Readiness: a write can start now (`BEGIN IMMEDIATE`, then ROLLBACK), probed on a
        connection of its own, off the event loop, waiting at most PROBE_BUSY_MS for a lock.

        Raises EnforcementUnavailable naming the cause (the file locked by another process).
        """
        await asyncio.get_running_loop().run_in_executor(self._prober, self._probe_write)

    def _probe_write(self) -> None:
        try:
            if self._probe_db is None:
                self._probe_db = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=PROBE_BUSY_MS / 1000
                )
                self._probe_db.execute(f"PRAGMA busy_timeout={PROBE_BUSY_MS}")
            self._probe_db.execute("BEGIN IMMEDIATE")
            self._probe_db.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise EnforcementUnavailable(
                    f"sqlite: the database file is locked by another process (no write lock within "
                    f"{PROBE_BUSY_MS} ms); reservations wait up to KEYBRAKE_SQLITE_BUSY_TIMEOUT_MS, then fail"
                ) from exc
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc
        except sqlite3.Error as exc:
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc

    async def _run_report(self, fn: Callable[[], R]) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._reports, self._report_call, fn)

    def _reader(self) -> sqlite3.Connection:
        """This worker thread's read-only connection (opened on first use)."""
        db: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if db is None:
            uri = f"file:{urllib.parse.quote(self.path)}?mode=ro"
            try:
                db = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout_ms / 1000
                )
            except sqlite3.Error as exc:
                raise EnforcementUnavailable(f"sqlite: {exc}") from exc
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA cache_size=-16384")  # 16 MiB per reader
            db.execute("PRAGMA mmap_size=268435456")
            with self._readers_lock:
                self._readers.append(db)
            self._local.reader = db
        return db

    def _report_call(self, fn: Callable[[], R]) -> R:
        """Run a report on this thread's reader; interrupt it past `report_timeout_ms`."""
        db = self._reader()
        deadline = time.monotonic() + self.report_timeout_ms / 1000
        late = [False]

        def past_deadline() -> int:
            late[0] = time.monotonic() > deadline
            return 1 if late[0] else 0

        db.set_progress_handler(past_deadline, 20_000)
        self._local.db = db
        try:
            return fn()
        except EnforcementUnavailable as exc:
            if late[0]:
                raise EnforcementUnavailable(
                    f"sqlite: the report ran past {self.report_timeout_ms} ms (KEYBRAKE_REPORT_TIMEOUT_MS);"
                    " narrow since/until or add filters"
                ) from exc
            raise
        finally:
            self._local.db = None
            db.set_progress_handler(None, 0)

    def _tx(self) -> AbstractContextManager[Cursor]:
        """One call's IMMEDIATE transaction: a savepoint of its group's shared transaction
        (`GroupWriter.tx`); raises EnforcementUnavailable for any database error."""
        return self._group.tx()

    def _read(self, sql: str, params: Any = ()) -> list[Any]:
        db = getattr(self._local, "db", None) or self._db  # a report thread's reader, else the loop's
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc

    def _json_text(self, column: str, field: str) -> tuple[str, Any]:
        # json_each compares the member name exactly: a JSON path ('$."…"') cannot hold every
        # name (a `"` in it is a malformed path), so one matching rule holds on both engines.
        return f"(SELECT value FROM json_each({column}) WHERE key = ?)", field

    async def close(self) -> None:
        with self._readers_lock:
            for db in self._readers:
                db.interrupt()  # a report still running stops now, not at its timeout
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self._reports.shutdown(wait=True, cancel_futures=True)
        )
        with self._readers_lock:
            for db in self._readers:
                db.close()
            self._readers.clear()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._group.close)  # queued calls finish
        await loop.run_in_executor(None, self._checkpointer.close)
        await loop.run_in_executor(None, lambda: self._prober.shutdown(wait=True))
        if self._probe_db is not None:
            self._probe_db.close()
        self._db.close()
