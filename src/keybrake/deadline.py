"""A proxied request's deadline for getting its reservation (KEYBRAKE_RESERVE_DEADLINE_MS).

The pipeline starts one per request (`start`); every store call made by that request's task
reads it (`bound`) and gives up when it passes, so no request waits on the store longer than
its deadline, and a request past it is never forwarded (docs/operations.md, "Fail closed").

The deadline belongs to the task that started it: a task created from a request (the settle
writer, an alert) inherits the context variable but not the deadline, so background work is
never cut short by a request that has already been answered.

Times are `time.monotonic()` seconds, never the wall clock: a host clock step moves no deadline.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class Deadline:
    """`at`: monotonic seconds by which the request must hold its reservation; `task`: its owner;
    `kind`: the class its store calls queue in (`REQUEST`, or `LOOKUP` for a call made before
    the caller is known to hold a key: an uncached key lookup, `/_keybrake/self`, `/readyz`)."""

    at: float
    task: asyncio.Task[object] | None
    kind: str = "request"

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def extend(self, seconds: float) -> None:
        """Move the deadline by time that was not spent waiting on the store (the client's body,
        a vendor lookup, an earlier request with the same Idempotency-Key)."""
        if seconds > 0:
            self.at += seconds


# The classes a store call queues in (store/gate.py): each has its own cap on waiters.
REQUEST = "request"  # a proxied request's call (KEYBRAKE_STORE_MAX_WAITERS)
LOOKUP = "lookup"  # unauthenticated so far: an uncached key lookup, /_keybrake/self, /readyz
DENIAL = "denial"  # a final denial's audit row: served last, shed and counted when its cap is full or at its bound
BOOKKEEPING = "bookkeeping"  # settlements, alerts, admin calls: never shed, time-bounded

_CURRENT: ContextVar[Deadline | None] = ContextVar("keybrake_deadline", default=None)
_DENIAL: ContextVar[asyncio.Task[object] | None] = ContextVar("keybrake_denial", default=None)


def _task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None


def start(seconds: float, kind: str = REQUEST) -> Deadline:
    """A new deadline `seconds` from now for the current task (replacing any it had)."""
    d = Deadline(time.monotonic() + seconds, _task(), kind)
    _CURRENT.set(d)
    return d


def clear(*, denial: bool = False) -> None:
    """The current task has no deadline any more. `denial`: its verdict is final and nothing
    will be forwarded — its audit row is written with the store's usual bounds, queued in the
    DENIAL class (capped, served only when no other call waits; a row beyond the cap, or still
    waiting at its bound, is shed and counted)."""
    _CURRENT.set(None)
    _DENIAL.set(_task() if denial else None)


def queue_class() -> str:
    """The class the current task's next store call queues in (see REQUEST … BOOKKEEPING)."""
    d = current()
    if d is not None:
        return d.kind
    owner = _DENIAL.get()
    return DENIAL if owner is not None and owner is _task() else BOOKKEEPING


def current() -> Deadline | None:
    """The current task's own deadline, or None (background work, admin calls, other tasks)."""
    d = _CURRENT.get()
    if d is None or d.task is not _task():
        return None
    return d


def bound() -> float | None:
    """The monotonic time by which the current store call must be done, or None (no deadline)."""
    d = current()
    return None if d is None else d.at
