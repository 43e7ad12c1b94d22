"""SQLite WAL checkpoints run on a background thread (`sqlite_wal.Checkpointer`), never on the
writer connection (`wal_autocheckpoint=0`); a crash right after answers keeps every answered
reservation (each answer came after its group's COMMIT)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keybrake.store import open_store, sqlite_wal
from keybrake.store.sqlite import SQLiteStore
from tests.store.contract import DAY0, Clock, caps, key, row

pytestmark = pytest.mark.sqlite_only


def _wal_frames(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames already copied into the database), read on a connection of our own."""
    db = sqlite3.connect(path)
    try:
        _, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return frames, done
    finally:
        db.close()


async def _fill(store: SQLiteStore, n: int) -> None:
    await asyncio.gather(
        *(store.reserve("vk_1", 1, caps("vk_1", 1, None), row(store), "me") for _ in range(n)),
    )


async def test_the_writer_never_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_wal, "CHECKPOINT_EVERY_S", 3600.0)  # the background thread stays asleep
    s = open_store(None, tmp_path, migrate=False, clock=Clock(DAY0 + 3_600_000))
    assert isinstance(s, SQLiteStore)
    try:
        assert s._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        await s.insert_key(key(s), "h1")
        for _ in range(400):  # one transaction each: well past SQLite's 1,000-page autocheckpoint
            await _fill(s, 1)
        assert s._checkpointer.passes == 0
        frames, _ = _wal_frames(tmp_path / "keybrake.db")
        assert frames > 1000  # nothing restarted the WAL: no checkpoint ran on the writer
    finally:
        await s.close()


async def test_the_background_thread_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_wal, "CHECKPOINT_EVERY_S", 0.02)
    s = open_store(None, tmp_path, migrate=False, clock=Clock(DAY0 + 3_600_000))
    assert isinstance(s, SQLiteStore)
    try:
        await s.insert_key(key(s), "h1")
        await _fill(s, 20)
        for _ in range(500):  # polled, not timed: the thread wakes every 20 ms
            if s._checkpointer.frames > 0:
                break
            await asyncio.sleep(0.02)
        assert s._checkpointer.passes > 0 and s._checkpointer.frames > 0
        frames, done = _wal_frames(tmp_path / "keybrake.db")
        assert done <= frames
    finally:
        await s.close()
    assert not s._checkpointer._thread.is_alive() and not s._group._thread.is_alive()


async def test_the_wal_rewinds_under_constant_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past WAL_REWIND_BYTES the writer finishes a checkpoint between two groups: the WAL is
    written again from its start instead of growing with every commit (without it, this load
    leaves an ≈ 11 MiB WAL)."""
    monkeypatch.setattr(sqlite_wal, "CHECKPOINT_EVERY_S", 3600.0)  # passes are run by the test, in step
    monkeypatch.setattr(sqlite_wal, "WAL_REWIND_BYTES", 256 * 1024)
    s = open_store(None, tmp_path, migrate=False, clock=Clock(DAY0 + 3_600_000))
    assert isinstance(s, SQLiteStore)
    try:
        await s.insert_key(key(s), "h1")
        for i in range(300):
            await _fill(s, 8)
            if i % 10 == 0:
                s._checkpointer.checkpoint()  # the background pass (asks for a rewind past the bound)
        assert s._group.rewinds >= 1
        assert Path(str(tmp_path / "keybrake.db") + "-wal").stat().st_size < 6 * 1024 * 1024
    finally:
        await s.close()


async def test_a_checkpoint_error_is_logged_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sqlite_wal, "CHECKPOINT_EVERY_S", 0.02)
    calls: list[int] = []

    def broken(self: sqlite_wal.Checkpointer) -> tuple[int, int, int]:
        calls.append(1)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_wal.Checkpointer, "checkpoint", broken)
    s = open_store(None, tmp_path, migrate=False, clock=Clock(DAY0 + 3_600_000))
    assert isinstance(s, SQLiteStore)
    try:
        await s.insert_key(key(s), "h1")
        for _ in range(500):
            if len(calls) >= 2:
                break
            await _fill(s, 1)
            await asyncio.sleep(0.02)
        assert len(calls) >= 2  # it tried again after the error
        r = await s.reserve("vk_1", 1, caps("vk_1", 1, None), row(s), "me")
        assert r.cap_hit is None
    finally:
        await s.close()
    assert "background WAL checkpoint failed" in caplog.text


_CHILD = """
import asyncio, sys
from pathlib import Path
from keybrake.store import open_store
from tests.store.contract import caps, key, row

async def main(data):
    s = open_store(None, Path(data), migrate=False)
    await s.insert_key(key(s), "h1")
    print("ready", flush=True)
    n = 0
    while True:
        rows = [row(s) for _ in range(8)]
        got = await asyncio.gather(*(s.reserve("vk_1", 1, caps("vk_1", 1000, None), r, "me") for r in rows))
        for r, g in zip(rows, got):
            assert g.cap_hit is None
            print("answered", r.id, flush=True)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.multiprocess
def test_kill_9_after_answers_keeps_every_answered_reservation(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    answered: list[str] = []
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        end = time.monotonic() + 60
        while len(answered) < 400 and time.monotonic() < end:
            line = proc.stdout.readline()
            if line.startswith("answered "):
                answered.append(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert len(answered) >= 400
    db = sqlite3.connect(tmp_path / "keybrake.db")
    try:
        stored = {r[0] for r in db.execute("SELECT id FROM audit WHERE key_id = 'vk_1'")}
        reserved = db.execute("SELECT SUM(reserved) FROM counters WHERE scope = 'key:vk_1' AND cap = 'total_usd'")
        total = reserved.fetchone()[0]
    finally:
        db.close()
    assert set(answered) <= stored  # every answered reservation survived the crash
    assert total == 1000 * len(stored)  # and its counters with it, exactly
