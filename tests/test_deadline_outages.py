"""Fail closed promptly and finally (issue 12, kind 8): the reservation deadline.

Every proxied request must hold its reservation within KEYBRAKE_RESERVE_DEADLINE_MS of its
arrival; past it the answer is 503 `enforcement_unavailable` and the request is never forwarded,
whatever the store does later (a reservation that commits late is released). The generator
injects delays and failures at the store seam (before and after each store call, the commit
already made) on the pass's engine, and checks, against the fake vendor's own arrival times:
nothing forwarded after its deadline, every request answered in time, books exact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.store.pg import PostgresStore
from tests.deadline_faults import DEADLINE_S, DELAYS, STEP, TRANSIT_S, Plan, slow_keybrake
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, examples, wait_for

pytestmark = pytest.mark.timing  # deadlines measured in ms: run alone


@pytest.fixture
def slow_kb(tmp_path: Path, fake_stripe: FakeStripe) -> Iterator[tuple[KeybrakeThread, Plan]]:
    with slow_keybrake(tmp_path, fake_stripe) as kb_plan:
        yield kb_plan


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


_n = iter(range(1_000_000))


@settings(
    max_examples=examples(10),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=1, max_size=10), n=st.integers(3, 5))
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
