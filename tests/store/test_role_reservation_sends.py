"""The reservation role (`ReservationStore`) with send caps, idempotent retries and dedup entries
(dedup_window_seconds); every test runs on every engine."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keybrake.core.windows import Window
from keybrake.store.base import (
    CapSpec,
    DedupCheck,
    DedupOutcome,
    InstanceStore,
    ReconcileStore,
    ReservationStore,
    RetryCheck,
    SettleJob,
    Settlement,
    Store,
)
from keybrake.store.ids import new_audit_id
from tests.store.contract import DAY0, Clock, caps, key, row

WINDOW = DedupCheck("fp-1", 60_000)


@pytest.fixture
async def store(open_engine: Callable[..., Store], clock: Clock) -> Store:
    s = open_engine(clock)
    await s.insert_key(key(s), "h1")
    return s


def with_sends(n: int, cap: int | None) -> list[CapSpec]:
    return [
        *caps("vk_1", 1000, None),
        CapSpec("key", "vk_1", "daily_send_cap", "daily_sends", Window.DAY, cap, n, False),
    ]


def sent(verdict: str = "allowed", *, billed: bool, keep: bool = False) -> Settlement:
    return Settlement(verdict, 1000, "estimate", "sms", keep_reservation=keep, forwarded=True, billed=billed)


async def sends(store: Store) -> tuple[int, int]:
    c = (await store.counters_for("key:vk_1", [("daily_sends", DAY0)]))["daily_sends"]
    return c.used, c.reserved


async def test_a_batch_is_admitted_or_refused_whole(store: Store, reservations: ReservationStore) -> None:
    assert (await reservations.reserve("vk_1", 1, with_sends(10, 15), row(store), "me")).cap_hit is None
    refused = await reservations.reserve("vk_1", 1, with_sends(10, 15), row(store), "me")
    assert refused.cap_hit is not None and refused.cap_hit.name == "daily_send_cap"
    assert (refused.cap_hit.used, refused.cap_hit.requested) == (10, 10)
    assert await sends(store) == (0, 10)
    assert (await reservations.reserve("vk_1", 1, with_sends(5, 15), row(store), "me")).cap_hit is None
    assert await sends(store) == (0, 15)


async def test_sends_count_only_what_the_vendor_accepted(store: Store, reservations: ReservationStore) -> None:
    for billed in (False, True):
        r = row(store)
        res = await reservations.reserve("vk_1", 1, with_sends(3, None), r, "me")
        await reservations.settle(r, res.items, sent(billed=billed), None)
    assert await sends(store) == (3, 0)
    hourly = await reservations.counters_for("key:vk_1", [("hourly_requests", DAY0 + 3_600_000)])
    assert hourly["hourly_requests"].used == 2  # both requests were forwarded


async def test_a_kept_estimate_counts_its_sends_when_reconciled(
    store: Store, reservations: ReservationStore, reconcile: ReconcileStore
) -> None:
    r = row(store)
    r.vendor_object_id = "SM1"
    res = await reservations.reserve("vk_1", 1, with_sends(1, None), r, "me")
    await reservations.settle(r, res.items, sent(billed=True, keep=True), None)
    assert await sends(store) == (0, 1)
    assert await reconcile.settle_pending(r.id, 790, "response", "sms")
    assert await sends(store) == (1, 0)


async def test_an_idempotent_retry_reserves_no_sends(store: Store, reservations: ReservationStore) -> None:
    check = RetryCheck("idem-1", "fp")
    r = row(store)
    r.idempotency_key = "idem-1"
    r.id = new_audit_id(store.now_ms())  # retries are looked up by time-ordered id
    res = await reservations.reserve("vk_1", 1, with_sends(4, 5), r, "me", check)
    r.upstream_status = 200  # the vendor accepted it, and keeps that answer under the key
    await reservations.settle(r, res.items, sent(billed=True), None)
    retry = await reservations.reserve("vk_1", 1, with_sends(4, 5), row(store), "me", check)
    assert retry.cap_hit is None and retry.retry_of is not None
    assert await sends(store) == (4, 0)


async def test_a_retry_after_an_answer_the_vendor_did_not_keep_reserves_like_new(
    store: Store, reservations: ReservationStore
) -> None:
    """A 429/409/validation 400 stores nothing at the vendor: the repeat runs for real (and is counted)."""
    check = RetryCheck("idem-2", "fp", cached_statuses=frozenset({402}))
    for status, is_retry in ((429, False), (400, False), (409, False), (402, True), (201, True)):
        first = row(store)
        first.idempotency_key = f"idem-{status}"
        first.id = new_audit_id(store.now_ms())
        key_check = RetryCheck(f"idem-{status}", "fp", cached_statuses=check.cached_statuses)
        res = await reservations.reserve("vk_1", 1, with_sends(1, None), first, "me", key_check)
        first.upstream_status = status
        await reservations.settle(first, res.items, sent(billed=status < 300), None)
        again = await reservations.reserve("vk_1", 1, with_sends(1, None), row(store), "me", key_check)
        assert (again.retry_of is not None) is is_retry, status


async def test_dedup_entry_lifecycle(store: Store, clock: Clock, reservations: ReservationStore) -> None:
    first = row(store)
    res = await reservations.reserve("vk_1", 1, caps("vk_1", 1000, None), first, "me", None, WINDOW)
    assert res.dedup_of is None
    dup = await reservations.reserve("vk_1", 1, caps("vk_1", 1000, None), row(store), "me", None, WINDOW)
    assert dup.dedup_of is not None and (dup.dedup_of.row_id, dup.dedup_of.state) == (first.id, "in_flight")
    assert dup.items == []  # a duplicate reserves nothing and writes no row

    answer = SettleJob(first, res.items, sent(billed=True), None, dedup=DedupOutcome("vk_1", "fp-1", "answered", b"x"))
    await reservations.settle_many([answer])
    hit = await reservations.dedup_get("vk_1", "fp-1")
    assert hit is not None and (hit.state, hit.answer_enc) == ("answered", b"x")
    assert await reservations.dedup_get("vk_2", "fp-1") is None  # per key

    clock.ms += 60_000  # the window ends
    assert await reservations.dedup_get("vk_1", "fp-1") is None
    again = row(store)
    assert (await reservations.reserve("vk_1", 1, caps("vk_1", 1000, None), again, "me", None, WINDOW)).dedup_of is None
    hit = await reservations.dedup_get("vk_1", "fp-1")
    assert hit is not None and (hit.row_id, hit.state, hit.answer_enc) == (again.id, "in_flight", None)
    clock.ms += 60_000
    assert await store.dedup_purge() == 1


async def test_nothing_sent_releases_the_entry(store: Store, reservations: ReservationStore) -> None:
    first = row(store)
    res = await reservations.reserve("vk_1", 1, caps("vk_1", 1000, None), first, "me", None, WINDOW)
    nothing = Settlement("upstream_error", 0, "none", "none", keep_reservation=False, forwarded=False)
    await reservations.settle_many(
        [SettleJob(first, res.items, nothing, None, dedup=DedupOutcome("vk_1", "fp-1", "release"))]
    )
    assert await reservations.dedup_get("vk_1", "fp-1") is None


async def test_a_crashed_first_send_becomes_unknown(
    store: Store, reservations: ReservationStore, instances: InstanceStore
) -> None:
    await instances.register_instance("ins_dead", "elsewhere", 1)
    await reservations.reserve("vk_1", 1, caps("vk_1", 1000, None), row(store), "ins_dead", None, WINDOW)
    await instances.register_instance("ins_me", "here", 2)
    assert await instances.recover_in_flight("ins_me", "here", stale_ms=-1) == 1
    hit = await reservations.dedup_get("vk_1", "fp-1")
    assert hit is not None and hit.state == "unknown"
