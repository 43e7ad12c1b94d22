"""Fail closed promptly and finally (issue 12, kind 8): the reservation deadline.

Every proxied request must hold its reservation within KEYBRAKE_RESERVE_DEADLINE_MS of its
arrival; past it the answer is 503 `enforcement_unavailable` and the request is never forwarded,
whatever the store does later (a reservation that commits late is released). The generator
injects delays and failures at the store seam (before and after each store call, the commit
already made) on the pass's engine, and checks, against the fake vendor's own arrival times:
nothing forwarded after its deadline, every request answered in time, books exact.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.core.errors import EnforcementUnavailable
from keybrake.store.pg import PostgresStore
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, examples, wait_for

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
_REQUEST_CALLS = frozenset({"key_by_hash", "reserve", "insert_audit", "counters_for", "dedup_get", "count_request"})


def _method(fn: Callable[[], Any]) -> str:
    return getattr(getattr(fn, "func", None), "__name__", "")


def _inject(kb: KeybrakeThread, plan: Plan) -> None:
    """Delays and failures at the store seam: on PostgreSQL in the worker thread (the real gate,
    deadline and late-result handling run around it), on SQLite around the inline call (the
    transaction itself still runs whole, with no await inside)."""
    assert kb.app is not None
    store: Any = kb.app.rt.store
    if isinstance(store, PostgresStore):
        call = store._call

        def slow_call(fn: Callable[[], Any], bound: float | None = None) -> Any:
            before, after, fail = plan.next()
            fail = fail if _method(fn) in _REQUEST_CALLS else None
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
            fail = fail if _method(fn) in _REQUEST_CALLS else None
            await asyncio.sleep(before)
            if fail == "before":
                raise EnforcementUnavailable("injected: the store failed")
            out = await run(fn)
            await asyncio.sleep(after)
            if fail == "after":
                raise EnforcementUnavailable("injected: the answer was lost after COMMIT", commit_unknown=True)
            return out

        store._run = slow_run


@pytest.fixture
def slow_kb(tmp_path: Path, fake_stripe: FakeStripe) -> Iterator[tuple[KeybrakeThread, Plan]]:
    plan = Plan()
    with KeybrakeThread(tmp_path / "d", reserve_deadline_ms=int(DEADLINE_S * 1000), pg_pool_size=4) as kb:
        kb.add_credential(fake_stripe.base_url)
        _inject(kb, plan)
        yield kb, plan


def _charge(c: httpx.Client, kb: KeybrakeThread, token: str, tag: str) -> tuple[float, float, int, str | None]:
    sent = time.monotonic()
    r = c.post(
        f"{kb.url}/stripe/v1/charges",
        data={"amount": "100", "currency": "usd", "source": "tok_visa", "description": tag},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    answered = time.monotonic()
    code = r.json().get("error", {}).get("code") if r.status_code != 200 else None
    return sent, answered, r.status_code, code


def _arrivals(fake: FakeStripe, prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in list(fake.requests):
        if r.method == "POST" and r.path == "/v1/charges":
            tag = parse_qs(r.body.decode())["description"][0]
            if tag.startswith(prefix):
                assert tag not in out, f"{tag} forwarded twice"
                out[tag] = r.arrived
    return out


_step = st.tuples(st.sampled_from(DELAYS), st.sampled_from(DELAYS), st.sampled_from(FAILS))
_n = iter(range(1_000_000))


@settings(
    max_examples=examples(10),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(_step, min_size=1, max_size=10), n=st.integers(3, 5))
def test_random_store_outages_never_forward_after_the_deadline(
    slow_kb: tuple[KeybrakeThread, Plan], fake_stripe: FakeStripe, steps: list[tuple[float, float, str | None]], n: int
) -> None:
    kb, plan = slow_kb
    plan.steps, plan.i = [], 0
    key = kb.issue({"daily_usd_cap": 1000})
    prefix = f"x{next(_n)}-"
    plan.steps = steps
    with ThreadPoolExecutor(4) as pool, httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as c:
        results = list(pool.map(lambda i: _charge(c, kb, key["key"], f"{prefix}{i}"), range(n)))
    plan.steps = []
    time.sleep(max(DELAYS) + 0.05)  # calls still running past their deadline finish (late commits)
    arrivals = _arrivals(fake_stripe, prefix)
    # PostgreSQL gives up at the deadline whatever the call does; SQLite runs its calls inline,
    # so one call already started may finish first (in production its busy timeout bounds it)
    margin = 0.25 + (0 if isinstance(kb.app.rt.store, PostgresStore) else 2 * max(DELAYS))  # type: ignore[union-attr]
    for i, (sent, answered, status, code) in enumerate(results):
        tag = f"{prefix}{i}"
        if tag in arrivals:  # forwarded before its deadline (its answer then waits on the vendor)
            assert arrivals[tag] <= sent + DEADLINE_S + TRANSIT_S, (tag, arrivals[tag] - sent)
            assert status == 200, (tag, status, code)
        else:  # refused, within the deadline, and never forwarded later
            assert status == 503 and code == "enforcement_unavailable", (tag, status, code)
            assert answered - sent <= DEADLINE_S + margin, (tag, answered - sent, status, code)

    # books exact: every row settled, the counter equal to what was forwarded ($1 each)
    def settled() -> tuple[list[dict[str, Any]]] | None:
        rows = kb.audit(key_id=key["id"])  # a refusal before any reservation may leave no row
        return (rows,) if not any(r["verdict"] == "in_flight" for r in rows) else None

    (rows,) = wait_for(settled, timeout=10)
    assert sum(r["verdict"] == "allowed" for r in rows) == len(arrivals)
    assert not any(r["verdict"] == "outcome_unknown" for r in rows)
    usage = wait_for(lambda: (u := kb.key(key["id"])["usage"]["daily_usd"])["reserved"] == 0 and u)
    assert usage["used"] == len(arrivals) == sum(r["cost_usd"] for r in rows)


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


def test_the_store_gate_bounds_the_queue_in_length_and_time() -> None:
    """2 slots, 3 request waiters: the 6th request is refused at once, a waiter gives up at its
    bound, bookkeeping is not refused for the queue's length, and slots pass on in order."""
    from keybrake.store.gate import StoreGate

    async def main() -> None:
        gate = StoreGate(2, 3, "test store")
        now = time.monotonic()
        await gate.enter(now + 1)
        await gate.enter(now + 1)
        waiters = [asyncio.create_task(gate.enter(now + 0.5)) for _ in range(3)]
        await asyncio.sleep(0.01)
        t = time.monotonic()
        with pytest.raises(EnforcementUnavailable, match="KEYBRAKE_STORE_MAX_WAITERS"):
            await gate.enter(now + 5)
        assert time.monotonic() - t < 0.05  # at once
        book = asyncio.create_task(gate.enter(now + 5, request=False))  # not refused for the length
        gate.leave()
        await asyncio.sleep(0.01)
        assert waiters[0].done() and not waiters[1].done()  # first come, first served
        t = time.monotonic()
        for w in waiters[1:]:
            with pytest.raises(EnforcementUnavailable, match="in time"):
                await w
        assert 0.3 < time.monotonic() - t < 0.7  # each gave up at its bound (0.5 s from the start)
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

        async def store_down_on_the_way_back(*args: Any, **kwargs: Any) -> None:
            calls.append(1)
            if len(calls) == 1:  # the first write after sending fails; recording the outcome works
                raise EnforcementUnavailable("postgresql: connection lost (injected after sending)")
            await real_finish(*args, **kwargs)

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


