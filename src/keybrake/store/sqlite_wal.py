"""SQLite WAL checkpoints off the writer thread.

The writer connection never checkpoints (`wal_autocheckpoint=0`): a COMMIT that
crossed SQLite's 1000-page threshold used to copy the WAL into the database inline, which pushed
reservation p99.9 to ≈ 5 ms. `Checkpointer` runs `wal_checkpoint(PASSIVE)` on a connection of
its own every `CHECKPOINT_EVERY_S` when something was committed since its last pass; PASSIVE
never takes the writer lock, so reservations go on beside it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("keybrake.store")

# The background checkpoint's period (s) while something is being committed.
CHECKPOINT_EVERY_S = 0.2
# Past this size (bytes) the WAL file is truncated (`wal_checkpoint(TRUNCATE)`, waiting at most
# TRUNCATE_BUSY_MS for the writer): the bound on the -wal file however long a report reads.
WAL_TRUNCATE_BYTES = 64 * 1024 * 1024
TRUNCATE_BUSY_MS = 100


class Checkpointer:
    """A background thread copying the WAL into the database file, on a connection of its own.

    Every `every_s` seconds, if the writer committed since the last pass (`commits()` changed),
    it runs `PRAGMA wal_checkpoint(PASSIVE)`: no writer lock taken, so reservations never wait
    on it. SQLite restarts the WAL from its start at the first write after a complete
    checkpoint, so under steady load the -wal file holds about one period of writes; a report
    reading an old snapshot holds the checkpoint back, and once the file passes
    WAL_TRUNCATE_BYTES it is truncated (`TRUNCATE`, waiting at most TRUNCATE_BUSY_MS for the
    writer). Errors are logged, never raised. `passes`/`frames`: checkpoints run and WAL frames
    copied (for tests and operators).
    """

    def __init__(self, path: str, commits: Callable[[], int], every_s: float | None = None) -> None:
        self.path = path
        self.passes = 0
        self.frames = 0
        self._commits = commits
        self._every_s = CHECKPOINT_EVERY_S if every_s is None else every_s
        self._stop = threading.Event()
        self._db: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._main, name="keybrake-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and join it (blocking: call off the event loop)."""
        self._stop.set()
        self._thread.join()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _main(self) -> None:
        seen = -1
        while not self._stop.wait(self._every_s):
            now = self._commits()
            if now == seen:
                continue
            seen = now
            try:
                self.checkpoint()
            except sqlite3.Error as exc:
                log.warning("sqlite: background WAL checkpoint failed (retried next pass): %s", exc)

    def checkpoint(self) -> tuple[int, int, int]:
        """One pass (on the calling thread): PASSIVE, then TRUNCATE if the -wal file is past its
        bound. Returns PASSIVE's (busy, WAL frames, frames checkpointed); raises sqlite3.Error."""
        if self._db is None:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout={TRUNCATE_BUSY_MS}")
        busy, frames, done = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.passes += 1
        self.frames += max(0, done)
        try:
            size = os.stat(self.path + "-wal").st_size
        except OSError:
            size = 0
        if size > WAL_TRUNCATE_BYTES:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return busy, frames, done
