"""daily_graphql_cost_points through a running Keybrake with ShopifyAPI: each GraphQL call reserves
the most one query can cost (1,000 points), settles to the answer's `extensions.cost.actualQueryCost`,
and the cap holds exactly while calls are in flight."""

from __future__ import annotations

import json
import threading
import urllib.error
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import shopify

from keybrake.integrations.shopify import activate, deactivate
from keybrake.vendors.shopify import MAX_QUERY_COST
from tests.fakes.shopify_server import DEFAULT_TOKEN, FakeShopify, FakeShopifyThread
from tests.harness import KeybrakeThread
from tests.vendors.shopify_calls import REFUND, refund_input
from tests.waits import wait_until

VERSION = "2025-07"
SHOP = "{ shop { name } }"  # the fake reports 2 points: 1 + one object read


@pytest.fixture
def fake_thread() -> Iterator[FakeShopifyThread]:
    with FakeShopifyThread() as t:
        yield t


@pytest.fixture
def fake(fake_thread: FakeShopifyThread) -> FakeShopify:
    return fake_thread.fake


@pytest.fixture
def kbr(tmp_path: Path, fake: FakeShopify) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake.base_url, name="shopify", secret=DEFAULT_TOKEN, vendor="shopify")
        yield server
        deactivate()


def issue(kb: KeybrakeThread, **policy: Any) -> dict[str, Any]:
    key = kb.issue(policy, vendor="shopify", label="test:shop-agent:run-1")
    activate(kb.url, key["key"], VERSION)
    return key


def points(kb: KeybrakeThread, key: dict[str, Any]) -> dict[str, Any]:
    return kb.key(key["id"])["usage"]["daily_graphql_points"]  # type: ignore[no-any-return]


def reported(fake: FakeShopify) -> int:
    """What the fake's answers reported, summed (it computes the same cost again for each request)."""
    from tests.fakes.shopify_server.server import _cost

    return sum(_cost(r.json["query"], r.json.get("operationName")) for r in fake.requests)


def test_calls_settle_to_the_points_the_answer_reports(kbr: KeybrakeThread, fake: FakeShopify) -> None:
    key = issue(kbr, daily_graphql_cost_points=5000)
    for _ in range(3):
        out = json.loads(shopify.GraphQL().execute(SHOP))
        assert out["extensions"]["cost"]["actualQueryCost"] == 2
    json.loads(shopify.GraphQL().execute(REFUND, refund_input("1.00"), "Refund"))  # a mutation: 10 points
    assert reported(fake) == 16
    assert points(kbr, key) == {"limit": 5000, "used": 16, "reserved": 0, "resets_at": points(kbr, key)["resets_at"]}
    assert len(kbr.audit(key_id=key["id"])) == 4


def test_the_cap_is_exact_while_calls_are_in_flight(
    kbr: KeybrakeThread, fake_thread: FakeShopifyThread, fake: FakeShopify
) -> None:
    key = issue(kbr, daily_graphql_cost_points=2500)  # room for two calls in flight (2 × 1,000 reserved)
    held = fake_thread.hold()
    statuses: list[int] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        activate(kbr.url, key["key"], VERSION)  # ShopifyAPI's headers are per thread
        try:
            shopify.GraphQL().execute(SHOP)
            status = 200
        except urllib.error.HTTPError as exc:
            status = exc.code
        with lock:
            statuses.append(status)

    with ThreadPoolExecutor(max_workers=6) as pool:
        for i in range(6):
            pool.submit(one, i)
        wait_until(lambda: len(fake.requests) == 2 and len(statuses) == 4, "two calls held, four refused")
        assert statuses == [429] * 4 and points(kbr, key)["reserved"] == 2 * MAX_QUERY_COST
        held.set()
    assert sorted(statuses) == [200, 200, 429, 429, 429, 429]
    assert points(kbr, key)["used"] == 4 and points(kbr, key)["reserved"] == 0
    rows = kbr.audit(key_id=key["id"])
    assert sorted(r["verdict"] for r in rows) == ["allowed"] * 2 + ["cap_exceeded"] * 4
    refused = next(r for r in rows if r["verdict"] == "cap_exceeded")
    assert refused["error_code"] == "request_cap_exceeded" and "GraphQL cost points" in refused["reason"]
    fake_thread.fake.hang = None
    shopify.GraphQL().execute(SHOP)  # settled to 2 points each: room again
    assert points(kbr, key)["used"] == 6


def test_a_cap_below_one_calls_bound_is_refused(kbr: KeybrakeThread) -> None:
    with kbr.admin() as c:
        r = c.post(
            "/v1/keys", json={"vendor": "shopify", "label": "a:b:c", "policy": {"daily_graphql_cost_points": 999}}
        )
    assert r.status_code == 422 and "at least 1000" in r.text


def test_a_throttled_answer_costs_no_points(kbr: KeybrakeThread, fake: FakeShopify) -> None:
    key = issue(kbr, daily_graphql_cost_points=5000)
    throttled = {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": {"cost": {"requestedQueryCost": 2, "actualQueryCost": None}},
    }
    fake.next_status.append((200, throttled))
    out = json.loads(shopify.GraphQL().execute(SHOP))
    assert out["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert points(kbr, key)["used"] == 0 and points(kbr, key)["reserved"] == 0
