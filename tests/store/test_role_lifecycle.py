"""The lifecycle role (`LifecycleStore`, the process's): probes, the values it keeps in the
store (pepper, canary) and the clock; on every engine."""

from __future__ import annotations

import asyncio

from keybrake.store.base import LifecycleStore, ReservationStore
from tests.store.contract import Clock


async def test_probes_answer_on_a_working_store(lifecycle: LifecycleStore) -> None:
    await lifecycle.ping()
    await lifecycle.probe_write()  # a write transaction that changes nothing


async def test_a_meta_value_is_written_once_whoever_races_for_it(lifecycle: LifecycleStore) -> None:
    """Two processes starting at once each offer a pepper: both end up with the first one stored."""
    assert await lifecycle.get_meta("pepper") is None
    got = await asyncio.gather(*(lifecycle.put_meta_if_absent("pepper", bytes([n]) * 32) for n in range(5)))
    assert len(set(got)) == 1
    assert await lifecycle.get_meta("pepper") == got[0]
    assert await lifecycle.put_meta_if_absent("pepper", b"later") == got[0]
    assert await lifecycle.get_meta("canary") is None  # per name


async def test_an_injected_clock_is_the_store_clock(clock: Clock, reservations: ReservationStore) -> None:
    clock.ms += 12_345
    assert reservations.now_ms() == clock.ms and await reservations.db_now_ms() == clock.ms
