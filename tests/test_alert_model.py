"""Alert delivery against a model: every event reaches every healthy destination exactly once.

In-process replicas (an `Alerts` each, with its own store connection and instance id) share one
real store (the pass's engine: a SQLite file, or PostgreSQL with every claim on its own pooled
connection). Receivers are fakes behind the upstream interface: `ok`, `500` (twice, then 200),
`timeout` (hangs past KEYBRAKE_ALERT_TIMEOUT once, then 200) and `silent` (never answers). The
store can be down when an event is raised (nothing written), lose the answer to a write that
committed, and lose the answer to an outcome's write. Checked: each event id is accepted once by
each healthy destination and never by a silent one; one outbox row per (event, destination); each
row's attempts equal the POSTs made for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.config import Settings
from keybrake.core.errors import EnforcementUnavailable
from keybrake.core.upstream import UpstreamRequest, UpstreamResponse
from keybrake.crypto import Sealer
from keybrake.jobs.alerts import Alerts
from keybrake.store import open_store
from keybrake.store.base import AlertDestination, Store
from tests import harness
from tests.harness import examples, store_options

KINDS = ("ok", "500", "timeout", "silent")
FAULTS = ("none", "none", "none", "down", "lost")
TIMEOUT_S = 0.3


class Receivers:
    """The fake far end of every destination (`/d<i>` in the URL picks its behaviour)."""

    def __init__(self, kinds: list[str]) -> None:
        self.kinds = kinds
        self.posts: Counter[tuple[int, str]] = Counter()  # (destination, event id) → POSTs that arrived
        self.accepted: Counter[tuple[int, str]] = Counter()  # … → answered 200

    async def send(self, req: UpstreamRequest) -> UpstreamResponse:
        dest = int(req.url.rsplit("/d", 1)[1])
        evt = dict(req.headers)["x-keybrake-event-id"]
        seen = self.posts[dest, evt]
        self.posts[dest, evt] += 1
        kind = self.kinds[dest]
        if kind == "silent" or (kind == "timeout" and seen < 1):
            await asyncio.sleep(3600)
        if kind == "500" and seen < 2:
            return UpstreamResponse(500, [], b"down", 1.0)
        self.accepted[dest, evt] += 1  # received and answered: only the reply can still be lost
        await asyncio.sleep(0)
        return UpstreamResponse(200, [], b"ok", 1.0)

    async def close(self) -> None:
        return None


class FlakyStore:
    """A real store whose writes can fail before (down) or after (lost answer) they commit."""

    def __init__(self, inner: Store, rng: random.Random, lose_settles: float) -> None:
        self.inner, self.rng, self.lose_settles = inner, rng, lose_settles
        self.fault = "none"
        self.lost = 0  # outcomes written whose answer was then lost

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def enqueue(self, *args: Any, **kw: Any) -> bool:
        fault, self.fault = self.fault, "none"  # the first write of the event only
        if fault == "down":
            raise EnforcementUnavailable("drill: the store is down")
        done = await self.inner.enqueue(*args, **kw)
        if fault == "lost":
            raise EnforcementUnavailable("drill: the answer to COMMIT was lost", commit_unknown=True)
        return done

    async def settle_delivery(self, *args: Any, **kw: Any) -> None:
        await self.inner.settle_delivery(*args, **kw)
        if self.rng.random() < self.lose_settles:
            self.lost += 1
            raise EnforcementUnavailable("drill: the answer to COMMIT was lost", commit_unknown=True)


def _empty(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM alert_outbox")
        conn.execute("DELETE FROM alert_fired")
        conn.execute("DELETE FROM alert_destinations")


async def run_model(
    data_dir: Path, n_replicas: int, kinds: list[str], events: list[tuple[str, int, int, str]], seed: int
) -> None:
    url = harness.DATABASE_URL
    if url is not None:
        _empty(url)
    base = Settings(data_dir=data_dir, allow_insecure_upstream=True, upstream_hosts=("127.0.0.1",))
    cfg = replace(base, alert_timeout_s=TIMEOUT_S, alert_retry_base_s=0.05, alert_interval_s=0.05)
    rng = random.Random(seed)
    sealer = Sealer(os.urandom(32))
    receivers = Receivers(kinds)
    stores = [
        FlakyStore(open_store(url, data_dir, migrate=True, pg=store_options()), rng, 0.2) for _ in range(n_replicas)
    ]
    replicas = [Alerts(cast(Store, s), sealer, receivers, cfg, instance_id=f"ins_{i}") for i, s in enumerate(stores)]
    try:
        for i in range(len(kinds)):
            dest_id = f"alr_{i:04d}"
            await stores[0].inner.insert_alert(
                AlertDestination(
                    dest_id,
                    "webhook",
                    f"http://127.0.0.1:9/d{i}",
                    sealer.seal(b"s", f"alert:{dest_id}"),
                    ("key.revoked", "cap.hit"),
                    (50,),
                    0,
                )
            )
        running = [asyncio.create_task(r.deliverer.run_forever()) for r in replicas]
        expected: set[str] = set()
        for kind, ident, who, fault in events:
            r = replicas[who % n_replicas]
            stores[who % n_replicas].fault = fault
            if kind == "plain":  # no fire-once mark: its own id
                await r.emit("key.revoked", {"n": ident})
                expected.add("plain")  # counted below from the outbox
            else:  # the same fire key from any replica is one event
                await r.emit("cap.hit", {"n": ident}, fire_key=f"hit:{ident}")
        for r in replicas:
            await r.requeue_held()
            assert r._held == []
        plain = sum(1 for e in events if e[0] == "plain")
        fired = len({e[1] for e in events if e[0] == "fired"})
        healthy = [i for i, k in enumerate(kinds) if k != "silent"]

        def done() -> bool:
            per_dest = Counter(d for d, _ in receivers.accepted)
            return all(per_dest[i] >= plain + fired for i in healthy)

        deadline = time.monotonic() + 60  # then the assertions below say what is missing
        while not done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # more passes of every replica: nothing may be sent again
        for s in stores:
            s.lose_settles = 0.0  # a clean stop: the store answers
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task

        rows = await stores[0].inner.list_deliveries(10_000)
        events_in_outbox = {d.event_id for d in rows}
        assert len(events_in_outbox) == plain + fired
        assert len(rows) == len(events_in_outbox) * len(kinds)  # one row per (event, destination)
        for i, kind in enumerate(kinds):
            got = Counter({e: n for (d, e), n in receivers.accepted.items() if d == i})
            if kind == "silent":
                assert not got
            else:
                assert got == Counter(dict.fromkeys(events_in_outbox, 1)), (kind, got)
        for d in rows:
            i = int(d.destination_id[4:])
            assert d.attempts == receivers.posts[i, d.event_id], (kinds[i], d)
            assert d.state == ("delivered" if kinds[i] != "silent" else "pending")
    finally:
        for s in stores:
            await s.inner.close()


@settings(max_examples=examples(12), deadline=None, suppress_health_check=list(HealthCheck))
@given(
    n_replicas=st.integers(1, 3),
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=3),
    events=st.lists(
        st.tuples(st.sampled_from(("plain", "fired")), st.integers(0, 3), st.integers(0, 2), st.sampled_from(FAULTS)),
        min_size=1,
        max_size=8,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_each_event_reaches_each_healthy_destination_once(
    n_replicas: int, kinds: list[str], events: list[tuple[str, int, int, str]], seed: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_model(Path(tmp), n_replicas, kinds, events, seed))
