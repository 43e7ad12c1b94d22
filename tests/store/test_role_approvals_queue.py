"""The approvals role's per-key queue (KEYBRAKE_APPROVAL_MAX_PENDING, docs/approvals.md), on every
engine: concurrent holds never take more places than are free, and a hold whose agent hung up
keeps its place until it would have ended, while a decided, expired or otherwise ended one frees
it. Generated: the queue's earlier holds, the limit and how many holds race for it."""

from __future__ import annotations

import asyncio
import os
import socket
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.store.base import ApprovalRecord, InstanceStore, RetryCheck, Store
from keybrake.store.ids import new_audit_id
from keybrake.store.sql_approvals import ABANDONED
from tests.harness import examples
from tests.store.contract import DAY0, Clock, caps, key, row

# How an earlier hold of the key stands: whether it takes a place in the queue.
EARLIER = {
    "pending": True,
    "abandoned": True,  # its agent hung up; its hold has not yet reached its end
    "abandoned_past": False,  # … and its hold would have ended by now
    "pending_past": False,  # its holder is ending it
    "denied": False,
    "approved": False,
    "stopped": False,  # cancelled by a replica stopping: the agent was told to ask again
}

_stores: weakref.WeakKeyDictionary[Callable[..., Store], tuple[Store, Clock]] = weakref.WeakKeyDictionary()
_runs = iter(range(10**9))


def _record(store: Store, audit_id: str, key_id: str, wait_ms: int) -> ApprovalRecord:
    now = store.now_ms()
    return ApprovalRecord(
        id=f"apr_{audit_id[4:]}", audit_id=audit_id, key_id=key_id, label="l", agent_run_id=None, vendor="stripe",
        method="POST", endpoint="/v1/charges", amount_usd=1, summary=None, reasons=("r",), state="pending",
        created_at=now, expires_at=now + wait_ms, owner="ins_me",
    )  # fmt: skip


async def _new(store: Store, key_id: str, wait_ms: int = 60_000) -> ApprovalRecord:
    r = replace(row(store), key_id=key_id)
    await store.reserve(key_id, 1, caps(key_id, 1, None), r, "ins_me")
    return _record(store, r.id, key_id, wait_ms)


async def _earlier(store: Store, key_id: str, how: str) -> None:
    """An earlier hold of the key, left as `how` says; a `_past` one's hold ends in 1 s (the test
    then moves the clock past it)."""
    rec = await _new(store, key_id, wait_ms=1000 if how.endswith("_past") else 60_000)
    assert await store.hold_approval(rec)
    if how.startswith("abandoned"):
        await store.end_approval(rec.id, "cancelled", "keybrake", ABANDONED, 5)
    elif how == "stopped":
        await store.end_approval(rec.id, "cancelled", "keybrake", "Keybrake stopped while the call waited", 5)
    elif how in ("denied", "approved"):
        taken, _ = await store.decide_approval(rec.id, how, "adm_a", "r")
        assert taken


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limit=st.integers(1, 5),
    earlier=st.lists(st.sampled_from(sorted(EARLIER)), max_size=6),
    racing=st.integers(1, 10),
)
def test_racing_holds_take_only_the_free_places_of_the_queue(
    open_engine: Callable[..., Store], limit: int, earlier: list[str], racing: int
) -> None:
    if open_engine not in _stores:
        clock = Clock(DAY0 + 3_600_000)
        _stores[open_engine] = (open_engine(clock), clock)
    store, clock = _stores[open_engine]
    key_id = f"vk_q{next(_runs)}"

    async def go() -> Any:
        await store.insert_key(replace(key(store), id=key_id), f"h_{key_id}")
        for how in earlier:
            await _earlier(store, key_id, how)
        clock.ms += 2000  # the `_past` holds have reached their end
        taken = sum(EARLIER[how] for how in earlier)
        assert await store.pending_approvals(key_id) == taken
        recs = [await _new(store, key_id) for _ in range(racing)]
        written = await asyncio.gather(*(store.hold_approval(r, limit) for r in recs))
        assert sum(written) == max(0, min(racing, limit - taken)), (earlier, limit, racing, written)
        assert await store.pending_approvals(key_id) == max(taken, min(limit, taken + racing))
        for rec, ok in zip(recs, written, strict=True):
            got = await store.approval_get(rec.id)
            assert (got is not None) == ok  # a refused hold writes nothing

    asyncio.run(go())


