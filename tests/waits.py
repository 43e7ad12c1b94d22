"""Polling instead of fixed sleeps: a test that needs "the race really ran" waits for evidence of it.

A fixed sleep followed by a count assertion fails on a slow or busy machine (CI measured 8 keys
issued in 0.2 s where a quiet machine issues hundreds); polling for the evidence, with a generous
deadline, keeps the test's meaning and removes the timing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


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