# -- (a) store time inside the pre-pricing lookup counts toward the deadline ---------------------


def _direct_charge(fake: FakeStripe, amount: int = 1000) -> str:
    """A charge made at the vendor directly: not in Keybrake's ledger, so a refund of it makes
    every lookup call (ledger_get miss, credential, the pre-flight GET, ledger_put)."""
    from tests.harness import REAL_SECRET

    r = httpx.post(
        f"{fake.base_url}/v1/charges",
        data={"amount": str(amount), "currency": "usd", "source": "tok_visa"},
        headers={"Authorization": f"Bearer {REAL_SECRET}"},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _refund(c: httpx.Client, kb: KeybrakeThread, token: str, charge: str) -> tuple[float, float, int, str | None]:
    sent = time.monotonic()
    r = c.post(
        f"{kb.url}/stripe/v1/refunds",
        data={"charge": charge, "amount": "100"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    code = r.json().get("error", {}).get("code") if r.status_code != 200 else None
    return sent, time.monotonic(), r.status_code, code


@settings(
    max_examples=examples(8),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(_step, min_size=1, max_size=8), n=st.integers(2, 4))
def test_random_store_delays_in_the_lookup_never_forward_after_the_deadline(
    slow_kb: tuple[KeybrakeThread, Plan], fake_stripe: FakeStripe, steps: list[tuple[float, float, str | None]], n: int
) -> None:
    """Refunds of charges Keybrake has not seen: the delays land on the lookup's store calls too
    (ledger_get, credential, ledger_put) and on the reservation; only the vendor's time is excluded."""
    kb, plan = slow_kb
    plan.steps, plan.i = [], 0
    key = kb.issue({"daily_usd_cap": 1000})
    charges = [_direct_charge(fake_stripe) for _ in range(n)]
    plan.steps = steps
    with ThreadPoolExecutor(4) as pool, httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as c:
        results = list(pool.map(lambda ch: _refund(c, kb, key["key"], ch), charges))
    plan.steps = []
    time.sleep(max(DELAYS) + 0.05)
    arrivals = {
        q.form["charge"][0]: q.arrived
        for q in list(fake_stripe.requests)
        if q.method == "POST" and q.path == "/v1/refunds" and q.form.get("charge", [""])[0] in charges
    }
    margin = 0.25 + (0 if isinstance(kb.app.rt.store, PostgresStore) else 2 * max(DELAYS))  # type: ignore[union-attr]
    for ch, (sent, answered, status, code) in zip(charges, results, strict=True):
        if ch in arrivals:
            assert arrivals[ch] <= sent + DEADLINE_S + TRANSIT_S + _lookup_s(fake_stripe, ch), (ch, arrivals[ch] - sent)
            assert status == 200, (ch, status, code)
        else:
            assert status == 503 and code == "enforcement_unavailable", (ch, status, code)
            assert answered - sent <= DEADLINE_S + margin + _lookup_s(fake_stripe, ch), (ch, answered - sent)
    wait_for(lambda: not any(r["verdict"] == "in_flight" for r in kb.audit(key_id=key["id"])), timeout=10)
    wait_for(lambda: kb.key(key["id"])["usage"]["daily_usd"]["reserved"] == 0)


def _lookup_s(fake: FakeStripe, charge: str) -> float:
    """Seconds the fake vendor spent answering the pre-flight GET of `charge` (the only excluded time):
    bounded above by the gap between its arrival and the next request the fake saw (0 if none made)."""
    reqs = list(fake.requests)
    for i, q in enumerate(reqs):
        if q.method == "GET" and q.path.endswith(charge):
            return (reqs[i + 1].arrived - q.arrived) if i + 1 < len(reqs) else 1.0
    return 0.0


def test_store_time_inside_find_facts_is_not_counted(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    """Red-team case: ledger_get 0.9 s then reserve 0.7 s (each under a 1 s deadline, together
    1.6 s) — the refund was forwarded 1.64 s after arrival; now 503, never forwarded."""
    with KeybrakeThread(tmp_path / "d", reserve_deadline_ms=1000, pg_pool_size=4) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 1000})
        charge = httpx.post(
            f"{kb.url}/stripe/v1/charges",
            data={"amount": "1000", "currency": "usd", "source": "tok_visa"},
            headers={"Authorization": f"Bearer {key['key']}"},
        ).json()["id"]
        names: list[str] = []
        store: Any = kb.app.rt.store  # type: ignore[union-attr]
        delays = {"ledger_get": 0.9, "reserve": 0.7}
        wrapped = store._call if isinstance(store, PostgresStore) else store._run
        if isinstance(store, PostgresStore):

            def call(fn: Callable[[], Any], bound: float | None = None) -> Any:
                names.append(_method(fn))
                time.sleep(delays.get(_method(fn), 0.0))
                return wrapped(fn, bound)

            store._call = call  # type: ignore[method-assign]  # a slow store: this instance only
        else:

            async def run(fn: Callable[[], Any]) -> Any:
                names.append(_method(fn))
                await asyncio.sleep(delays.get(_method(fn), 0.0))
                return await wrapped(fn)

            store._run = run
        with httpx.Client() as c:
            _sent, _answered, status, code = _refund(c, kb, key["key"], charge)
        assert "ledger_get" in names  # the delay really hit the lookup
        assert (status, code) == (503, "enforcement_unavailable")
        time.sleep(0.3)
        assert not [q for q in fake_stripe.requests if q.path == "/v1/refunds"]  # never forwarded