async def test_a_held_call_is_never_taken_for_sent_by_the_max_flight_recovery(
    store: Store, clock: Clock, instances: InstanceStore
) -> None:
    """A replica whose KEYBRAKE_APPROVAL_MAX_WAIT is shorter (a rolling config change) recovers rows
    in flight past its own max flight, whoever owns them. A call another, live replica still holds
    for approval was marked outcome_unknown: never sent, yet its Idempotency-Key retry was then
    taken for a retry of a call that may have moved money, and went without approval."""
    host = socket.gethostname()
    await store.insert_key(key(store), "h1")
    await instances.register_instance("ins_me", host, os.getpid())
    retry = RetryCheck("idem-1", "fp-1")
    r0 = replace(row(store), id=new_audit_id(clock.ms), idempotency_key="idem-1")
    await store.reserve("vk_1", 1, caps("vk_1", 3_000_000, None), r0, "ins_me", retry)
    rec = _record(store, r0.id, "vk_1", 3_600_000)  # a one-hour hold
    assert await store.hold_approval(rec)
    clock.ms += 61_000
    await instances.heartbeat("ins_me", host, os.getpid())
    assert await instances.recover_in_flight("ins_other", host, 30_000, 60_000) == 0
    got = await store.get_audit(r0.id)
    assert got is not None and got["verdict"] == "in_flight"
    r1 = replace(row(store), id=new_audit_id(clock.ms), idempotency_key="idem-1")
    again = await store.reserve("vk_1", 1, caps("vk_1", 3_000_000, None), r1, "ins_me", retry)
    assert again.retry_of is not None and again.retry_of.verdict == "in_flight"  # refused 409, never sent


async def test_a_call_whose_hold_ended_unapproved_is_released_not_taken_for_sent(
    store: Store, clock: Clock, instances: InstanceStore
) -> None:
    """The holder ended the hold (timeout, hang-up: the row's approval says so) and died before its
    release was written. Recovery took the row for a call that may have been sent (only rows
    still `awaiting_approval` were released): outcome_unknown, reservation kept, and the agent's
    Idempotency-Key retry then went as a retry, without approval."""
    host = socket.gethostname()
    await store.insert_key(key(store), "h1")
    await instances.register_instance("ins_gone", host, 2**22 + 4243)  # a pid that is gone
    retry = RetryCheck("idem-2", "fp-2")
    r0 = replace(row(store), id=new_audit_id(clock.ms), idempotency_key="idem-2")
    await store.reserve("vk_1", 1, caps("vk_1", 3_000_000, None), r0, "ins_gone", retry)
    rec = replace(_record(store, r0.id, "vk_1", 60_000), owner="ins_gone")
    assert await store.hold_approval(rec)
    ended = await store.end_approval(rec.id, "expired", "keybrake", "no one decided in time", 60_000)
    assert ended is not None and ended.state == "expired"
    await instances.register_instance("ins_other", host, os.getpid())
    await instances.recover_in_flight("ins_other", host, 30_000)
    got = await store.get_audit(r0.id)
    assert got is not None
    assert got["verdict"] == "denied_approval_timeout", got["verdict"]
    assert (await store.counters_for("key:vk_1", [("total_usd", 0)]))["total_usd"].reserved == 0
    r1 = replace(row(store), id=new_audit_id(clock.ms), idempotency_key="idem-2")
    again = await store.reserve("vk_1", 1, caps("vk_1", 3_000_000, None), r1, "ins_other", retry)
    assert again.retry_of is None  # a new call: held for approval again
