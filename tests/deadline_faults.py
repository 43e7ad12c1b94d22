"""Faults at the store seam for the reservation-deadline tests (tests/test_deadline_*.py).

A `Plan` says what each store call meets in turn: a wait before it, a wait after its answer (the
commit already made), and a failure before or after; `inject_faults` installs it on one running
Keybrake's store, on either engine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from keybrake.core.errors import EnforcementUnavailable
from keybrake.store.pg import PostgresStore
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread

DEADLINE_S = 0.3
TRANSIT_S = 0.1  # loopback transit from Keybrake's last check to the fake's clock, on a busy machine
DELAYS = (0.0, 0.0, 0.05, 0.2, 0.45)  # seconds a store call waits before / answers after
FAILS = (None, None, None, "before", "after")


@dataclass
class Plan:
    """What each store call meets, in turn: (wait before, wait after the call, failure)."""

    steps: list[tuple[float, float, str | None]] = field(default_factory=list)
    i: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> tuple[float, float, str | None]:
        with self.lock:
            if not self.steps:
                return 0.0, 0.0, None
            step = self.steps[self.i % len(self.steps)]
            self.i += 1
            return step


# Failures are injected only into the calls a request makes itself: a settlement that fails while
# its neighbours succeed is, by design, written in its degraded form (the settle writer's rule).
REQUEST_CALLS = frozenset({"key_by_hash", "reserve", "insert_audit", "counters_for", "dedup_get", "count_request"})


def method_name(fn: Callable[[], Any]) -> str:
    return getattr(getattr(fn, "func", None), "__name__", "")


def inject_faults(kb: KeybrakeThread, plan: Plan) -> None:
    """Delays and failures at the store seam: on PostgreSQL in the worker thread (the real gate,
    deadline and late-result handling run around it), on SQLite around the inline call (the
    transaction itself still runs whole, with no await inside)."""
    assert kb.app is not None
    store: Any = kb.app.rt.store
    if isinstance(store, PostgresStore):
        call = store._call

        def slow_call(fn: Callable[[], Any], bound: float | None = None) -> Any:
            before, after, fail = plan.next()
            fail = fail if method_name(fn) in REQUEST_CALLS else None
            time.sleep(before)
            if fail == "before":
                raise EnforcementUnavailable("injected: the store failed")
            out = call(fn, bound)
            time.sleep(after)
            if fail == "after":
                raise EnforcementUnavailable("injected: the answer was lost after COMMIT", commit_unknown=True)
            return out

        store._call = slow_call  # type: ignore[method-assign]  # a slow store: this instance only
    else:
        run = store._run

        async def slow_run(fn: Callable[[], Any]) -> Any:
            before, after, fail = plan.next()
            fail = fail if method_name(fn) in REQUEST_CALLS else None
            await asyncio.sleep(before)
            if fail == "before":
                raise EnforcementUnavailable("injected: the store failed")
            out = await run(fn)
            await asyncio.sleep(after)
            if fail == "after":
                raise EnforcementUnavailable("injected: the answer was lost after COMMIT", commit_unknown=True)
            return out

        store._run = slow_run


@contextmanager
def slow_keybrake(tmp_path: Path, fake_stripe: FakeStripe) -> Iterator[tuple[KeybrakeThread, Plan]]:
    """A Keybrake with a Stripe credential on the fake, its store faults following the (empty) plan."""
    plan = Plan()
    with KeybrakeThread(tmp_path / "d", reserve_deadline_ms=int(DEADLINE_S * 1000), pg_pool_size=4) as kb:
        kb.add_credential(fake_stripe.base_url)
        inject_faults(kb, plan)
        yield kb, plan


STEP = st.tuples(st.sampled_from(DELAYS), st.sampled_from(DELAYS), st.sampled_from(FAILS))
