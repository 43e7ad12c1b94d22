"""Red team: `latency_ms` (and `overhead_ms`, `Server-Timing`'s `keybrake`) count from the request's
arrival (docs/api.md, audit rows), but the clock started only once the body was read — after the
key lookup Keybrake makes on the headers alone. A key not yet cached is looked up in the store
there, so that store time (up to the reservation deadline) was missing from Keybrake's reported
overhead: the first request of every agent run under-reported what Keybrake cost it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.stripe_server import FakeStripeThread
from tests.harness import REAL_SECRET, KeybrakeThread

LOOKUP_S = 0.3


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KeybrakeThread]:
    with FakeStripeThread(secret=REAL_SECRET) as fake, KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake.fake.base_url)
        yield server


def test_the_key_lookup_on_the_headers_counts_in_latency_and_overhead(kb: KeybrakeThread) -> None:
    assert kb.app is not None
    keys: Any = kb.app.pipeline.keys
    lookup = keys.lookup

    async def slow_lookup(thash: str, *, cached: bool) -> Any:
        await asyncio.sleep(LOOKUP_S)  # a store slow to answer the uncached key's lookup
        return await lookup(thash, cached=cached)

    keys.lookup = slow_lookup
    key = kb.issue({"daily_usd_cap": 1}, label="test:latency:run-1")
    resp = httpx.get(f"{kb.url}/stripe/v1/customers", headers={"Authorization": f"Bearer {key['key']}"}, timeout=30)
    assert resp.status_code == 200, resp.text
    (row,) = kb.audit(key_id=key["id"])
    assert row["latency_ms"] >= LOOKUP_S * 1000, row["latency_ms"]
    assert row["overhead_ms"] >= LOOKUP_S * 1000, row["overhead_ms"]
    assert float(resp.headers["x-keybrake-overhead-ms"]) >= LOOKUP_S * 1000
