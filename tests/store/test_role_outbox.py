"""The outbox role (`OutboxStore`, the alert delivery job's): claims, outcomes and fire-once marks on
every engine (docs/scale-out.md, alerts); and the delivery log the admin API lists (`AlertStore`)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from keybrake.core.timefmt import DAY_MS
from keybrake.jobs.alert_format import build_delivery
from keybrake.store.base import AlertDestination, AlertStore, Delivery, OutboxStore, Store
from tests.store.contract import DAY0, Clock

LEASE = 10_000


def new_att() -> str:
    return "att_" + secrets.token_hex(10)


async def settle(
    store: Store, d_id: str, me: str, ok: bool, status: int | None, error: str | None, retry: int, most: int
) -> None:
    """One POST's outcome, written once."""
    await store.settle_delivery(
        d_id, me, attempt_id=new_att(), ok=ok, status=status, error=error, retry_in_ms=retry, max_attempts=most
    )


@pytest.fixture
async def store(open_engine: Callable[..., Store], clock: Clock) -> Store:
    s = open_engine(clock)
    await s.insert_alert(dest("alr_a"))
    await s.insert_alert(dest("alr_b"))
    return s


def dest(dest_id: str) -> AlertDestination:
    return AlertDestination(dest_id, "webhook", "https://example.com/h", b"x", ("key.revoked",), (50,), DAY0)


def delivery(dest_id: str, n: int, at: int) -> Delivery:
    return build_delivery(dest(dest_id), f"evt_{n:04d}", "key.revoked", {"n": n}, at)


async def test_one_instance_claims_a_delivery_until_its_lease_lapses(
    store: Store, clock: Clock, outbox: OutboxStore, alerts: AlertStore
) -> None:
    for n in range(3):
        assert await outbox.enqueue([delivery("alr_a", n, clock.ms)], None)
    await outbox.enqueue([delivery("alr_b", 9, clock.ms)], None)
    mine = await outbox.claim_deliveries("alr_a", "ins_a", LEASE, 2)
    assert [d.event_id for d in mine] == ["evt_0000", "evt_0001"]
    assert {d.claimed_by for d in mine} == {"ins_a"} and {d.lease_until for d in mine} == {clock.ms + LEASE}
    rest = await outbox.claim_deliveries("alr_a", "ins_b", LEASE, 10)
    assert [d.event_id for d in rest] == ["evt_0002"]  # never one another instance holds
    assert await outbox.claim_deliveries("alr_a", "ins_c", LEASE, 10) == []
    assert [d.event_id for d in await outbox.claim_deliveries("alr_b", "ins_c", LEASE, 10)] == ["evt_0009"]

    clock.ms += LEASE  # ins_a died: its claims lapse and another instance takes them over
    taken = await outbox.claim_deliveries("alr_a", "ins_b", LEASE, 10)
    assert sorted(d.event_id for d in taken) == ["evt_0000", "evt_0001", "evt_0002"]
    # ins_a's late outcome counts its POST but leaves ins_b's claim alone
    await settle(store, mine[0].id, "ins_a", False, None, "timeout", 5, 12)
    assert await outbox.claim_deliveries("alr_a", "ins_c", LEASE, 10) == []
    await outbox.settle_delivery(
        mine[0].id, "ins_b", attempt_id=new_att(), ok=True, status=200, error=None, retry_in_ms=5, max_attempts=12
    )
    await outbox.settle_delivery(
        mine[0].id, "ins_a", attempt_id=new_att(), ok=False, status=503, error="x", retry_in_ms=5, max_attempts=12
    )
    (row,) = [d for d in await alerts.list_deliveries(10) if d.id == mine[0].id]
    assert (row.state, row.attempts, row.claimed_by) == ("delivered", 3, None)  # delivered stays delivered


async def test_outcomes_backoff_and_the_last_attempt(
    store: Store, clock: Clock, outbox: OutboxStore, alerts: AlertStore
) -> None:
    d = delivery("alr_a", 1, clock.ms)
    await outbox.enqueue([d], None)
    for _ in (1, 2):
        (got,) = await outbox.claim_deliveries("alr_a", "ins_a", LEASE, 10)
        await settle(store, got.id, "ins_a", False, 500, "no", 1000, 3)
        assert await outbox.claim_deliveries("alr_a", "ins_a", LEASE, 10) == []  # not due before its retry
        clock.ms += 1000
    (got,) = await outbox.claim_deliveries("alr_a", "ins_a", LEASE, 10)
    await outbox.settle_delivery(
        got.id, "ins_a", attempt_id=new_att(), ok=False, status=500, error="no", retry_in_ms=1000, max_attempts=3
    )
    clock.ms += 10_000
    assert await outbox.claim_deliveries("alr_a", "ins_a", LEASE, 10) == []
    (row,) = await alerts.list_deliveries(10)
    assert (row.state, row.attempts, row.last_status) == ("failed", 3, 500)


async def test_queueing_an_event_again_adds_nothing_and_a_stop_releases_claims(
    store: Store, clock: Clock, outbox: OutboxStore, alerts: AlertStore
) -> None:
    d = delivery("alr_a", 1, clock.ms)
    assert await outbox.enqueue([d], None) and await outbox.enqueue([d], None)
    assert len(await alerts.list_deliveries(10)) == 1
    await outbox.claim_deliveries("alr_a", "ins_a", LEASE, 10)
    assert await outbox.release_claims("ins_a") == 1
    assert [x.id for x in await outbox.claim_deliveries("alr_a", "ins_b", LEASE, 10)] == [d.id]
    assert await alerts.delete_alert("alr_a")
    assert await outbox.fail_orphaned_deliveries("destination deleted") == 1
    (row,) = await alerts.list_deliveries(10)
    assert (row.state, row.last_error) == ("failed", "destination deleted")


