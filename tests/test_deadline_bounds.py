"""Fail closed promptly and finally (issue 12, kind 8): the database's clock decides every final verdict
about time (d), reconnect backoff is capped (c), the wait in front of the store is bounded, and a store
failure after sending never claims nothing was forwarded.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from keybrake.core.errors import EnforcementUnavailable
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for
from tests.waits import wait_until_async

# -- (d) every final verdict about time uses the database's clock --------------------------------


@pytest.mark.skipif(
    os.environ.get("KEYBRAKE_TEST_STORE", "sqlite") != "postgres",
    reason="embedded SQLite's database clock is this host's clock: there is no other to disagree with",
)
def test_a_host_clock_stepped_by_an_hour_never_ends_a_key_with_20_minutes_left(
    kb: KeybrakeThread, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = kb.issue({"daily_usd_cap": 10}, expires_in=1200)  # 20 minutes left
    gone = kb.issue({"daily_usd_cap": 10}, expires_in=1)
    time.sleep(1.2)  # expired by the database's clock
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # the host clock steps an hour ahead
    charge = {"amount": "100", "currency": "usd", "source": "tok_visa"}
    for _ in range(3):
        r = httpx.post(f"{kb.url}/stripe/v1/charges", data=charge, headers={"Authorization": f"Bearer {live['key']}"})
        assert r.status_code == 200, r.text  # not a final 401 key_expired
    me = httpx.get(f"{kb.url}/_keybrake/self", headers={"Authorization": f"Bearer {live['key']}"})
    assert me.status_code == 200, me.text
    monkeypatch.setattr(time, "time", lambda: real() - 3600)  # and an hour behind: still refused
    r = httpx.post(f"{kb.url}/stripe/v1/charges", data=charge, headers={"Authorization": f"Bearer {gone['key']}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_expired", r.text
    assert sum(1 for q in fake_stripe.requests if q.path == "/v1/charges") == 3


# -- (c) reconnect backoff is capped ---------------------------------------------------------------


def test_reconnect_backoff_is_capped_however_long_the_outage() -> None:
    """45 s of failed reconnects: psycopg_pool's own backoff would wait ≈ 16–32 s more before the
    next attempt (service back ≈ 16 s after the database); Keybrake's waits at most 1 s."""
    from psycopg_pool.base import AttemptWithBackoff

    from keybrake.store.pg import RECONNECT_MAX_DELAY_S, _CappedBackoff

    def next_attempt_after(attempt: AttemptWithBackoff, outage_s: float) -> float:
        now = 0.0
        while True:
            attempt.update_delay(now)
            if now + attempt.delay > outage_s:
                return now + attempt.delay - outage_s  # how long after the database is back
            now += attempt.delay

    year = 365 * 24 * 3600.0
    assert next_attempt_after(AttemptWithBackoff(timeout=year), 45) >= 8  # the reported ≈ 16 s
    for outage in (6, 45, 600):
        assert next_attempt_after(_CappedBackoff(timeout=year), outage) <= RECONNECT_MAX_DELAY_S


# -- the bounded wait in front of the store ------------------------------------------------------


@pytest.mark.timing
def test_the_store_gate_bounds_the_queue_in_length_and_time() -> None:
    """2 slots, 3 request waiters: the 6th request is refused at once, a waiter gives up at its
    bound, bookkeeping is not refused for the queue's length, and slots pass on in order."""
    from keybrake.store.gate import StoreGate

    async def main() -> None:
        gate = StoreGate(2, 3, "test store")
        now = time.monotonic()
        bound = now + 1.0  # the waiters' deadline
        await gate.enter(now + 5)
        await gate.enter(now + 5)
        waiters = [asyncio.create_task(gate.enter(bound)) for _ in range(3)]
        await asyncio.sleep(0.01)
        sixth = asyncio.create_task(gate.enter(now + 5))
        await wait_until_async(sixth.done, "the 6th request's answer")
        assert not any(w.done() for w in waiters)  # at once: while the queue is full, before any waiter's bound
        with pytest.raises(EnforcementUnavailable, match="KEYBRAKE_STORE_MAX_WAITERS"):
            await sixth
        book = asyncio.create_task(gate.enter(now + 5, request=False))  # not refused for the length
        gate.leave()
        await wait_until_async(waiters[0].done, "the first waiter to get the freed slot")
        assert not waiters[1].done()  # first come, first served
        for w in waiters[1:]:
            with pytest.raises(EnforcementUnavailable, match="in time"):
                await asyncio.wait_for(w, 30)  # not a TimeoutError: the waiter gave up by itself
            assert bound - 0.01 <= time.monotonic() < now + 5  # at its own bound: not before, nor at another's
        gate.leave()
        await asyncio.wait_for(book, 1)
        assert gate.waiting == 0 and gate.busy == 2

    asyncio.run(main())


def test_a_store_failure_after_sending_never_answers_nothing_was_forwarded(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    """Once a request is sent, the vendor may have acted: a store failure on the way back is an
    outcome-unknown answer with the reservation kept, never "nothing was forwarded" (an agent
    would retry without an Idempotency-Key and move money twice)."""
    with KeybrakeThread(tmp_path / "d") as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 50})
        assert kb.app is not None
        rec = kb.app.pipeline.rec

        real_finish = rec.finish
        calls: list[int] = []

        async def store_down_on_the_way_back(*args: Any, **kwargs: Any) -> bool:
            calls.append(1)
            if len(calls) == 1:  # the first write after sending fails; recording the outcome works
                raise EnforcementUnavailable("postgresql: connection lost (injected after sending)")
            return await real_finish(*args, **kwargs)

        rec.finish = store_down_on_the_way_back  # type: ignore[method-assign]
        try:
            r = httpx.post(
                f"{kb.url}/stripe/v1/charges",
                data={"amount": 700, "currency": "usd", "source": "tok_visa"},
                headers={"Authorization": f"Bearer {key['key']}"},
                timeout=10,
            )
        finally:
            rec.finish = real_finish  # type: ignore[method-assign]
        assert len(fake_stripe.requests) == 1  # it was sent
        assert r.status_code == 503
        message = r.json()["error"]["message"]
        assert "nothing was forwarded" not in message and "same Idempotency-Key" in message
        row = wait_for(lambda: [x for x in kb.audit() if x["verdict"] == "outcome_unknown"])[0]
        assert row["reserved_usd"] == 7  # kept: the charge may have happened
