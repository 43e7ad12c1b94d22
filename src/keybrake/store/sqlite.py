"""Embedded SQLite engine (stdlib sqlite3, WAL).

Every method runs synchronously on the caller's thread and never awaits between BEGIN and
COMMIT, so transactions from concurrent tasks cannot interleave (aiosqlite's thread hop would
cost ~10× per operation and interleave on a shared connection). Reservations use
`BEGIN IMMEDIATE`, which takes SQLite's write lock up front: together with guarded UPSERTs this
makes the cap check exact across tasks and across processes sharing the file.

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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from keybrake import deadline
from keybrake.errors import EnforcementUnavailable
from keybrake.store.sql_base import Cursor
from keybrake.store.sql_store import SQLStore

R = TypeVar("R")


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
    ) -> None:
        super().__init__(clock)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        # A lock held by another process (a CLI command, a backup) is waited for this long, then
        # the request fails closed. The wait blocks the event loop, so keep it short.
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
        self._db.execute("PRAGMA mmap_size=268435456")
        self._db.execute("PRAGMA temp_store=MEMORY")
        self.report_timeout_ms = report_timeout_ms
        self._busy_timeout_ms = busy_timeout_ms
        self._reports = ThreadPoolExecutor(max_workers=max(1, report_workers), thread_name_prefix="keybrake-report")
        self._local = threading.local()  # .db: this report thread's read-only connection
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def now_ms(self) -> int:
        return self._clock() if self._clock is not None else int(time.time() * 1000)

    async def _run(self, fn: Callable[[], R]) -> R:
        """Inline: no await between BEGIN and COMMIT, so tasks cannot interleave. A request past
        its deadline is refused without touching the file; the wait for a lock held by another
        process is bounded by the busy timeout (the pipeline re-checks the deadline after)."""
        limit = deadline.bound()
        if limit is not None and time.monotonic() >= limit:
            raise EnforcementUnavailable("sqlite: the request's deadline passed before the store was reached")
        return fn()

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

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        """One IMMEDIATE transaction (SQLite's write lock up front)."""
        cur = self._db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc
        try:
            yield cur
        except sqlite3.Error as exc:
            self._rollback(cur)
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc
        except BaseException:
            self._rollback(cur)
            raise
        else:
            try:
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(cur)
                raise EnforcementUnavailable(f"sqlite: {exc}", commit_unknown=True) from exc

    @staticmethod
    def _rollback(cur: sqlite3.Cursor) -> None:
        try:
            cur.execute("ROLLBACK")
        except sqlite3.Error:
            pass

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
        self._db.close()
