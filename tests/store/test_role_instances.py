"""The instances role (`InstanceStore`, housekeeping's): leases, and recovery of the rows
dead processes left in flight (docs/scale-out.md). Every test runs on every engine."""

from __future__ import annotations

import os
import socket

from keybrake.store.base import AuditRow, InstanceStore, Store
from keybrake.store.ids import new_audit_id
from tests.store.contract import Clock, caps, key, row


async def test_recovery_marks_rows_of_dead_instances(store: Store, instances: InstanceStore) -> None:
    await store.insert_key(key(store), "h1")
    await instances.register_instance("ins_dead", socket.gethostname(), 2**22 + 12345)  # no such pid
    r0 = row(store)
    await store.reserve("vk_1", 1, caps("vk_1", 3_000_000, None), r0, "ins_dead")
    await instances.register_instance("ins_me", socket.gethostname(), os.getpid())
    assert await instances.recover_in_flight("ins_me", socket.gethostname(), 30_000) == 1
    got = await store.get_audit(r0.id)
    assert got is not None and got["verdict"] == "outcome_unknown"
    c = await store.counters_for("key:vk_1", [("total_usd", 0)])
    assert c["total_usd"].reserved == 3_000_000


async def test_a_row_in_flight_past_any_timeout_is_recovered_even_with_a_live_owner(
    store: Store, clock: Clock, instances: InstanceStore
) -> None:
    """Its settlement was lost (e.g. the database crashed after acknowledging it): not left in flight forever."""
    host = socket.gethostname()
    await store.insert_key(key(store), "h1")
    await instances.register_instance("ins_me", host, os.getpid())
    r0 = AuditRow(id=new_audit_id(clock.ms), ts=clock.ms, method="POST", path="/v1/charges", verdict="in_flight")
    await store.reserve("vk_1", 1, caps("vk_1", 3_000_000, None), r0, "ins_me")
    assert await instances.recover_in_flight("ins_me", host, 30_000, 60_000) == 0  # young, owner alive
    clock.ms += 61_000
    await instances.heartbeat("ins_me", host, os.getpid())
    assert await instances.recover_in_flight("ins_me", host, 30_000, 60_000) == 1
    got = await store.get_audit(r0.id)
    assert got is not None and got["verdict"] == "outcome_unknown"
    assert (await store.counters_for("key:vk_1", [("total_usd", 0)]))["total_usd"].reserved == 3_000_000


async def test_a_clean_stop_lets_any_replica_recover_its_rows_at_once(store: Store, instances: InstanceStore) -> None:
    """A deregistered process's lease is gone: its in-flight rows are recovered without waiting
    for the lease to go stale; a heartbeat re-registers a process another replica took for dead."""
    await store.insert_key(key(store), "h1")
    await instances.register_instance("ins_a", "host-a", 1)
    await instances.register_instance("ins_b", "host-b", 2)
    r0 = row(store)
    await store.reserve("vk_1", 1, caps("vk_1", 1000, None), r0, "ins_a")
    assert await instances.recover_in_flight("ins_b", "host-b", 3_600_000) == 0  # ins_a's lease is fresh
    await instances.deregister_instance("ins_a")
    assert await instances.recover_in_flight("ins_b", "host-b", 3_600_000) == 1
    got = await store.get_audit(r0.id)
    assert got is not None and got["verdict"] == "outcome_unknown"
    r1 = row(store)
    await instances.heartbeat("ins_a", "host-a", 1)  # back: registered again
    await store.reserve("vk_1", 1, caps("vk_1", 1000, None), r1, "ins_a")
    assert await instances.recover_in_flight("ins_b", "host-b", 3_600_000) == 0