async def test_fire_marks_are_kept_until_their_window_ends(store: Store, clock: Clock, outbox: OutboxStore) -> None:
    end_of_day = DAY0 + DAY_MS
    assert await outbox.enqueue([], "threshold:day", keep_until_ms=end_of_day)
    assert await outbox.enqueue([], "threshold:total", forever=True)
    assert await outbox.enqueue([], "plain")
    clock.ms = end_of_day + 39 * DAY_MS
    assert await store.purge_fired(clock.ms - 40 * DAY_MS) == 0
    clock.ms = end_of_day + 41 * DAY_MS
    assert await store.purge_fired(clock.ms - 40 * DAY_MS) == 2  # the day's and the plain mark
    clock.ms += 1000 * DAY_MS
    assert await store.purge_fired(clock.ms - 40 * DAY_MS) == 0
    assert not await outbox.enqueue([], "threshold:total")  # a total cap's threshold never fires twice
    assert await outbox.enqueue([], "threshold:day")


async def test_writing_one_outcome_twice_counts_one_attempt(
    store: Store, clock: Clock, outbox: OutboxStore, alerts: AlertStore
) -> None:
    """The store answered nothing to the first write (it may have committed): written again."""
    await outbox.enqueue([delivery("alr_a", 1, clock.ms)], None)
    (d,) = await outbox.claim_deliveries("alr_a", "ins_a", LEASE, 10)
    att = new_att()
    for _ in range(2):
        await outbox.settle_delivery(d.id, "ins_a", attempt_id=att, ok=False, status=500, error="no", retry_in_ms=0,
                                    max_attempts=12)  # fmt: skip
    (row,) = await alerts.list_deliveries(10)
    assert (row.attempts, row.state) == (1, "pending")
    (d,) = await outbox.claim_deliveries("alr_a", "ins_a", LEASE, 10)
    ok = new_att()
    for _ in range(2):
        await outbox.settle_delivery(d.id, "ins_a", attempt_id=ok, ok=True, status=200, error=None, retry_in_ms=0,
                                    max_attempts=12)  # fmt: skip
    (row,) = await alerts.list_deliveries(10)
    assert (row.attempts, row.state, row.last_status) == (2, "delivered", 200)


async def test_a_flood_of_secret_exposed_never_delays_an_urgent_event_behind_it(
    store: Store, clock: Clock, outbox: OutboxStore
) -> None:
    """Claim order: cap.hit, key.revoked, enforcement.* first, secret.exposed last (docs/api.md)."""
    d = dest("alr_a")
    for n in range(50):
        assert await outbox.enqueue([build_delivery(d, f"evt_x{n:04d}", "secret.exposed", {}, clock.ms)], None)
    clock.ms += 1
    assert await outbox.enqueue([build_delivery(d, "evt_t", "cap.threshold", {}, clock.ms)], None)
    clock.ms += 1
    assert await outbox.enqueue([build_delivery(d, "evt_hit", "cap.hit", {}, clock.ms)], None)
    first = await outbox.claim_deliveries("alr_a", "ins_a", LEASE, 3)
    assert [x.event_type for x in first] == ["cap.hit", "cap.threshold", "secret.exposed"]


async def test_deliveries_are_listed_newest_first_and_paged_past_any_limit(
    store: Store, clock: Clock, outbox: OutboxStore, alerts: AlertStore
) -> None:
    """Newcomer: the list was ordered by the random id and capped at 1,000. Now created_at DESC, id
    DESC, with a cursor and a state filter; against a model over ties and all three states."""
    import random

    rnd = random.Random(12)
    made: list[Delivery] = []
    for n in range(60):
        at = clock.ms + rnd.randrange(8)  # many share a millisecond: the id breaks the tie
        d = build_delivery(dest(rnd.choice(["alr_a", "alr_b"])), f"evt_{n:04d}", "key.revoked", {}, at)
        assert await outbox.enqueue([d], None)
        made.append(d)
    done = made[::3]
    for d in done[: len(done) // 2]:
        await settle(store, d.id, "ins_a", True, 200, None, 5, 12)
    for d in done[len(done) // 2 :]:
        await settle(store, d.id, "ins_a", False, 500, "x", 5, 1)  # one attempt allowed: failed
    state = {d.id: "pending" for d in made} | {d.id: "delivered" for d in done[: len(done) // 2]}
    state |= {d.id: "failed" for d in done[len(done) // 2 :]}
    for want_state in (None, "pending", "delivered", "failed"):
        want = sorted(
            (d for d in made if want_state in (None, state[d.id])), key=lambda d: (d.created_at, d.id), reverse=True
        )
        got: list[Delivery] = []
        before = None
        while True:
            page = await alerts.list_deliveries(7, state=want_state, before=before)
            got += page
            if len(page) < 7:
                break
            before = (page[-1].created_at, page[-1].id)
        assert [d.id for d in got] == [d.id for d in want], want_state
        assert {d.state for d in got} <= ({want_state} if want_state else {"pending", "delivered", "failed"})
