"""The PostgreSQL store's wait queue (`store/gate.py`): a freed slot goes to the first waiter of any
class but `denial`; a denial row's waiter gets one only when no other waits, and one still waiting
at its bound is shed (counted by the caller), never silently lost.

Regression: CI saw 5 of a real key's 10 charges refused while another key flooded denials on a
loaded machine — every reservation queued behind up to `KEYBRAKE_STORE_MAX_WAITERS` denial rows.
The property test drives the gate with random arrivals and releases and checks each grant against
a reference model of that order (and that no slot is ever lost or doubled).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.errors import EnforcementUnavailable
from keybrake.deadline import BOOKKEEPING, DENIAL, LOOKUP, REQUEST
from keybrake.store.gate import StoreGate, side_cap

FAR = 3600.0  # a bound no test waits for


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_request_is_served_before_denial_rows_that_queued_first() -> None:
    async def main() -> None:
        gate = StoreGate(2, 8, "test store")
        far = time.monotonic() + FAR
        await gate.enter(far)
        await gate.enter(far)
        denials = [asyncio.create_task(gate.enter(far, kind=DENIAL)) for _ in range(3)]
        await _settle()
        request = asyncio.create_task(gate.enter(far))
        await _settle()
        assert gate.waiting == 4
        gate.leave()
        await _settle()
        assert request.done() and not any(d.done() for d in denials)  # the request first
        gate.leave()
        await _settle()
        assert denials[0].done() and not denials[1].done()  # then the denials, in order
        gate.leave()
        gate.leave()
        await _settle()
        assert all(d.done() for d in denials) and gate.busy == 2 and gate.waiting == 0

    asyncio.run(main())


def test_a_denial_row_still_waiting_at_its_bound_is_shed() -> None:
    async def main() -> None:
        gate = StoreGate(1, 8, "test store")
        await gate.enter(time.monotonic() + FAR)
        with pytest.raises(EnforcementUnavailable) as denied:
            await gate.enter(time.monotonic() + 0.05, kind=DENIAL)
        assert denied.value.shed  # counted by the caller as shed, not lost
        with pytest.raises(EnforcementUnavailable) as req:
            await gate.enter(time.monotonic() + 0.05)
        assert not req.value.shed  # a request's timeout is a 503, not a shed row
        gate.leave()
        assert gate.busy == 0 and gate.waiting == 0

    asyncio.run(main())


KINDS = st.sampled_from([REQUEST, LOOKUP, DENIAL, BOOKKEEPING])
OPS = st.lists(st.one_of(KINDS, st.just("leave")), max_size=60)


@settings(max_examples=150, deadline=None)
@given(slots=st.integers(1, 3), max_waiters=st.integers(0, 5), ops=OPS)
def test_grants_follow_the_model_order(slots: int, max_waiters: int, ops: list[str]) -> None:
    """Each arrival is granted, queued or refused exactly as the model says; each release grants
    the model's next waiter; running calls never exceed `slots`."""
    caps = {REQUEST: max_waiters, LOOKUP: side_cap(max_waiters), DENIAL: max_waiters}

    async def main() -> None:
        gate = StoreGate(slots, max_waiters, "test store")
        far = time.monotonic() + FAR
        free, main_q, denial_q = slots, deque[int](), deque[int]()
        kind_of: dict[int, str] = {}
        tasks: dict[int, asyncio.Task[None]] = {}
        granted: set[int] = set()
        refused: dict[int, bool] = {}  # id → shed
        for i, op in enumerate(ops):
            if op == "leave":
                if free == slots:
                    continue  # nothing running: nothing to give back
                gate.leave()
                queue = main_q or denial_q
                if queue:
                    granted.add(queue.popleft())
                else:
                    free += 1
            else:
                kind_of[i] = op
                tasks[i] = asyncio.create_task(gate.enter(far, kind=op))
                if free > 0 and not main_q and not denial_q:
                    free -= 1
                    granted.add(i)
                elif op in caps and sum(kind_of[j] == op for j in (*main_q, *denial_q)) >= caps[op]:
                    refused[i] = op == DENIAL
                else:
                    (denial_q if op == DENIAL else main_q).append(i)
            await _settle()
            done = {j for j, t in tasks.items() if t.done() and t.exception() is None}
            assert done == granted, (op, done ^ granted)
            ended = [(j, t.exception()) for j, t in tasks.items() if t.done()]
            failed = {j: bool(getattr(exc, "shed", None)) for j, exc in ended if exc is not None}
            assert failed == refused
            assert gate.busy == slots - free and gate.waiting == len(main_q) + len(denial_q)
        for t in tasks.values():
            t.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)

    asyncio.run(main())
