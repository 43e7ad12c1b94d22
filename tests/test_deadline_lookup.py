"""Fail closed promptly (issue 12, kind 8), (a): store time inside the pre-pricing lookup counts toward
the reservation deadline; only the vendor's own time answering the lookup is excluded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.store.pg import PostgresStore
from tests.deadline_faults import DEADLINE_S, DELAYS, STEP, TRANSIT_S, Plan, method_name, slow_keybrake
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, examples, wait_for

pytestmark = pytest.mark.timing  # deadlines measured in ms: run alone


@pytest.fixture
def slow_kb(tmp_path: Path, fake_stripe: FakeStripe) -> Iterator[tuple[KeybrakeThread, Plan]]:
    with slow_keybrake(tmp_path, fake_stripe) as kb_plan:
        yield kb_plan


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
@given(steps=st.lists(STEP, min_size=1, max_size=8), n=st.integers(2, 4))
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
                names.append(method_name(fn))
                time.sleep(delays.get(method_name(fn), 0.0))
                return wrapped(fn, bound)

            store._call = call  # type: ignore[method-assign]  # a slow store: this instance only
        else:

            async def run(fn: Callable[[], Any]) -> Any:
                names.append(method_name(fn))
                await asyncio.sleep(delays.get(method_name(fn), 0.0))
                return await wrapped(fn)

            store._run = run
        with httpx.Client() as c:
            _sent, _answered, status, code = _refund(c, kb, key["key"], charge)
        assert "ledger_get" in names  # the delay really hit the lookup
        assert (status, code) == (503, "enforcement_unavailable")
        time.sleep(0.3)
        assert not [q for q in fake_stripe.requests if q.path == "/v1/refunds"]  # never forwarded
