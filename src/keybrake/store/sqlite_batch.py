"""SQLite's writer thread: group commit (WAL checkpoints run apart: `sqlite_wal.py`).

Group commit. Every store call queues for ONE writer thread (`GroupWriter`). The thread takes
everything queued when it wakes (at most `MAX_GROUP` calls) and runs the calls one after the
other, in arrival order, inside ONE `BEGIN IMMEDIATE … COMMIT`: each call's transaction (`tx`)
is a SAVEPOINT of the shared one, so a call that fails or is refused (a cap refusal raised
inside its transaction) rolls back to its savepoint only (`ROLLBACK TO; RELEASE`), and the
others keep what they wrote. No caller is answered before the shared COMMIT has returned: a
reservation and its in-flight audit row are committed before anything is forwarded, exactly as
with one transaction per call. A COMMIT that fails fails every call of the group that had
succeeded, with `EnforcementUnavailable(commit_unknown=True)`; an error that makes SQLite roll
back the whole transaction (disk full, I/O error) fails the calls it undid, which were never
answered. The answers of a group reach each event loop in one `call_soon_threadsafe`.

The first call of a transaction needs no savepoint: if it fails, the whole (so far its own)
transaction rolls back, so a lone call costs what it did before group commit. The transaction
is begun lazily by the first call that writes, with that call's busy timeout: a lock held by
another process fails that call as before, and the next call of the group tries again.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from keybrake.core.errors import EnforcementUnavailable

log = logging.getLogger("keybrake.store")

# Calls one group (one shared transaction) holds at most; more queued wait for the next group.
MAX_GROUP = 64
# A proxied call waits for a lock held elsewhere no longer than its time left, lowered in these
# steps (ms) so that the busy timeout changes rarely rather than on every call.
BUSY_STEP_MS = 250
_SAVEPOINT = "kb_call"


class Call:
    """One store call queued for the writer: `fn` runs there, its outcome answers `waiter`.

    `kind`: its queue class (counted in the store's `_queued` until answered); `limit`: its
    deadline (monotonic s) or None, enforced by `timer`; `gave_up`: set past the deadline: a
    call not started yet then never runs, and its late outcome goes to `fut` (the `pending` the
    caller was given), created only then. The caller awaits `waiter`: cancelling the caller
    cancels the waiter, never the call.
    """

    __slots__ = ("fn", "fut", "gave_up", "kind", "limit", "loop", "ok", "timer", "value", "waiter")

    def __init__(self, fn: Callable[[], Any], loop: asyncio.AbstractEventLoop, kind: str, limit: float | None) -> None:
        self.fn, self.loop, self.kind, self.limit = fn, loop, kind, limit
        self.waiter: asyncio.Future[Any] = loop.create_future()
        self.fut: asyncio.Future[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.gave_up = False
        self.ok = False
        self.value: Any = None

    def fail(self, exc: BaseException) -> None:
        self.ok, self.value = False, exc

    def expire(self) -> None:
        """On the event loop, at the deadline: the caller gets EnforcementUnavailable with
        `commit_unknown` and `pending`; the call is skipped if it has not started."""
        if self.waiter.done():  # answered, or the caller was cancelled (the call goes on)
            return
        self.gave_up = True
        self.fut = self.loop.create_future()
        self.waiter.set_exception(
            EnforcementUnavailable(
                "sqlite: no answer within the request's deadline (KEYBRAKE_RESERVE_DEADLINE_MS); "
                "the database file is locked by another process or slow",
                commit_unknown=True,
                pending=self.fut,
                transient=True,
            )
        )


class GroupWriter:
    """The one writer thread of a SQLite store, running queued calls in shared transactions.

    `db`: the writer connection (used on this thread only); `queued`: the store's per-class
    count of calls queued or running (decremented on the event loop as each call is answered);
    `busy_timeout_ms`: the connection's busy timeout for calls without a deadline.
    """

    def __init__(self, db: sqlite3.Connection, queued: dict[str, int], busy_timeout_ms: int) -> None:
        self.db = db
        self.commits = 0  # shared transactions committed (read by the checkpointer and tests)
        self.rewinds = 0  # checkpoints the writer finished so that the WAL rewinds (sqlite_wal.py)
        self._rewind = False  # the checkpointer asked for one
        self.closed = False
        self._queued = queued
        self._busy_timeout_ms = busy_timeout_ms
        self._busy_now = busy_timeout_ms  # the connection's busy_timeout (ms) right now
        self._in_group = False  # the writer thread runs a group: `tx` opens savepoints
        self._began = False  # this group's transaction was begun (and not rolled back by us)
        self._savepoint = False  # the running call's transaction is a savepoint
        self._q: deque[Call | None] = deque()
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()  # a token wakes the idle thread
        self._idle = False  # the thread found the queue empty and waits (or is about to)
        self._thread = threading.Thread(target=self._main, name="keybrake-sqlite", daemon=True)
        self._thread.start()

    def submit(self, call: Call) -> None:
        """Queue `call` (from the event loop); it is answered through its future."""
        if self.closed:
            raise EnforcementUnavailable("sqlite: the store is closed")
        self._queued[call.kind] += 1
        self._q.append(call)
        if self._idle:  # one wake-up per idle period, not one per call
            self._idle = False
            self._wake.put(None)

    def request_rewind(self) -> None:
        """(Any thread.) Finish a checkpoint between two groups, so the WAL rewinds (sqlite_wal.py)."""
        self._rewind = True

    def close(self) -> None:
        """Run every call queued so far, then stop the thread (blocking: call off the loop)."""
        self.closed = True
        self._q.append(None)
        self._wake.put(None)
        self._thread.join()

    # -- the writer thread ------------------------------------------------------------------

    def _main(self) -> None:
        q = self._q
        while True:
            if not q:
                self._idle = True
                if not q:  # checked again after saying so: a call queued meanwhile puts a token
                    self._wake.get()  # (a token left over from a wake-up not needed only loops once more)
                self._idle = False
                continue
            group: list[Call] = []
            stop = False
            while q and len(group) < MAX_GROUP:
                call = q.popleft()
                if call is None:
                    stop = True
                    break
                group.append(call)
            if group:
                try:
                    self._run_group(group)
                except BaseException as exc:  # a bug here must not stop the writer: fail the group
                    log.exception("sqlite: the writer thread failed a group of %d calls", len(group))
                    _rollback(self.db)
                    for call in group:
                        call.fail(EnforcementUnavailable(f"sqlite: {exc!r}", commit_unknown=True))
                self._answer(group)
                if self._rewind:  # after the answers: no caller waits for it
                    self._rewind = False
                    self._finish_checkpoint()
            if stop:
                return

    def _finish_checkpoint(self) -> None:
        """Copy what the background pass left (written since it began) so that the next write
        rewinds the WAL; PASSIVE: it never waits for a reader."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.rewinds += 1
        except sqlite3.Error as exc:
            log.warning("sqlite: WAL checkpoint on the writer failed (asked again later): %s", exc)

    def _run_group(self, group: list[Call]) -> None:
        """Run the calls in one shared transaction and commit it; outcomes stay on the calls."""
        done: list[Call] = []  # calls that succeeded in the open transaction
        self._in_group, self._began = True, False
        try:
            for call in group:
                if call.gave_up:
                    call.fail(
                        EnforcementUnavailable("sqlite: the request's deadline passed while queued for the store")
                    )
                    continue
                self._run_one(call)
                if self._began and not self.db.in_transaction:  # SQLite undid the whole transaction
                    lost = EnforcementUnavailable("sqlite: the shared transaction was rolled back by an error")
                    for c in (*done, call):
                        if c.ok:
                            c.fail(lost)
                    done.clear()
                    self._began = False
                elif call.ok:
                    done.append(call)
            self._commit(done)
        finally:
            self._in_group = False

    def _run_one(self, call: Call) -> None:
        busy = self._busy_timeout_ms
        if call.limit is not None:  # a lock held elsewhere is waited for no longer than the time left
            left_ms = int((call.limit - time.monotonic()) * 1000)
            if left_ms < busy - BUSY_STEP_MS:  # in steps: one PRAGMA per change, not one per call
                busy = max(1, left_ms // BUSY_STEP_MS * BUSY_STEP_MS or left_ms)
        try:
            if busy != self._busy_now:
                self.db.execute(f"PRAGMA busy_timeout={busy}")
                self._busy_now = busy
            call.ok, call.value = True, call.fn()
        except BaseException as exc:
            call.fail(exc)

    def _commit(self, done: list[Call]) -> None:
        if not self.db.in_transaction:
            return
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(self.db)
            unknown = EnforcementUnavailable(f"sqlite: {exc}", commit_unknown=True)
            for call in done:
                call.fail(unknown)
        else:
            self.commits += 1

    def _answer(self, group: list[Call]) -> None:
        """Answer the group: one hop to each event loop that queued calls in it."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Call]] = {}
        for call in group:
            by_loop.setdefault(call.loop, []).append(call)
        for loop, calls in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._resolve, calls)
            except RuntimeError:  # that loop is closed: nobody waits for these answers
                pass

    def _resolve(self, calls: list[Call]) -> None:
        """On the event loop: answer each call's waiter (or its `pending` future, past the
        deadline) and count it out of its queue class."""
        for call in calls:
            self._queued[call.kind] -= 1
            if call.timer is not None:
                call.timer.cancel()
            for fut in (call.waiter, call.fut):
                if fut is None or fut.done():
                    continue
                if call.ok:
                    fut.set_result(call.value)
                else:
                    fut.set_exception(call.value)
                    if fut is call.fut:
                        fut.exception()  # a late outcome is the caller's business, never an unretrieved error

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Cursor]:
        """One call's transaction: a savepoint of the group's shared one (begun here if needed);
        outside a group (not on the writer thread's group loop), a whole IMMEDIATE transaction.

        Raises EnforcementUnavailable for any database error (the call's writes are undone);
        any other exception also undoes them and propagates.
        """
        if not self._in_group:
            with self._solo() as cur:
                yield cur
            return
        cur = self.db.cursor()
        try:
            if self.db.in_transaction:
                cur.execute(f"SAVEPOINT {_SAVEPOINT}")
                self._savepoint = True
            else:
                cur.execute("BEGIN IMMEDIATE")
                self._began, self._savepoint = True, False
        except sqlite3.Error as exc:
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc
        try:
            yield cur
        except sqlite3.Error as exc:
            self._undo(cur)
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc
        except BaseException:
            self._undo(cur)
            raise
        if self._savepoint:
            try:
                cur.execute(f"RELEASE {_SAVEPOINT}")
            except sqlite3.Error as exc:
                self._undo(cur)
                raise EnforcementUnavailable(f"sqlite: {exc}") from exc

    def _undo(self, cur: sqlite3.Cursor) -> None:
        """Undo the running call's writes: to its savepoint, or the whole transaction it began."""
        if not self.db.in_transaction:
            return
        try:
            if self._savepoint:
                cur.execute(f"ROLLBACK TO {_SAVEPOINT}")
                cur.execute(f"RELEASE {_SAVEPOINT}")
            else:
                cur.execute("ROLLBACK")
                self._began = False
        except sqlite3.Error:
            pass

    @contextmanager
    def _solo(self) -> Iterator[sqlite3.Cursor]:
        cur = self.db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc
        try:
            yield cur
        except sqlite3.Error as exc:
            _rollback(self.db)
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc
        except BaseException:
            _rollback(self.db)
            raise
        try:
            cur.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(self.db)
            raise EnforcementUnavailable(f"sqlite: {exc}", commit_unknown=True) from exc


def _rollback(db: sqlite3.Connection) -> None:
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:
        pass
