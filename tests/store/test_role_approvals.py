"""The approvals role (`ApprovalStore`, the holder's and the decision surface's): a state changes
once, only from pending; an approval counts only before the hold ends; grants never hand out
more than granted; recovery releases what a dead replica held (docs/approvals.md). Every test
runs on every engine."""

from __future__ import annotations

import asyncio
import os
import socket

from keybrake.store.base import ApprovalQuery, ApprovalRecord, ApprovalStore, InstanceStore, Store
from tests.store.contract import Clock, caps, key, row


def held(store: Store, audit_id: str, *, wait_ms: int = 60_000, run: str | None = None) -> ApprovalRecord:
    now = store.now_ms()
    return ApprovalRecord(
        id=f"apr_{audit_id[4:]}", audit_id=audit_id, key_id="vk_1", label="l", agent_run_id=run, vendor="stripe",
        method="POST", endpoint="/v1/charges", amount_usd=40_000_000, summary={"amount": "4000"},
        reasons=("it would move $40.00",), state="pending", created_at=now, expires_at=now + wait_ms, owner="ins_me",
    )  # fmt: skip


async def _hold(store: Store, approvals: ApprovalStore, **kw: object) -> ApprovalRecord:
    r0 = row(store)
    await store.reserve("vk_1", 1, caps("vk_1", 40_000_000, None), r0, "ins_me")
    rec = held(store, r0.id, **kw)  # type: ignore[arg-type]
    assert await approvals.hold_approval(rec, 10)
    return rec


async def test_a_hold_marks_its_row_and_one_decision_wins(store: Store, approvals: ApprovalStore) -> None:
    await store.insert_key(key(store), "h1")
    rec = await _hold(store, approvals)
    got = await store.get_audit(rec.audit_id)
    assert got is not None and got["approval"]["state"] == "awaiting_approval" and got["verdict"] == "in_flight"
    assert await approvals.pending_approvals("vk_1") == 1
    won, now = await approvals.decide_approval(rec.id, "approved", "adm_a", "ok")
    assert won and now is not None and now.state == "approved" and now.decided_by == "adm_a"
    lost, now = await approvals.decide_approval(rec.id, "denied", "adm_b", "no")
    assert not lost and now is not None and now.state == "approved"
    # The holder's ending loses to the decision and reads it back.
    ended = await approvals.end_approval(rec.id, "expired", "keybrake", "late", 5)
    assert ended is not None and ended.state == "approved"
    got = await store.get_audit(rec.audit_id)
    assert got is not None and got["approval"]["state"] == "approved" and got["approval"]["reason"] == "ok"


async def test_a_decision_after_the_hold_ended_is_refused(store: Store, clock: Clock, approvals: ApprovalStore) -> None:
    await store.insert_key(key(store), "h1")
    rec = await _hold(store, approvals, wait_ms=1000)
    clock.ms += 1000
    won, now = await approvals.decide_approval(rec.id, "approved", "adm_a", None)
    assert not won and now is not None and now.state == "pending"
    assert await approvals.list_approvals(ApprovalQuery(state="pending")) == []
    assert [a.id for a in await approvals.list_approvals(ApprovalQuery(state="expired"))] == [rec.id]


async def test_racing_decisions_and_endings_leave_exactly_one_outcome(store: Store, approvals: ApprovalStore) -> None:
    await store.insert_key(key(store), "h1")
    for _ in range(5):
        rec = await _hold(store, approvals)
        results = await asyncio.gather(
            approvals.decide_approval(rec.id, "approved", "adm_a", None),
            approvals.decide_approval(rec.id, "denied", "adm_b", "no"),
            approvals.end_approval(rec.id, "cancelled", "keybrake", "gone"),
        )
        winners = [r for r in results[:2] if r[0]]
        final = await approvals.approval_get(rec.id)
        assert final is not None and final.state != "pending"
        if final.state in ("approved", "denied"):
            assert len(winners) == 1 and winners[0][1] is not None and winners[0][1].state == final.state
        else:
            assert winners == [] and final.state == "cancelled"


async def test_a_grant_hands_out_at_most_what_was_granted(store: Store, approvals: ApprovalStore) -> None:
    await store.insert_key(key(store), "h1")
    rec = await _hold(store, approvals, run="run-7")
    won, _ = await approvals.decide_approval(rec.id, "approved", "adm_a", None, grant_usd=100_000_000)
    assert won
    took = await asyncio.gather(*[approvals.use_grant("run:run-7", 30_000_000) for _ in range(6)])
    assert sorted(t for t in took if t is not None) == [rec.id] * 3  # 3 × $30 ≤ $100 < 4 × $30
    assert await approvals.use_grant("run:run-8", 1) is None  # another run has no grant
    # exactly $10 is left: a cent more is refused, the $10 itself is taken, then nothing
    assert await approvals.use_grant("run:run-7", 10_000_001) is None
    assert await approvals.use_grant("run:run-7", 10_000_000) == rec.id
    assert await approvals.use_grant("run:run-7", 1) is None


async def test_recovery_releases_calls_a_dead_replica_held_and_keeps_approved_ones(
    store: Store, approvals: ApprovalStore, instances: InstanceStore
) -> None:
    await store.insert_key(key(store), "h1")
    host = socket.gethostname()
    await instances.register_instance("ins_me", host, 2**22 + 4242)  # the holder: a pid that is gone
    waiting = await _hold(store, approvals)
    approved = await _hold(store, approvals)
    assert (await approvals.decide_approval(approved.id, "approved", "adm_a", None))[0]
    await instances.register_instance("ins_other", host, os.getpid())
    assert await instances.recover_in_flight("ins_other", host, 30_000) == 2
    released = await store.get_audit(waiting.audit_id)
    assert released is not None and released["verdict"] == "denied_approval_timeout"
    assert released["approval"]["state"] == "cancelled"
    kept = await store.get_audit(approved.audit_id)
    assert kept is not None and kept["verdict"] == "outcome_unknown"  # it may have been sent
    assert (await store.counters_for("key:vk_1", [("total_usd", 0)]))["total_usd"].reserved == 40_000_000
    again = await approvals.approval_get(waiting.id)
    assert again is not None and again.state == "cancelled"


async def test_the_pending_limit_holds_under_concurrent_holds(store: Store, approvals: ApprovalStore) -> None:
    await store.insert_key(key(store), "h1")
    recs = []
    for _ in range(6):
        r0 = row(store)
        await store.reserve("vk_1", 1, caps("vk_1", 1_000_000, None), r0, "ins_me")
        recs.append(held(store, r0.id))
    took = await asyncio.gather(*[approvals.hold_approval(r, 4) for r in recs])
    assert sorted(took) == [False, False, True, True, True, True]
    assert await approvals.pending_approvals("vk_1") == 4
