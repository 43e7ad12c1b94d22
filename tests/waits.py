"""Polling instead of fixed sleeps: a test that needs "the race really ran" waits for evidence of it.

A fixed sleep followed by a count assertion fails on a slow or busy machine (CI measured 8 keys
issued in 0.2 s where a quiet machine issues hundreds); polling for the evidence, with a generous
deadline, keeps the test's meaning and removes the timing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 30.0, every_s: float = 0.01) -> None:
    """Return once `check()` is true; raise AssertionError naming `what` after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for: {what}")
        time.sleep(every_s)


async def wait_until_async(
    check: Callable[[], bool], what: str, timeout_s: float = 30.0, every_s: float = 0.01
) -> None:
    """`wait_until` for a test running on an event loop: polls with `asyncio.sleep`, so the tasks under
    test keep running; raises AssertionError naming `what` after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for: {what}")
        await asyncio.sleep(every_s)


def healthz_while(base_url: str, work: Callable[[], T]) -> tuple[T, list[float]]:
    """Run `work` on a thread while `GET {base_url}/healthz` is probed every 20 ms, one probe at a
    time: (what `work` returned, each probe's wait in seconds). A stalled event loop shows as a
    long wait; every probe must answer 200."""
    import threading

    import httpx

    done: list[T] = []
    worker = threading.Thread(target=lambda: done.append(work()))
    waits: list[float] = []
    with httpx.Client(base_url=base_url, timeout=60) as probe:
        probe.get("/healthz")
        worker.start()
        while worker.is_alive():
            started = time.perf_counter()
            assert probe.get("/healthz").status_code == 200
            waits.append(time.perf_counter() - started)
            time.sleep(0.02)
    worker.join()
    assert done, "the work raised (see the thread's traceback above)"
    return done[0], waits
